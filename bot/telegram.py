"""Placeholder: being written (issue 5)."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Add this feature's routes and its own start/stop steps to the app."""
