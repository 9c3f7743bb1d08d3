"""Server-rendered pages: login, inbox, task forms, case pages."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Register the page blueprints (the inbox issue fills this in)."""
