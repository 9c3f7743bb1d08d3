"""What every service shares: settings, database, clock, codec and the sandboxed script engine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from engine.config import Settings
from engine.spiff.sandbox import RestrictedEnvironment, ScriptEngine
from engine.spiff.serializer import WorkflowCodec
from engine.storage.db import Database, Timeouts


def utc_now() -> datetime:
    return datetime.now(UTC)


class EngineContext:
    def __init__(self, settings: Settings, clock: Callable[[], datetime] = utc_now,
                 functions: dict[str, Any] | None = None,
                 services: dict[str, Callable[..., Any]] | None = None) -> None:
        self.settings = settings
        self.db = Database(settings.database_url, Timeouts(settings.db_connect_timeout,
                                                           settings.db_statement_timeout, settings.db_idle_timeout))
        self.clock = clock
        self.zone = settings.zone
        self.codec = WorkflowCodec(self.zone)
        self.environment = RestrictedEnvironment(functions, services)
        self.script_engine = ScriptEngine(environment=self.environment)
        # The case (id, acting user) whose engine steps are running, for services that act on it.
        self.current_case: ContextVar[tuple[int, str] | None] = ContextVar("opsflow_case", default=None)
        # Where the action came from, on every audit event: "web 10.0.0.1", "api 10.0.0.1", "cli alice",
        # "ticker"; "system" for what the engine does by itself.
        self.source: ContextVar[str] = ContextVar("opsflow_source", default="system")

    def now(self) -> datetime:
        return self.clock()

    @contextmanager
    def acting_from(self, source: str) -> Iterator[None]:
        """Everything recorded inside comes from `source`."""
        token = self.source.set(source)
        try:
            yield
        finally:
            self.source.reset(token)
