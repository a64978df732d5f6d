"""What every channel shares: how budgets are counted, and the renderer and sender interfaces.

A channel is one module here with two halves, like listmonk's messengers: `render_*` is a pure
function from an issue document to a payload (no network, no database), and a sender (in the
broadcast) pushes payloads to the platform. Limits are named constants in each channel's module with
their source; see ../shared/notes/channels.md for the facts they come from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

# Jinja2 templates live at the top of the project (and are installed beside the packages: pyproject.toml).
TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"


def characters(text: str) -> int:
    return len(text)


def utf16_units(text: str) -> int:
    """What Telegram counts: UTF-16 code units (an emoji outside the BMP is two)."""
    return len(text.encode("utf-16-le")) // 2


def utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


class Payload(Protocol):
    """What a renderer returns: JSON for `jianbao render --json`, and a preview for editors."""

    def to_dict(self) -> dict[str, object]: ...

    def preview(self) -> str: ...
