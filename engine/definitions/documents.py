"""Documents a firm edits in the browser, versioned in the database so every node reads the same.

A document is a form (`form`, key `approval.json`), the trading calendar's `sessions` or `holidays`
(`calendar`), or a register such as `emergency_plans` (`register`). Each save adds version n+1,
audited (`document.saved`); readers take the newest version.

Seeding: `opsflow init` copies a file of forms/ or processes/ into the database when that document
has no row yet, so the files stay the source for a fresh install. A file changed later (a new
release's form) is copied as the next version only while the document's newest version came from a
file too: once someone saved it in the browser, no file replaces that edit; init lists it under
`documents_kept`, and the change is made in the browser (or saved through this service) instead.
A reader finds a document with no row (an engine never initialised) in its file.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from engine.context import EngineContext
from engine.definitions.calendar import CALENDAR_KEYS, calendar_problem
from engine.definitions.forms import schema_problem
from engine.errors import BadRequest, Conflict, NotFound
from engine.people.access import AccessPolicy
from engine.people.identity import Actor
from engine.storage.audit import AuditService
from engine.storage.models import RegisterDocument

KINDS = ("form", "calendar", "register")
_FORM_KEY = re.compile(r"^[A-Za-z0-9_][\w.-]{0,120}\.json$")
_REGISTER_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Document:
    kind: str
    key: str
    version: int
    text: str
    sha256: str
    created_at: datetime
    created_by: str
    seeded_from: str | None  # the file it was copied from at init; None for an edit

    def data(self) -> Any:
        return json.loads(self.text)

    @classmethod
    def of(cls, row: RegisterDocument) -> Document:
        return cls(row.kind, row.key, row.version, row.body, row.sha256, row.created_at, row.created_by,
                   row.seeded_from)


def document_problem(kind: str, key: str, text: str) -> str | None:
    """Why this text cannot be saved as that document, or None: checked before anything is written."""
    if kind not in KINDS:
        return f"unknown document kind {kind!r} (one of {', '.join(KINDS)})"
    if kind == "form" and not _FORM_KEY.match(key):
        return f"{key!r} is not a form file name (letters, digits, _ . - and .json)"
    if kind == "calendar" and key not in CALENDAR_KEYS:
        return f"the trading calendar has no document {key!r} (one of {', '.join(CALENDAR_KEYS)})"
    if kind == "register" and not _REGISTER_KEY.match(key):
        return f"register name {key!r} must be lower-case letters, digits and _"
    try:
        data = json.loads(text)
    except ValueError as exc:
        return f"{kind} {key!r} is not valid JSON: {exc}"
    if kind == "form":
        return schema_problem(data)
    if kind == "calendar":
        return calendar_problem(key, data)
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "id" in e for e in entries):
        return f"register {key!r} must be an object with an \"entries\" list of objects, each with an \"id\""
    return None


class RegisterDocuments:
    """The newest version of a document, its history, and saving a new one."""

    def __init__(self, ctx: EngineContext, audit: AuditService, access: AccessPolicy) -> None:
        self.ctx = ctx
        self.audit = audit
        self.access = access

    def latest(self, kind: str, key: str) -> Document | None:
        with self.ctx.db.read() as s:
            row = s.scalars(select(RegisterDocument).where(RegisterDocument.kind == kind, RegisterDocument.key == key)
                            .order_by(RegisterDocument.version.desc()).limit(1)).first()
            return Document.of(row) if row else None

    def versions(self, kind: str) -> dict[str, int]:
        """The newest version number of each document of a kind: one cheap query, for a reader's cache."""
        with self.ctx.db.read() as s:
            rows = s.execute(select(RegisterDocument.key, func.max(RegisterDocument.version))
                             .where(RegisterDocument.kind == kind).group_by(RegisterDocument.key))
            return {key: int(version) for key, version in rows}

    def history(self, kind: str, key: str) -> list[Document]:
        """Every version, newest first."""
        with self.ctx.db.read() as s:
            rows = s.scalars(select(RegisterDocument).where(RegisterDocument.kind == kind, RegisterDocument.key == key)
                             .order_by(RegisterDocument.version.desc()))
            found = [Document.of(r) for r in rows]
        if not found:
            raise NotFound(f"no {kind} {key!r} in the database")
        return found

    def save(self, kind: str, key: str, text: str, by: str, seeded_from: str | None = None) -> Document:
        """Store `text` as the next version, audited, in the caller's transaction if there is one.

        Text equal to the newest version adds nothing. Two nodes saving the same document at once: the
        second gets Conflict and saves again over the first's version.
        """
        problem = document_problem(kind, key, text)
        if problem:
            raise BadRequest(problem)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        with self.ctx.db.transaction() as s:
            previous = s.scalars(select(RegisterDocument).where(RegisterDocument.kind == kind,
                                                                RegisterDocument.key == key)
                                 .order_by(RegisterDocument.version.desc()).limit(1)).first()
            if previous is not None and previous.sha256 == digest:
                return Document.of(previous)
            row = RegisterDocument(kind=kind, key=key, version=(previous.version if previous else 0) + 1, body=text,
                                   sha256=digest, created_at=self.ctx.now(), created_by=by, seeded_from=seeded_from)
            s.add(row)
            try:
                s.flush()
            except IntegrityError:
                raise Conflict(f"{kind} {key!r} was saved by someone else meanwhile; reload and save again") from None
            self.audit.record(s, by, "document.saved", data={
                "kind": kind, "key": key, "version": row.version, "sha256": digest,
                "previous_version": previous.version if previous else None, "seeded_from": seeded_from})
            return Document.of(row)

    # the register editor (the browser) ------------------------------------------------------------------
    def registers(self) -> list[tuple[str, str]]:
        """The (kind, key) of every calendar document and register, in the database or only in its file."""
        found = {(kind, key) for kind, key, _path in self._files() if kind != "form"}
        found |= {("register", key) for key in self.versions("register")}
        return sorted(found)

    def current(self, kind: str, key: str) -> tuple[str, Document | None]:
        """The text an editor starts from: the newest version, else the file that would seed it."""
        document = self.latest(kind, key)
        if document is not None:
            return document.text, document
        for file_kind, file_key, path in self._files():
            if (file_kind, file_key) == (kind, key) and path.is_file():
                return path.read_text(encoding="utf-8"), None
        raise NotFound(f"no {kind} {key!r}")

    def edit(self, actor: Actor, kind: str, key: str, text: str) -> Document:
        """A calendar document or a register saved in the browser, held to registers.edit. Forms are saved
        by the form editor (VersionService.save_form), which also redeploys the processes using them."""
        if kind not in ("calendar", "register"):
            raise BadRequest("only the trading calendar and registers are edited here; forms in the form editor")
        self.access.require(actor, "registers.edit", "edit the trading calendar and the registers")
        return self.save(kind, key, text, actor.username)

    def _files(self) -> list[tuple[str, str, Path]]:
        return seed_files(self.ctx.settings.forms_dir, self.ctx.settings.processes_dir)

    def seed(self, files: Iterable[tuple[str, str, Path]], by: str = "system") -> Seeding:
        """Copy each (kind, key, file) into the database where the document has no row yet, or where its
        newest version was seeded from a file and the file differs now; never over an edit in the browser.

        A file that is not a valid document is left to its reader, which names the problem (the deploy's
        lint, the calendar).
        """
        seeding = Seeding([], [])
        for kind, key, path in files:
            if not path.is_file():
                continue
            text = path.read_text(encoding="utf-8")
            latest = self.latest(kind, key)
            if latest is not None and latest.sha256 == hashlib.sha256(text.encode("utf-8")).hexdigest():
                continue
            if latest is not None and latest.seeded_from is None:
                seeding.kept.append(f"{kind}:{key}")  # the file changed, and so did the browser's version
                continue
            if document_problem(kind, key, text) is None:
                self.save(kind, key, text, by, seeded_from=_shown(path))
                seeding.added.append(f"{kind}:{key}")
        return seeding


@dataclass(frozen=True)
class Seeding:
    added: list[str]  # kind:key, seeded or refreshed from its file
    kept: list[str]  # kind:key whose file differs from a version saved in the browser, which stays


def _shown(path: Path) -> str:
    """The file as the audit trail names it: its directory and name (forms/approval.json)."""
    return f"{path.parent.name}/{path.name}"


def seed_files(forms_dir: Path, processes_dir: Path) -> list[tuple[str, str, Path]]:
    """The files that seed the documents: every form, the calendar, and each register of processes/
    (an object with an "entries" list, such as emergency_plans.json)."""
    files = [("form", p.name, p) for p in sorted(forms_dir.glob("*.json"))] if forms_dir.is_dir() else []
    files += [("calendar", key, processes_dir / "calendar" / f"{key}.json") for key in CALENDAR_KEYS]
    for path in sorted(processes_dir.glob("*.json")) if processes_dir.is_dir() else []:
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue  # not a register; the file's own reader reports it
        if isinstance(content, dict) and isinstance(content.get("entries"), list) and _REGISTER_KEY.match(path.stem):
            files.append(("register", path.stem, path))
    return files
