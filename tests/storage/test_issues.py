from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, text, update
from sqlmodel import col

from content.errors import BadInput
from content.model import Issue, Item, Link, QuickNews, Section
from storage.database import Database
from storage.issues import IssueStore, SaveOutcome
from storage.tables import IssueRow
from tests.storage.recorded_sql import recorded_sql, selects, writes
from tests.storage.sample_issues import content_hash, sample_issue, with_source

DAY = dt.date(2021, 7, 18)


async def row_counts(db: Database) -> dict[str, int]:
    async with db.engine.connect() as connection:
        return {
            table: (await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
            for table in ("issue", "section", "item")
        }


class FailingStatement(Exception):
    pass


def fail_on(db: Database, prefix: str) -> Any:
    """Make the next statement starting with `prefix` fail, as a dropped connection or full disk would."""

    def fail(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith(prefix):
            raise FailingStatement(prefix)

    event.listen(db.engine.sync_engine, "before_cursor_execute", fail)
    return lambda: event.remove(db.engine.sync_engine, "before_cursor_execute", fail)


# --- save


async def test_save_new_issue_is_created(store: IssueStore) -> None:
    issue, source = sample_issue(DAY)

    assert await store.save(issue, source) == SaveOutcome.CREATED
    assert await store.count() == 1


async def test_outcome_compares_equal_to_its_string(store: IssueStore) -> None:
    issue, source = sample_issue(DAY)

    assert await store.save(issue, source) == "created"


async def test_save_same_content_again_is_unchanged_and_writes_nothing(
    store: IssueStore, db: Database
) -> None:
    issue, source = sample_issue(DAY)
    await store.save(issue, source)
    [before] = await store.list()

    with recorded_sql(db) as statements:
        outcome = await store.save(issue, source)

    assert outcome == SaveOutcome.UNCHANGED
    assert writes(statements) == []
    assert await store.list() == [before]


async def test_save_changed_content_replaces_without_duplicates(store: IssueStore, db: Database) -> None:
    first, first_source = sample_issue(DAY, edition=1, items_per_section=3)
    second, second_source = sample_issue(DAY, edition=2, items_per_section=2)
    await store.save(first, first_source)

    assert await store.save(second, second_source) == SaveOutcome.REPLACED

    assert await store.get(DAY) == second
    assert await store.source_text(DAY) == second_source
    assert await row_counts(db) == {"issue": 1, "section": 3, "item": 4}


async def test_replace_keeps_imported_at_and_moves_updated_at(store: IssueStore) -> None:
    first, first_source = sample_issue(DAY, edition=1)
    second, second_source = sample_issue(DAY, edition=2)
    await store.save(first, first_source)
    [before] = await store.list()

    await store.save(second, second_source)

    [after] = await store.list()
    assert after.imported_at == before.imported_at
    assert after.updated_at > before.updated_at
    assert after.content_hash == second.content_hash != before.content_hash


async def test_replace_with_fewer_sections_removes_the_rest(store: IssueStore, db: Database) -> None:
    issue, source = sample_issue(DAY)
    await store.save(issue, source)
    shorter, shorter_source = with_source(replace(issue, sections=issue.sections[:1]), source + "短")

    assert await store.save(shorter, shorter_source) == SaveOutcome.REPLACED

    assert await store.get(DAY) == shorter
    assert await row_counts(db) == {"issue": 1, "section": 1, "item": 2}


async def test_save_then_replace_back_is_replaced_again(store: IssueStore) -> None:
    first, first_source = sample_issue(DAY, edition=1)
    second, second_source = sample_issue(DAY, edition=2)

    outcomes = [
        await store.save(first, first_source),
        await store.save(second, second_source),
        await store.save(first, first_source),
        await store.save(first, first_source),
    ]

    assert outcomes == ["created", "replaced", "replaced", "unchanged"]
    assert await store.get(DAY) == first


# --- failures leave the previous state


async def test_save_failing_midway_keeps_the_previous_version(store: IssueStore, db: Database) -> None:
    first, first_source = sample_issue(DAY, edition=1)
    second, second_source = sample_issue(DAY, edition=2)
    await store.save(first, first_source)
    [summary_before] = await store.list()
    counts_before = await row_counts(db)

    # By the item INSERT the issue row is updated and the old sections deleted: all of that must roll back.
    stop_failing = fail_on(db, "INSERT INTO ITEM")
    try:
        with pytest.raises(FailingStatement):
            await store.save(second, second_source)
    finally:
        stop_failing()

    assert await store.get(DAY) == first
    assert await store.source_text(DAY) == first_source
    assert await store.list() == [summary_before]
    assert await row_counts(db) == counts_before


async def test_first_save_failing_midway_leaves_nothing(store: IssueStore, db: Database) -> None:
    issue, source = sample_issue(DAY)

    stop_failing = fail_on(db, "INSERT INTO ITEM")
    try:
        with pytest.raises(FailingStatement):
            await store.save(issue, source)
    finally:
        stop_failing()

    assert await row_counts(db) == {"issue": 0, "section": 0, "item": 0}
    assert await store.save(issue, source) == SaveOutcome.CREATED


async def test_duplicate_section_position_is_rejected_before_any_write(
    store: IssueStore, db: Database
) -> None:
    first, first_source = sample_issue(DAY, edition=1)
    await store.save(first, first_source)
    second, second_source = sample_issue(DAY, edition=2)
    clash = replace(second, sections=(*second.sections, Section(name="重复", position=1)))

    with (
        recorded_sql(db) as statements,
        pytest.raises(BadInput, match=r"sections\[3\] repeats section position 1"),
    ):
        await store.save(clash, second_source)

    assert statements == []
    assert await store.get(DAY) == first


async def test_duplicate_item_position_is_rejected(store: IssueStore) -> None:
    issue, source = sample_issue(DAY)
    section = issue.sections[0]
    clash = replace(issue, sections=(replace(section, items=(*section.items, section.items[0])),))

    with pytest.raises(BadInput, match=r"sections\[0\]\.items\[2\] repeats item position 1"):
        await store.save(clash, source)

    assert await store.count() == 0


@pytest.mark.parametrize("bad_hash", ["", "abc", "A" * 64, "g" * 64, content_hash("x") + "0"])
async def test_content_hash_must_be_sha256_hex(store: IssueStore, bad_hash: str) -> None:
    issue, source = sample_issue(DAY)

    with pytest.raises(BadInput, match="content_hash"):
        await store.save(replace(issue, content_hash=bad_hash), source)


# --- text the backends disagree on


def with_nul_in(field: str, issue: Issue) -> Issue:
    nul = "before\x00after"
    section = issue.sections[0]
    item = section.items[0]
    changed_item = {
        "sections[0].items[0].summary": replace(item, summary=nul),
        "sections[0].items[0].title": replace(item, title=nul),
        "sections[0].items[0].fields['标题']": replace(item, fields={**item.fields, "标题": nul}),
        "sections[0].items[0].tags[1]": replace(item, tags=("芯片", nul)),
        "sections[0].items[0].links[0].url": replace(item, links=(Link("链接", nul),)),
    }.get(field)
    if changed_item is not None:
        return replace(issue, sections=(replace(section, items=(changed_item, *section.items[1:])),))
    return {
        "title": replace(issue, title=nul),
        "lead": replace(issue, lead=nul),
        "notes[0]": replace(issue, notes=(nul,)),
        "quick_news[1].text": replace(issue, quick_news=(issue.quick_news[0], QuickNews(nul))),
        "references[0].text": replace(issue, references=(Link(nul, "https://a.b"),)),
        "sections[0].name": replace(issue, sections=(replace(section, name=nul),)),
    }[field]


@pytest.mark.parametrize(
    "field",
    [
        "title",
        "lead",
        "notes[0]",
        "quick_news[1].text",
        "references[0].text",
        "sections[0].name",
        "sections[0].items[0].title",
        "sections[0].items[0].summary",
        "sections[0].items[0].fields['标题']",
        "sections[0].items[0].tags[1]",
        "sections[0].items[0].links[0].url",
    ],
)
async def test_nul_character_is_rejected_naming_the_field(
    store: IssueStore, db: Database, field: str
) -> None:
    issue, source = sample_issue(DAY)

    with recorded_sql(db) as statements, pytest.raises(BadInput) as raised:
        await store.save(with_nul_in(field, issue), source)

    assert f"{field} contains a NUL character" in str(raised.value)
    assert "\n" not in str(raised.value)
    assert statements == []
    assert await store.count() == 0


async def test_nul_in_source_text_is_rejected(store: IssueStore) -> None:
    issue, source = sample_issue(DAY)

    with pytest.raises(BadInput, match="source_text contains a NUL character"):
        await store.save(issue, source + "\x00")


async def test_lone_surrogate_is_rejected(store: IssueStore) -> None:
    issue, source = sample_issue(DAY)

    with pytest.raises(BadInput, match=r"headline has a lone surrogate at index 2"):
        await store.save(replace(issue, headline="ab\ud800cd"), source)


async def test_unicode_round_trips(store: IssueStore) -> None:
    issue, _ = sample_issue(DAY)
    tricky = (
        "简报「端侧 AI」——全角标点，。！？、；："
        " emoji 🚀👩‍💻🇨🇳 combining é"  # e + U+0301
        " RTL עברית  zero-width\u200b line-sep\u2028 bom\ufeff tab\t CR\r\n"
        " astral 𠀀𝄞 backslash \\ quote \" '"
    )
    item = replace(issue.sections[0].items[0], title=tricky, summary=tricky * 50, fields={tricky: tricky})
    unicode_issue, source = with_source(
        replace(
            issue,
            title=tricky,
            headline="",
            lead="",
            notes=(tricky, ""),
            sections=(replace(issue.sections[0], name=tricky, items=(item,)),),
        ),
        tricky,
    )

    await store.save(unicode_issue, source)

    assert await store.get(DAY) == unicode_issue
    assert await store.source_text(DAY) == source


async def test_long_text_round_trips(store: IssueStore) -> None:
    issue, _ = sample_issue(DAY)
    long_source = "长文" * 500_000  # a million characters, 3 MB of UTF-8
    long_issue, source = with_source(replace(issue, lead=long_source), long_source)

    await store.save(long_issue, source)

    assert await store.get(DAY) == long_issue
    assert await store.source_text(DAY) == long_source


# --- reading back


async def test_get_round_trips_the_whole_issue(store: IssueStore) -> None:
    issue, source = sample_issue(DAY, items_per_section=5)
    await store.save(issue, source)

    loaded = await store.get(DAY)

    assert loaded == issue
    assert loaded is not None
    assert list(loaded.sections[0].items[0].fields) == ["链接", "标题", "代码"]
    assert loaded.to_dict() == issue.to_dict()


async def test_get_round_trips_a_minimal_issue(store: IssueStore) -> None:
    source = "# 只有标题"
    issue = Issue(date=DAY, title="只有标题", content_hash=content_hash(source))
    await store.save(issue, source)

    assert await store.get(DAY) == issue


async def test_get_returns_sections_and_items_in_position_order(store: IssueStore) -> None:
    source = "# 乱序"
    issue = Issue(
        date=DAY,
        title="乱序",
        sections=(
            Section("二", 20, items=(Item(position=3, title="c"), Item(position=1, title="a"))),
            Section("一", 10, items=(Item(position=2, title="b"),)),
        ),
        content_hash=content_hash(source),
    )
    await store.save(issue, source)

    loaded = await store.get(DAY)

    assert loaded is not None
    assert [(s.name, [i.title for i in s.items]) for s in loaded.sections] == [
        ("一", ["b"]),
        ("二", ["a", "c"]),
    ]


async def test_get_unknown_date_is_none(store: IssueStore) -> None:
    assert await store.get(DAY) is None
    assert await store.source_text(DAY) is None


async def test_get_uses_three_queries_whatever_the_size(store: IssueStore, db: Database) -> None:
    issue, source = sample_issue(DAY, items_per_section=30)
    await store.save(issue, source)

    with recorded_sql(db) as statements:
        await store.get(DAY)

    assert len(selects(statements)) == 3


async def test_save_inserts_items_in_one_statement(store: IssueStore, db: Database) -> None:
    issue, source = sample_issue(DAY, items_per_section=60)

    with recorded_sql(db) as statements:
        await store.save(issue, source)

    item_inserts = [s for s in statements if s.startswith("INSERT INTO item")]
    assert len(item_inserts) == 1
    # SELECT the existing hash, INSERT issue, sections and items; SQLite adds its explicit BEGIN.
    assert len(statements) == (5 if db.backend == "sqlite" else 4)


async def test_latest_is_the_newest_date_not_the_last_saved(store: IssueStore) -> None:
    for day in (dt.date(2020, 1, 6), dt.date(2021, 8, 1), dt.date(2019, 3, 31)):
        await store.save(*sample_issue(day))

    latest = await store.latest()

    assert latest is not None
    assert latest.date == dt.date(2021, 8, 1)


async def test_latest_of_empty_store_is_none(store: IssueStore) -> None:
    assert await store.latest() is None


async def test_list_is_newest_first_with_counts(store: IssueStore) -> None:
    older, older_source = sample_issue(dt.date(2019, 3, 31), items_per_section=1)
    newer, newer_source = sample_issue(dt.date(2020, 1, 6), items_per_section=3)
    await store.save(older, older_source)
    await store.save(newer, newer_source)

    summaries = await store.list()

    assert [s.date for s in summaries] == [dt.date(2020, 1, 6), dt.date(2019, 3, 31)]
    first = summaries[0]
    assert (first.title, first.headline, first.content_hash) == (
        newer.title,
        newer.headline,
        newer.content_hash,
    )
    assert first.item_count == 6
    assert first.section_counts == (("新闻", 3), ("论文", 3), ("空栏目", 0))
    assert summaries[1].item_count == 2
    assert first.imported_at.tzinfo is not None
    assert first.imported_at.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.UTC) - first.imported_at) < dt.timedelta(minutes=5)


