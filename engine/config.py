"""Settings from the environment (names fixed by docs/CONTRACT.md)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    database_url: str
    processes_dir: Path
    forms_dir: Path
    timezone: str
    var_dir: Path
    audit_retention: str = "P20Y"  # OPSFLOW_AUDIT_RETENTION (engine/storage/audit/archive.py)

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
