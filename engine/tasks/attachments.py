"""Attachments (方案书, test reports, signed reports): stored with a SHA-256 and part of the record."""

from __future__ import annotations

import hashlib
import re
import unicodedata

from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from engine.context import EngineContext
from engine.errors import BadRequest, Conflict, Forbidden, NotFound
from engine.people.access import AccessPolicy, case_facts
from engine.people.identity import Actor
from engine.people.substitutes import holders_for
from engine.storage.audit import AuditService
from engine.storage.models import Attachment, HumanTask, ProcessInstance

MAX_BYTES = 10 * 1024 * 1024


def clean_filename(name: str) -> str:
    """The last path part, without control characters, at most 200 characters."""
    name = re.split(r"[\\/]", name or "")[-1]
    name = "".join(c for c in unicodedata.normalize("NFC", name) if unicodedata.category(c)[0] != "C")
    name = name.strip().strip(".")
    return name[-200:] or "attachment"


class AttachmentService:
    def __init__(self, ctx: EngineContext, audit: AuditService, access: AccessPolicy,
                 max_bytes: int = MAX_BYTES) -> None:
        self.ctx = ctx
        self.access = access
        self.audit = audit
        self.max_bytes = max_bytes

    def add(self, instance_id: int, task_id: str | None, filename: str, content_type: str, content: bytes,
            uploaded_by: Actor, kind: str = "document") -> Attachment:
        """Store a file on a case (and task); the uploader must be able to act on that task."""
        if not content:
            raise BadRequest("the file is empty")
        if len(content) > self.max_bytes:
            raise BadRequest(f"the file is larger than {self.max_bytes // (1024 * 1024)} MB")
        with self.ctx.db.transaction() as s:
            case = s.get(ProcessInstance, instance_id)
            if case is None:
                raise NotFound(f"unknown case {instance_id}")
            if task_id is not None:
                self._check_may_attach(s, uploaded_by, instance_id, task_id)
            elif not self._may_read(s, uploaded_by, case):
                raise Forbidden(f"{uploaded_by.username} takes no part in case {instance_id}", rule="read")
            row = Attachment(instance_id=instance_id, task_id=task_id, kind=kind[:64],
                             filename=clean_filename(filename),
                             content_type=(content_type or "application/octet-stream")[:128],
                             size=len(content), sha256=hashlib.sha256(content).hexdigest(), content=content,
                             uploaded_by=uploaded_by.username, uploaded_at=self.ctx.now())
            s.add(row)
            s.flush()
            self.audit.record(s, uploaded_by.username, "attachment.added", instance_id=instance_id,
                              task_id=task_id, data={"id": row.id, "filename": row.filename,
                                                     "size": row.size, "sha256": row.sha256})
            s.expunge(row)
            return row

    def list(self, instance_id: int, actor: Actor | None = None) -> list[Attachment]:
        """A case's attachments, oldest first, without their content."""
        with self.ctx.db.transaction() as s:
            if actor is not None:
                case = s.get(ProcessInstance, instance_id)
                if case is None:
                    raise NotFound(f"unknown case {instance_id}")
                if not self._may_read(s, actor, case):
                    raise Forbidden(f"{actor.username} takes no part in case {instance_id}", rule="read")
            return list(s.scalars(select(Attachment).where(Attachment.instance_id == instance_id)
                                  .order_by(Attachment.id)))

    def get(self, attachment_id: int, actor: Actor | None = None) -> Attachment:
        """One attachment with its content; readable by whoever may read its case."""
        with self.ctx.db.transaction() as s:
            row = s.scalars(select(Attachment).options(undefer(Attachment.content))
                            .where(Attachment.id == attachment_id)).first()
            if row is None:
                raise NotFound(f"unknown attachment {attachment_id}")
            if actor is not None:
                case = s.get(ProcessInstance, row.instance_id)
                if case is None or not self._may_read(s, actor, case):
                    raise Forbidden(f"{actor.username} may not read attachment {attachment_id}", rule="read")
            return row

    # helpers ------------------------------------------------------------------------------------
    def _check_may_attach(self, s: Session, actor: Actor, instance_id: int, task_id: str) -> None:
        task = s.get(HumanTask, task_id)
        if task is None or task.instance_id != instance_id:
            raise NotFound(f"unknown task {task_id} in case {instance_id}")
        if task.state != "open":
            raise Conflict(f"task {task_id} is already {task.state}")
        if task.assignee:
            allowed = task.assignee == actor.username or (  # a substitute, for a role they hold too
                task.assignee in holders_for(s, actor.username, self.ctx.now()) and actor.has_role(task.role))
        else:
            allowed = actor.has_role(task.role)
        if not allowed:
            raise Forbidden(f"{actor.username} may not add files to task {task_id}", rule="assignee")

    def _may_read(self, s: Session, actor: Actor, case: ProcessInstance) -> bool:
        """Files are read as their case is: one rule (engine/people/access.py)."""
        facts = case_facts(s, case.id, case)
        return facts is not None and self.access.may_read_case(actor, facts,
                                                               holders_for(s, actor.username, self.ctx.now()))