async def test_list_uses_two_queries_whatever_the_number_of_issues(store: IssueStore, db: Database) -> None:
    for day in range(1, 6):
        await store.save(*sample_issue(dt.date(2021, 1, day)))

    with recorded_sql(db) as statements:
        summaries = await store.list()

    assert len(summaries) == 5
    assert len(selects(statements)) == 2


async def test_list_of_empty_store_is_empty(store: IssueStore) -> None:
    assert await store.list() == []
    assert await store.count() == 0


async def test_list_of_issue_without_sections(store: IssueStore) -> None:
    source = "# 空"
    await store.save(Issue(date=DAY, title="空", content_hash=content_hash(source)), source)

    [summary] = await store.list()

    assert (summary.item_count, summary.section_counts) == (0, ())


# --- delete


async def test_delete_removes_the_issue_with_its_sections_and_items(store: IssueStore, db: Database) -> None:
    kept, kept_source = sample_issue(dt.date(2020, 1, 6))
    await store.save(kept, kept_source)
    await store.save(*sample_issue(DAY))

    assert await store.delete(DAY) is True

    assert await store.get(DAY) is None
    assert await store.get(kept.date) == kept
    assert await row_counts(db) == {"issue": 1, "section": 3, "item": 4}


async def test_delete_unknown_date_is_false(store: IssueStore) -> None:
    assert await store.delete(DAY) is False


