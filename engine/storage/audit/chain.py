"""The chain's cryptography, apart from the database: the key, each event's digest, the signed head,
checkpoints, and the walk that checks events in order (engine/storage/audit/service.py reads and writes them).

Events from `keyed_from` on (named in the signed head) carry HMAC-SHA256 under a key that never
enters the database, so nobody without it can edit an event and re-hash onward. Events before it
were written before keying began (revision 0006) and carry the plain SHA-256 link they always had:
they prove their order and content only to someone who trusts the first keyed event after them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.errors import AuditUnavailable, OpsFlowError

GENESIS = "0" * 64
KEY_FILE = "audit.key"
KEY_ENV = "OPSFLOW_AUDIT_KEY"
MIN_KEY_LENGTH = 32
CHECKPOINT_FORMAT = "opsflow-audit-checkpoint/1"


class AuditKeyError(AuditUnavailable):
    """No audit key, or not the one that signed this chain."""

    code = "audit_key"


class AuditKey:
    """The secret behind every signature, from OPSFLOW_AUDIT_KEY or var/audit.key (never the database)."""

    __slots__ = ("_secret", "id", "where")

    def __init__(self, secret: bytes, where: str) -> None:
        if len(secret) < MIN_KEY_LENGTH:
            raise AuditKeyError(f"the audit key in {where} is shorter than {MIN_KEY_LENGTH} characters")
        self._secret = secret
        self.where = where
        # Names the key in the head and in checkpoints without revealing it.
        self.id = self.sign("opsflow audit key id")[:16]

    def sign(self, text: str) -> str:
        return hmac.digest(self._secret, text.encode(), "sha256").hex()

    def signed(self, text: str, mac: str | None) -> bool:
        return mac is not None and hmac.compare_digest(self.sign(text), mac)


def key_path(var_dir: Path) -> Path:
    return var_dir / KEY_FILE


def load_key(var_dir: Path, create: bool = False, env: Mapping[str, str] | None = None) -> AuditKey:
    """OPSFLOW_AUDIT_KEY, else var/audit.key; `create` makes the file (0600) when there is neither."""
    env = os.environ if env is None else env
    if value := env.get(KEY_ENV, "").strip():
        return AuditKey(value.encode(), KEY_ENV)
    path = key_path(var_dir)
    if not path.exists() and create:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: read theirs
        else:
            with os.fdopen(fd, "w") as f:
                f.write(os.urandom(32).hex() + "\n")
                f.flush()
                os.fsync(f.fileno())
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise AuditKeyError(f"no audit key: set {KEY_ENV} or restore {path} (made by 'opsflow init')") from None
    except OSError as exc:
        raise AuditKeyError(f"cannot read the audit key {path}: {exc.strerror}") from None
    return AuditKey(text.encode(), str(path))


# events -------------------------------------------------------------------------------------------
def event_body(prev_hash: str, event_id: int, at: datetime, actor: str, action: str, instance_id: int | None,
               task_id: str | None, data: Any, source: str | None, keyed: bool) -> str:
    """What an event's digest covers. Keyed events also cover their source; legacy ones never had it."""
    fields = [prev_hash, event_id, at.isoformat(timespec="microseconds"), actor, action, instance_id, task_id, data]
    if keyed:
        fields.append(source)
    return json.dumps(fields, sort_keys=True, ensure_ascii=False, default=str)


def legacy_digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


# the head -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Head:
    """The chain's signed tip, and what it vouches for: where keying began and what was archived."""

    last_id: int
    last_hash: str
    keyed_from: int | None
    key_id: str | None
    archived_to: int = 0
    archived_hash: str = GENESIS
    mac: str | None = None


def head_body(last_id: int, last_hash: str, keyed_from: int | None, key_id: str | None, archived_to: int,
              archived_hash: str) -> str:
    # Numbers, hex and None only, so a separator cannot be forged into a field (and this runs on every append).
    return f"opsflow-audit-head|{last_id}|{last_hash}|{keyed_from}|{key_id}|{archived_to}|{archived_hash}"


def head_signed(head: Head, key: AuditKey) -> bool:
    return key.signed(head_body(head.last_id, head.last_hash, head.keyed_from, head.key_id, head.archived_to,
                                head.archived_hash), head.mac)


def span(first: int, last: int) -> str:
    return f"event {first} is" if first == last else f"events {first}–{last} are"


