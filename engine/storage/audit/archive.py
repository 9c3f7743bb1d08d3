"""Retention, and the signed archive file that events older than it move to.

OPSFLOW_AUDIT_RETENTION is an ISO 8601 period (`P20Y`, `P7Y6M`, `P400D`) or a number of days;
twenty years unless set, never under six months. An archive is JSON lines (gzip when the name
ends in `.gz`): a header, one line per event exactly as stored (with its signature), and a
trailer signed with the audit key over the header and every event line. It is written, synced
and read back before a single event leaves the database.
"""

from __future__ import annotations

import calendar
import gzip
import hashlib
import io
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

from engine.errors import BadRequest, OpsFlowError
from engine.storage.audit.chain import AuditKey, AuditKeyError, ChainWalk, Head

DEFAULT_RETENTION = "P20Y"
MINIMUM_DAYS = 182.625  # six months of 30.4375 days
ARCHIVE_FORMAT = "opsflow-audit-archive/1"
_PERIOD = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Retention:
    text: str
    months: int
    days: int

    @classmethod
    def parse(cls, text: str) -> Retention:
        raw = text.strip().upper()
        match = _PERIOD.match(raw)
        if raw.isdigit():
            months, days = 0, int(raw)
        elif match and raw != "P":
            years, months, weeks, days = (int(g or 0) for g in match.groups())
            months, days = 12 * years + months, 7 * weeks + days
        else:
            raise BadRequest(f"OPSFLOW_AUDIT_RETENTION={text!r} is not a period such as P20Y, P7Y6M or a number "
                             "of days")
        if months * 30.4375 + days < MINIMUM_DAYS:
            raise BadRequest(f"OPSFLOW_AUDIT_RETENTION={text!r} is under the minimum of six months (P6M)")
        return cls(text.strip(), months, days)

    def cutoff(self, now: datetime, zone: ZoneInfo) -> datetime:
        """Events before this moment may leave the database: now less the period, on the firm's calendar."""
        local = now.astimezone(zone)
        year, month = divmod(local.year * 12 + local.month - 1 - self.months, 12)
        if year < _EPOCH.year:
            return _EPOCH
        day = min(local.day, calendar.monthrange(year, month + 1)[1])
        return local.replace(year=year, month=month + 1, day=day) - timedelta(days=self.days)


@dataclass(frozen=True)
class Archived:
    path: Path
    first_id: int
    last_id: int
    count: int
    last_hash: str
    sha256: str  # of the whole file, recorded in the `audit.archived` event


def _event_line(row: Any) -> str:
    return json.dumps({"id": row.id, "at": row.at.isoformat(timespec="microseconds"), "actor": row.actor,
                       "action": row.action, "instance_id": row.instance_id, "task_id": row.task_id,
                       "data": row.data, "source": row.source, "prev_hash": row.prev_hash, "hash": row.hash},
                      ensure_ascii=False, sort_keys=True)


def _signed_part(header: dict[str, Any], trailer: dict[str, Any]) -> str:
    return json.dumps([header, {k: v for k, v in trailer.items() if k != "signature"}], sort_keys=True,
                      ensure_ascii=False)


def write_archive(out: Path, key: AuditKey, head: Head, before: datetime, now: datetime,
                  rows: Iterable[Any]) -> Archived | None:
    """Write the unbroken run of events after the head's archive anchor that `rows` yields; None when
    there is none. The file is complete and read back before this returns."""
    if out.exists():
        raise BadRequest(f"{out} exists: an archive is never overwritten")
    if not out.parent.is_dir():
        raise BadRequest(f"{out.parent} is not a directory")
    partial = out.with_name(out.name + ".partial")
    header = {"format": ARCHIVE_FORMAT, "first_id": head.archived_to + 1, "prev_hash": head.archived_hash,
              "keyed_from": head.keyed_from, "key_id": key.id, "before": before.isoformat(),
              "created_at": now.isoformat()}
    walk = ChainWalk(key, head.archived_to, head.archived_hash, head.keyed_from)
    digest = hashlib.sha256()
    try:
        with open(partial, "xb") as raw:
            stream: Any = gzip.GzipFile(fileobj=raw, mode="wb") if out.name.endswith(".gz") else raw
            text = io.TextIOWrapper(stream, encoding="utf-8", newline="\n")
            try:
                text.write(json.dumps(header, ensure_ascii=False, sort_keys=True) + "\n")
                for row in rows:
                    if row.id != walk.expected:
                        break  # only an unbroken run from the anchor leaves
                    if not walk.feed(row):
                        raise OpsFlowError(f"nothing archived: {walk.problem.reason if walk.problem else ''}")
                    line = _event_line(row) + "\n"
                    digest.update(line.encode())
                    text.write(line)
                trailer = {"last_id": walk.last_id, "last_hash": walk.prev, "count": walk.count,
                           "events_sha256": digest.hexdigest()}
                trailer["signature"] = key.sign(_signed_part(header, trailer))
                text.write(json.dumps(trailer, sort_keys=True) + "\n")
            finally:
                text.flush()
                text.detach()
            if stream is not raw:
                stream.close()
            raw.flush()
            os.fsync(raw.fileno())
        if walk.count == 0:
            partial.unlink()
            return None
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    try:
        written = read_archive(out, key)
        if (written.count, written.last_id, written.last_hash) != (walk.count, walk.last_id, walk.prev):
            raise OpsFlowError(f"{out} did not read back as written")
    except BaseException:
        out.unlink(missing_ok=True)  # a file that does not read back is no archive; nothing was removed
        raise
    return written


def read_archive(path: Path, key: AuditKey) -> Archived:
    """Check an archive file: every event against its signature and link, the trailer's signature."""
    with open(path, "rb") as probe:
        compressed = probe.read(2) == b"\x1f\x8b"
    digest, hasher = hashlib.sha256(), hashlib.sha256()
    with open(path, "rb") as raw:
        for block in iter(lambda: raw.read(1 << 20), b""):
            hasher.update(block)
    opener: Any = gzip.open if compressed else open
    with opener(path, "rt", encoding="utf-8", newline="\n") as f:
        try:
            header = json.loads(f.readline() or "null")
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != ARCHIVE_FORMAT:
            raise OpsFlowError(f"{path.name} is not an OpsFlow audit archive")
        if header.get("key_id") != key.id:
            raise AuditKeyError(f"{path.name} was signed with audit key {header.get('key_id')}, not with this one "
                                f"({key.id})")
        walk = ChainWalk(key, int(header["first_id"]) - 1, header["prev_hash"], header.get("keyed_from"))
        trailer: dict[str, Any] | None = None
        for line in f:
            item = json.loads(line)
            if "format" in item or "signature" in item:
                trailer = item
                break
            digest.update(line.encode())
            item["at"] = datetime.fromisoformat(item["at"])
            if not walk.feed(SimpleNamespace(**item)):
                raise OpsFlowError(f"{path.name}: {walk.problem.reason if walk.problem else 'unreadable'}")
        if trailer is None or f.readline():
            raise OpsFlowError(f"{path.name} is cut short or has lines after its signature")
    if not key.signed(_signed_part(header, trailer), trailer.get("signature")):
        raise OpsFlowError(f"{path.name}: the archive's signature does not match: it was altered")
    if (trailer.get("count"), trailer.get("last_id"), trailer.get("last_hash"), trailer.get("events_sha256")) != (
            walk.count, walk.last_id, walk.prev, digest.hexdigest()):
        raise OpsFlowError(f"{path.name}: the events do not match the signed summary")
    return Archived(path, int(header["first_id"]), walk.last_id, walk.count, walk.prev, hasher.hexdigest())