async def test_save_after_delete_is_created(store: IssueStore) -> None:
    issue, source = sample_issue(DAY)
    await store.save(issue, source)
    await store.delete(DAY)

    assert await store.save(issue, source) == SaveOutcome.CREATED


# --- concurrency


async def test_concurrent_saves_of_different_issues_all_land(store: IssueStore) -> None:
    issues = [sample_issue(dt.date(2021, 1, day), items_per_section=10) for day in range(1, 9)]

    outcomes = await asyncio.gather(*(store.save(issue, source) for issue, source in issues))

    assert outcomes == [SaveOutcome.CREATED] * len(issues)
    for issue, _ in issues:
        assert await store.get(issue.date) == issue


async def test_concurrent_saves_of_the_same_issue_create_it_once(store: IssueStore, db: Database) -> None:
    issue, source = sample_issue(DAY)

    outcomes = await asyncio.gather(*(store.save(issue, source) for _ in range(4)))

    assert sorted(outcomes) == ["created", "unchanged", "unchanged", "unchanged"]
    assert await store.get(DAY) == issue
    assert await row_counts(db) == {"issue": 1, "section": 3, "item": 4}


async def test_concurrent_saves_of_two_versions_leave_one_whole_version(
    store: IssueStore, db: Database
) -> None:
    first, first_source = sample_issue(DAY, edition=1, items_per_section=3)
    second, second_source = sample_issue(DAY, edition=2, items_per_section=2)

    outcomes = await asyncio.gather(store.save(first, first_source), store.save(second, second_source))

    assert sorted(outcomes) == ["created", "replaced"]
    stored = await store.get(DAY)
    assert stored in (first, second)
    assert stored is not None
    assert await store.source_text(DAY) == (first_source if stored == first else second_source)
    assert await row_counts(db) == {"issue": 1, "section": 3, "item": 2 * len(stored.sections[0].items)}


