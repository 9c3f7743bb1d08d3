"""The password rules, the Argon2 cost and the lockout arithmetic, without I/O (IdentityService applies them).

Every way a password is set (the CLI, the admin page, the user's own page) is held to `check_policy`;
only `opsflow init --demo` seeds its known demo password without it, and says so.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from math import ceil

from argon2 import PasswordHasher, Type

from engine.config import ConfigError
from engine.errors import WeakPassword

MIN_LENGTH = 10
# The rule against the user name would refuse nearly everything for a one- or two-letter name.
MIN_NAME_IN_PASSWORD = 3
# Passwords people pick that the length and letters-and-digits rules alone would let through
# (compared ignoring case): keyboard runs, "password" variants, the product's own name.
COMMON_PASSWORDS = frozenset({
    "password123", "password1234", "passw0rd123", "p@ssw0rd123", "qwerty12345", "qwerty123456",
    "qwertyuiop1", "1qaz2wsx3edc", "1q2w3e4r5t", "1q2w3e4r5t6y", "q1w2e3r4t5", "a1b2c3d4e5", "abc1234567",
    "abcd123456", "a123456789", "1234567890a", "123456789a", "zxcvbnm123", "asdfghjkl1", "iloveyou123",
    "admin12345", "admin123456", "administrator1", "welcome123", "letmein123", "changeme123", "test123456",
    "woaini1314", "woaini5201314", "opsflow123", "opsflow2026", "opsflow12345",
})


# OPSFLOW_PASSWORD_HASH_COST: "default" (unset) is RFC 9106's low-memory Argon2id profile (t=3, 64 MiB,
# p=4; ~0.2 s a hash), what every stored password gets. "minimal" (t=1, 8 KiB, p=1) is for the test
# suite only, whose hundreds of fixture users would otherwise spend minutes hashing. A hash carries
# its own parameters, so one made at either cost verifies under the other.
HASH_COST_VARIABLE = "OPSFLOW_PASSWORD_HASH_COST"
_HASHERS = {
    "default": PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4, hash_len=32, salt_len=16,
                              type=Type.ID),
    "minimal": PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, hash_len=32, salt_len=16, type=Type.ID),
}


def password_hasher() -> PasswordHasher:
    """The Argon2 hasher at the configured cost (read on each use, so a test can switch it)."""
    cost = os.environ.get(HASH_COST_VARIABLE) or "default"
    if cost not in _HASHERS:
        raise ConfigError(f"{HASH_COST_VARIABLE} must be one of {', '.join(_HASHERS)}, not {cost!r}")
    return _HASHERS[cost]


def check_policy(username: str, password: str) -> None:
    """Refuse a password that is short, lacks letters or digits, contains the user name, or is common."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword("length", f"a password needs at least {MIN_LENGTH} characters")
    if not any(c.isalpha() for c in password) or not any(c.isdigit() for c in password):
        raise WeakPassword("letters_and_digits", "a password needs both letters and digits")
    name = username.strip().lower()
    if len(name) >= MIN_NAME_IN_PASSWORD and name in password.lower():
        raise WeakPassword("username", "a password may not contain the user name")
    if password.lower() in COMMON_PASSWORDS:
        raise WeakPassword("common", "this password is on the list of common passwords")


def failures_since_success(attempts: Sequence[tuple[datetime, bool]]) -> list[datetime]:
    """The failed attempts after the last successful one (a successful login clears the count)."""
    failures: list[datetime] = []
    for at, ok in sorted(attempts):
        failures = [] if ok else [*failures, at]
    return failures


def locked_until(failures: Sequence[datetime], limit: int, window: timedelta) -> datetime | None:
    """Given the failures within the window, when the lock lifts (None: not locked).

    Locked while `limit` or more failures lie within the window; it lifts as soon as the failure that
    made the count reach `limit`, counted back from the newest, leaves the window.
    """
    if len(failures) < limit:
        return None
    return sorted(failures)[-limit] + window


def retry_after(until: datetime, now: datetime) -> int:
    """Whole seconds until `until` (at least 1), for the Retry-After header."""
    return max(1, ceil((until - now).total_seconds()))