# checkpoints --------------------------------------------------------------------------------------
def _checkpoint_body(checkpoint: Mapping[str, Any]) -> str:
    return json.dumps({k: v for k, v in checkpoint.items() if k != "signature"}, sort_keys=True,
                      ensure_ascii=False)


def make_checkpoint(key: AuditKey, last_id: int, last_hash: str, at: datetime) -> dict[str, Any]:
    """The head as a signed statement to keep outside the system (a WORM store, the group robot)."""
    checkpoint: dict[str, Any] = {"format": CHECKPOINT_FORMAT, "last_id": last_id, "last_hash": last_hash,
                                  "key_id": key.id, "at": at.isoformat(timespec="seconds")}
    checkpoint["signature"] = key.sign(_checkpoint_body(checkpoint))
    return checkpoint


def read_checkpoint(key: AuditKey, checkpoint: Any) -> tuple[int, str]:
    """(last_id, last_hash) of a checkpoint this key signed; AuditKeyError or OpsFlowError otherwise."""
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise OpsFlowError("not an OpsFlow audit checkpoint")
    last_id, last_hash = checkpoint.get("last_id"), checkpoint.get("last_hash")
    if not isinstance(last_id, int) or not isinstance(last_hash, str):
        raise OpsFlowError("the checkpoint names no event")
    if checkpoint.get("key_id") != key.id:
        raise AuditKeyError(f"the checkpoint was signed with audit key {checkpoint.get('key_id')}, "
                            f"not with this one ({key.id})")
    if not key.signed(_checkpoint_body(checkpoint), checkpoint.get("signature")):
        raise OpsFlowError("the checkpoint's signature does not match: it was altered or forged")
    return last_id, last_hash


# the walk -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    first_bad_id: int | None
    reason: str


class ChainWalk:
    """Check events fed in id order, from the archive anchor on; keep the first problem.

    `keyed_from` None means the head is gone: each event then passes if either digest matches.
    """

    def __init__(self, key: AuditKey, archived_to: int, archived_hash: str, keyed_from: int | None,
                 watch: int | None = None) -> None:
        self.key = key
        self.keyed_from = keyed_from
        self.expected = archived_to + 1
        self.prev = archived_hash
        self.count = 0
        self.legacy = 0
        self.problem: Problem | None = None
        self.watch = watch
        self.watched: str | None = None  # the hash of event `watch`, when it was seen

    @property
    def last_id(self) -> int:
        return self.expected - 1

    def feed(self, row: Any) -> bool:
        """One event (an AuditEvent or any object with its columns); False once a problem is found."""
        if self.problem is not None:
            return False
        if row.id != self.expected:
            self.problem = Problem(self.expected, f"{span(self.expected, row.id - 1)} missing")
            return False
        if row.prev_hash != self.prev:
            self.problem = Problem(row.id, f"event {row.id} does not link to event {row.id - 1}")
            return False
        keyed = self.keyed_from is not None and row.id >= self.keyed_from
        if not self._matches(row, keyed):
            what = "signature" if keyed else "hash"
            self.problem = Problem(row.id, f"event {row.id} does not match its {what}: it was edited")
            return False
        if self.keyed_from is not None and not keyed:
            self.legacy += 1
        if row.id == self.watch:
            self.watched = row.hash
        self.prev, self.expected, self.count = row.hash, row.id + 1, self.count + 1
        return True

    def _matches(self, row: Any, keyed: bool) -> bool:
        def body(keyed: bool) -> str:
            return event_body(self.prev, row.id, row.at, row.actor, row.action, row.instance_id, row.task_id,
                              row.data, row.source, keyed)

        if keyed or self.keyed_from is None:
            if self.key.signed(body(True), row.hash):
                return True
            if keyed:
                return False
        return hmac.compare_digest(legacy_digest(body(False)), row.hash)

    def end(self, head: Head | None) -> Problem | None:
        """After the last event: does the chain end where the signed head says it does?"""
        if self.problem is not None:
            return self.problem
        if head is None:
            return Problem(self.expected, "the audit head is missing: the end of the chain cannot be proven "
                                          f"(events up to {self.last_id} are present)")
        if self.last_id < head.last_id:
            return Problem(self.expected, f"{span(self.expected, head.last_id)} missing "
                                          f"(the chain ends at event {self.last_id})")
        if self.last_id > head.last_id:
            return Problem(head.last_id + 1, f"{span(head.last_id + 1, self.last_id)} not covered by the "
                                             "audit head: they were added behind its back")
        if self.prev != head.last_hash:
            return Problem(self.last_id, f"event {self.last_id} is not the one the audit head names")
        return None
