"""Settings from the environment (names fixed by docs/CONTRACT.md)."""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from engine.errors import OpsFlowError

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    database_url: str
    processes_dir: Path
    forms_dir: Path
    timezone: str
    var_dir: Path
    audit_retention: str = "P20Y"  # OPSFLOW_AUDIT_RETENTION (engine/storage/audit/archive.py)
    # Failed logins per user name that lock it, and the window they are counted in (engine/people/identity.py).
    login_max_failures: int = 5  # OPSFLOW_LOGIN_MAX_FAILURES
    login_window: timedelta = timedelta(minutes=15)  # OPSFLOW_LOGIN_WINDOW
    # Seconds (0: no limit) a database connect, a statement (on SQLite: the wait for the write lock) and an
    # idle open transaction may take before failing with 503 (engine/storage/db.py).
    db_connect_timeout: int = 5  # OPSFLOW_DB_CONNECT_TIMEOUT
    db_statement_timeout: int = 30  # OPSFLOW_DB_STATEMENT_TIMEOUT
    db_idle_timeout: int = 60  # OPSFLOW_DB_IDLE_TIMEOUT
    # Budgets of one action (engine/spiff/sandbox.py): automatic steps without a wait state, instances of
    # one multi-instance activity, and seconds one script or condition may run.
    max_steps: int = 2000  # OPSFLOW_MAX_STEPS
    max_instances: int = 1000  # OPSFLOW_MAX_INSTANCES
    script_timeout: float = 2.0  # OPSFLOW_SCRIPT_TIMEOUT

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def from_env(cls, **overrides: str) -> Settings:
        env = {**os.environ, **overrides}
        var_dir = Path(env.get("OPSFLOW_VAR_DIR", ROOT / "var"))
        return cls(
            database_url=env.get("OPSFLOW_DATABASE_URL") or f"sqlite:///{var_dir / 'opsflow.db'}",
            processes_dir=Path(env.get("OPSFLOW_PROCESSES_DIR", ROOT / "processes")),
            forms_dir=Path(env.get("OPSFLOW_FORMS_DIR", ROOT / "forms")),
            timezone=env.get("OPSFLOW_TIMEZONE", "Asia/Shanghai"),
            var_dir=var_dir,
            audit_retention=env.get("OPSFLOW_AUDIT_RETENTION") or "P20Y",
            login_max_failures=_login_max_failures(env.get("OPSFLOW_LOGIN_MAX_FAILURES") or "5"),
            login_window=_login_window(env.get("OPSFLOW_LOGIN_WINDOW") or "PT15M"),
            db_connect_timeout=_seconds(env, "OPSFLOW_DB_CONNECT_TIMEOUT", 5),
            db_statement_timeout=_seconds(env, "OPSFLOW_DB_STATEMENT_TIMEOUT", 30),
            db_idle_timeout=_seconds(env, "OPSFLOW_DB_IDLE_TIMEOUT", 60),
            max_steps=int(_budget(env, "OPSFLOW_MAX_STEPS", 2000, 10**6)),
            max_instances=int(_budget(env, "OPSFLOW_MAX_INSTANCES", 1000, 10**6)),
            script_timeout=_budget(env, "OPSFLOW_SCRIPT_TIMEOUT", 2.0, 3600),
        )

    def secret_key(self) -> str:
        """OPSFLOW_SECRET_KEY, or one generated once into var/ and kept."""
        if key := os.environ.get("OPSFLOW_SECRET_KEY"):
            return key
        path = self.var_dir / "secret_key"
        if not path.exists():
            self.var_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()


def _login_max_failures(text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= 1000:
        raise ConfigError(f"OPSFLOW_LOGIN_MAX_FAILURES must be a whole number from 1 to 1000, not {text!r}")
    return int(text)


def _seconds(env: dict[str, str], name: str, default: int) -> int:
    text = (env.get(name) or str(default)).strip()
    if not text.isdigit() or int(text) > 86400:
        raise ConfigError(f"{name} must be whole seconds from 0 (no limit) to 86400, not {text!r}")
    return int(text)


def _budget(env: dict[str, str], name: str, default: float, most: float) -> float:
    text = (env.get(name) or str(default)).strip()
    try:
        value = float(text) if isinstance(default, float) else int(text)
    except ValueError:
        value = 0
    if not 0 < value <= most:
        raise ConfigError(f"{name} must be a number above 0 and at most {most:g}, not {text!r}")
    return value


_WINDOW = re.compile(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?", re.IGNORECASE)


def _login_window(text: str) -> timedelta:
    """Minutes (`15`) or an ISO 8601 time duration (`PT15M`, `PT1H`), from one minute to a day."""
    text = text.strip()
    found = _WINDOW.fullmatch(text)
    if text.isdigit():
        window = timedelta(minutes=int(text))
    elif found and any(found.groups()):
        hours, minutes, seconds = (int(g or 0) for g in found.groups())
        window = timedelta(hours=hours, minutes=minutes, seconds=seconds)
    else:
        window = timedelta(0)
    if not timedelta(minutes=1) <= window <= timedelta(days=1):
        raise ConfigError(f"OPSFLOW_LOGIN_WINDOW must be minutes (15) or a duration such as PT15M, from one "
                          f"minute to a day, not {text!r}")
    return window


class ConfigError(OpsFlowError):
    """A setting in the environment that cannot be used; the message names the variable."""

    code = "bad_configuration"
