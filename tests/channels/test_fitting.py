"""Section-aware truncation on the channel-neutral document, with a trivial plain-text renderer."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels.document import IssueDocument, Run, build_document, shorten_runs, shorten_text, summary_parser
from channels.fitting import DoesNotFit, drop_order, fit, more_line, non_empty
from channels.links import LinkPolicy, LinkRewriter
from content.demo import demo_issue_dir
from content.parser import parse_issue
from content.source import read_issue_file

FILES = sorted(demo_issue_dir().glob("*.md"))
MD = summary_parser()


def document(path: Path) -> IssueDocument:
    issue = parse_issue(read_issue_file(path))
    return build_document(
        issue, LinkRewriter(LinkPolicy("test", public_url="https://jb.example"), issue.date), MD
    )


def plain(doc: IssueDocument) -> str:
    lines = [doc.title, doc.lead or ""]
    lines += [item.title for item in doc.quick_news]
    for section in non_empty(doc.sections):
        lines.append(f"## {section.name}")
        for item in section.items:
            lines += [item.title, item.summary_text]
        if section.omitted:
            lines.append(more_line(section.omitted))
    return "\n".join(lines)


DOCS = {path.stem: document(path) for path in FILES}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(DOCS)), fraction=st.floats(min_value=0.0, max_value=1.2))
def test_fit_keeps_every_section_and_exact_counts(name: str, fraction: float) -> None:
    doc = DOCS[name]
    budget = max(int(len(plain(doc)) * fraction), 1)
    try:
        text, trimmed = fit(
            doc, lambda candidate: plain(candidate) if len(plain(candidate)) <= budget else None
        )
    except DoesNotFit:
        return  # a budget below one short title per section: refused, never exceeded
    assert len(text) <= budget
    for original, cut in zip(doc.sections, trimmed.sections, strict=True):
        assert cut.name == original.name
        assert len(cut.items) + cut.omitted == len(original.items)
        if original.items:
            assert cut.items, f"section {cut.name} lost its first item"
            assert cut.items[0].url == original.items[0].url
        if cut.omitted:
            assert f"## {cut.name}" in text
            assert more_line(cut.omitted) in text


def test_nothing_is_cut_when_it_fits() -> None:
    doc = DOCS["2020-07-02"]
    text, trimmed = fit(doc, lambda candidate: plain(candidate))
    assert trimmed == doc
    assert text == plain(doc)


def test_a_budget_below_the_minimum_is_refused() -> None:
    with pytest.raises(DoesNotFit):
        fit(DOCS["2020-07-02"], lambda candidate: None)


def test_items_go_from_the_longest_sections_first_never_the_first_item() -> None:
    doc = DOCS["2020-07-02"]  # 5 / 4 / 5 / 4 items
    order = drop_order(doc)
    assert len(order) == sum(len(section.items) - 1 for section in doc.sections)
    assert order[0] in (0, 2)
    kept = [len(section.items) for section in doc.sections]
    for index in order:
        assert kept[index] == max(kept)
        kept[index] -= 1
    assert kept == [1, 1, 1, 1]


def test_shortening_never_splits_a_link_or_a_surrogate_pair() -> None:
    runs = (Run("前文"), Run("链接文字很长", "https://a.example/"), Run("后文"))
    assert shorten_runs(runs, 5) == (Run("前文"), Run("…"))
    assert shorten_runs(runs, 100) == runs
    assert shorten_runs(runs, 0) == ()
    emoji = "模型🚀" * 10
    cut = shorten_text(emoji, 5)
    assert cut.endswith("…")
    cut.encode("utf-16-le").decode("utf-16-le")  # no lone surrogate: encodes and decodes whole
    assert len(cut) == 5
