"""Alembic migrations, run by `opsflow init` (and `make run`) without an alembic.ini."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

HERE = Path(__file__).resolve().parent


def config(engine: Engine, **attributes: Any) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["engine"] = engine
    cfg.attributes.update(attributes)
    return cfg


def upgrade(engine: Engine, revision: str = "head", **attributes: Any) -> None:
    """`attributes` reach the revisions (0006 needs `audit_anchor`, AuditService.anchor)."""
    command.upgrade(config(engine, **attributes), revision)


def is_current(engine: Engine) -> bool:
    head = ScriptDirectory.from_config(config(engine)).get_current_head()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() == head