async def test_readers_see_the_committed_version_while_a_write_is_open(
    store: IssueStore, db: Database
) -> None:
    issue, source = sample_issue(DAY)
    await store.save(issue, source)

    async with db.session("write") as session, session.begin():
        await session.exec(update(IssueRow).where(col(IssueRow.date) == DAY).values(title="未提交"))

        assert await store.get(DAY) == issue
        assert await store.count() == 1

    loaded = await store.get(DAY)
    assert loaded is not None
    assert loaded.title == "未提交"


# Any Unicode text but NUL, which ensure_storable turns away, and lone surrogates, which aren't UTF-8.
storable_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=60)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(title=storable_text, summary=storable_text, key=storable_text, value=storable_text)
async def test_any_storable_text_round_trips(
    store: IssueStore, title: str, summary: str, key: str, value: str
) -> None:
    issue, source = with_source(
        Issue(
            date=DAY,
            title=title,
            sections=(Section(key, 1, items=(Item(1, title=value, summary=summary, fields={key: value}),)),),
        ),
        # repr, not concatenation: ("", "^") and ("^", "") must not share a source (and so a hash).
        repr((title, summary, key, value)),
    )

    await store.save(issue, source)

    assert await store.get(DAY) == issue
    assert await store.source_text(DAY) == source
