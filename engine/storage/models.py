"""Typed SQLAlchemy models: the durable state of OpsFlow (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend (SQLite has no zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are never stored")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class Role(Base):
    __tablename__ = "role"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    name_zh: Mapped[str] = mapped_column(String(64), unique=True)
    name_en: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")


class User(Base):
    __tablename__ = "app_user"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128))
    password_hash: Mapped[str | None] = mapped_column(String(256))
    active: Mapped[bool] = mapped_column(default=True)
    locale: Mapped[str] = mapped_column(String(16), default="zh_CN")
    email: Mapped[str | None] = mapped_column(String(256))  # where escalation e-mails go (engine/people/notify.py)
    created_at: Mapped[datetime]
    roles: Mapped[list[UserRole]] = relationship(cascade="all, delete-orphan", lazy="selectin")

    @property
    def role_keys(self) -> set[str]:
        return {r.role_key for r in self.roles}


class UserRole(Base):
    __tablename__ = "user_role"
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"), primary_key=True)
    role_key: Mapped[str] = mapped_column(ForeignKey("role.key"), primary_key=True)


class ApiToken(Base):
    __tablename__ = "api_token"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class ProcessDefinition(Base):
    """One deployed version of one process; immutable once written."""

    __tablename__ = "process_definition"
    __table_args__ = (UniqueConstraint("process_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    process_id: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int]
    name: Mapped[str] = mapped_column(String(256))
    sha256: Mapped[str] = mapped_column(String(64))
    source_name: Mapped[str] = mapped_column(String(256))
    bpmn_xml: Mapped[str] = mapped_column(Text)
    dmn_xml: Mapped[dict[str, Any]] = mapped_column(default=dict)  # file name -> DMN XML it uses
    forms: Mapped[dict[str, Any]] = mapped_column(default=dict)  # form file -> JSON Schema, frozen
    spec_json: Mapped[str] = mapped_column(Text)
    deployed_by: Mapped[str] = mapped_column(String(64))
    deployed_at: Mapped[datetime]
    # "by_task": each task's answers under its id, case fields only where declared; "shared": the
    # versions deployed before answers were kept per task (their running cases read shared keys).
    answers: Mapped[str] = mapped_column(String(16), default="by_task", server_default="shared")


class ProcessInstance(Base):
    """A case. Holds state only (never the spec) and a revision for optimistic locking."""

    __tablename__ = "process_instance"
    # The tick's claim (status = running, next_timer_due < now, earliest first) reads this index alone.
    __table_args__ = (Index("ix_process_instance_timer", "status", "next_timer_due"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    definition_id: Mapped[int] = mapped_column(ForeignKey("process_definition.id"), index=True)
    process_id: Mapped[str] = mapped_column(String(128), index=True)
    business_key: Mapped[str | None] = mapped_column(String(128), index=True)
    title: Mapped[str] = mapped_column(String(512), default="")
    status: Mapped[str] = mapped_column(String(16), index=True)  # running|completed|cancelled|error
    started_by: Mapped[str] = mapped_column(String(64), index=True)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(Text, deferred=True)  # read only when the cache misses
    revision: Mapped[int] = mapped_column(Integer, default=1)
    next_timer_due: Mapped[datetime | None] = mapped_column(index=True)
    error: Mapped[str | None] = mapped_column(Text)
    # KPI figures kept on every save from the case data (processes/kpis.json, engine/cases/figures.py)
    detected_at: Mapped[datetime | None]  # an incident's discovery
    restored_at: Mapped[datetime | None]  # when service was restored
    outcome: Mapped[str | None] = mapped_column(String(64))  # a change's 成功 / 失败 ...
    category: Mapped[str | None] = mapped_column(String(64))  # a change's type (normal, emergency ...)
    definition: Mapped[ProcessDefinition] = relationship(lazy="select")

    # Optimistic locking: every UPDATE checks the revision it read; a stale one raises StaleDataError.
    __mapper_args__ = {"version_id_col": revision}


class HumanTask(Base):
    """The inbox row of a user task, kept in step with the case on every save."""

    __tablename__ = "human_task"
    __table_args__ = (
        Index("ix_human_task_open_assignee", "state", "assignee"),
        Index("ix_human_task_open_role", "state", "role"),
        Index("ix_human_task_instance", "instance_id", "state"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # the SpiffWorkflow task id
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instance.id", ondelete="CASCADE"))
    process_id: Mapped[str] = mapped_column(String(128))
    bpmn_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(64))
    assignee: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # open|completed|cancelled
    form_key: Mapped[str | None] = mapped_column(String(256))
    priority: Mapped[int] = mapped_column(Integer, default=3)
    created_at: Mapped[datetime]
    due_at: Mapped[datetime | None] = mapped_column(index=True)
    claimed_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    completed_by: Mapped[str | None] = mapped_column(String(64))
    acting_for: Mapped[str | None] = mapped_column(String(64))  # the holder a substitute (A/B角) acted for
    answers: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # what was submitted (审批记录)
    return_reason: Mapped[str | None] = mapped_column(Text)  # reopened because the case was sent back
    returned_by: Mapped[str | None] = mapped_column(String(64))  # who sent it back; None: an automatic check
    completed_revision: Mapped[int | None] = mapped_column(Integer)  # the case revision it completed at


class MessageSubscription(Base):
    """A message a case is waiting for, with the correlation values it was seeded with."""

    __tablename__ = "message_subscription"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instance.id", ondelete="CASCADE"), index=True)
    message_name: Mapped[str] = mapped_column(String(256), index=True)
    correlation: Mapped[dict[str, Any]] = mapped_column(default=dict)


class CaseLink(Base):
    __tablename__ = "case_link"
    __table_args__ = (UniqueConstraint("from_instance_id", "to_instance_id", "kind"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    from_instance_id: Mapped[int] = mapped_column(ForeignKey("process_instance.id"), index=True)
    to_instance_id: Mapped[int] = mapped_column(ForeignKey("process_instance.id"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(64))


class AuditEvent(Base):
    """Append-only; `hash` covers the row's content and the previous row's `hash`: an HMAC under the
    audit key from the head's `keyed_from` on, a plain SHA-256 before (engine/storage/audit/chain.py)."""

    __tablename__ = "audit_event"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    instance_id: Mapped[int | None] = mapped_column(Integer, index=True)
    task_id: Mapped[str | None] = mapped_column(String(36))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source: Mapped[str | None] = mapped_column(String(128))  # "web 10.0.0.1", "api …", "cli alice", "ticker"
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """One row: the chain's tip, locked by every append so appends serialise, and signed (`mac`) over
    all its columns so stepping it back, or moving where keying began, needs the audit key."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))
    keyed_from: Mapped[int | None] = mapped_column(BigInteger)  # the first event signed with the key
    key_id: Mapped[str | None] = mapped_column(String(16))  # names the key without revealing it
    archived_to: Mapped[int] = mapped_column(BigInteger, default=0)  # events up to here moved to an archive
    archived_hash: Mapped[str] = mapped_column(String(64), default="0" * 64)  # the last archived event's hash
    mac: Mapped[str | None] = mapped_column(String(64))


class Attachment(Base):
    """A file on a case or task (方案书, test report, signed report): part of the record."""

    __tablename__ = "attachment"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instance.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[str | None] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(64), default="document")
    filename: Mapped[str] = mapped_column(String(256))
    content_type: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    uploaded_by: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[datetime]


class Substitute(Base):
    """A/B角: the substitute sees and may act on the holder's tasks within the window."""

    __tablename__ = "substitute"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str] = mapped_column(String(64), index=True)
    substitute: Mapped[str] = mapped_column(String(64), index=True)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class Job(Base):
    """A due job (timer, escalation, notification) claimed by any ticker (Camunda 7's job model)."""

    __tablename__ = "job"
    __table_args__ = (Index("ix_job_due", "state", "due_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    due_at: Mapped[datetime]
    instance_id: Mapped[int | None] = mapped_column(Integer, index=True)
    task_id: Mapped[str | None] = mapped_column(String(36))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|done|failed
    lock_owner: Mapped[str | None] = mapped_column(String(128))
    lock_expires_at: Mapped[datetime | None]
    retries_left: Mapped[int] = mapped_column(Integer, default=5)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    done_at: Mapped[datetime | None]


class Notification(Base):
    """An in-app notification (the unread count shows in the navigation)."""

    __tablename__ = "notification"
    __table_args__ = (Index("ix_notification_user_unread", "username", "read_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(256))
    body: Mapped[str] = mapped_column(Text, default="")
    instance_id: Mapped[int | None] = mapped_column(Integer)
    task_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime]
    read_at: Mapped[datetime | None]


class Alert(Base):
    """One monitoring alert by (source, fingerprint), pointing at the incident case it opened last."""

    __tablename__ = "alert"
    __table_args__ = (UniqueConstraint("source", "fingerprint"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(256))
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instance.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))  # firing|resolved: the last one received
    severity: Mapped[str] = mapped_column(String(16))
    system: Mapped[str] = mapped_column(String(128))
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]


class AlertOccurrence(Base):
    """Every alert received that changed something (retries of the same one are not stored twice)."""

    __tablename__ = "alert_occurrence"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alert.id", ondelete="CASCADE"), index=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instance.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    occurred_at: Mapped[datetime | None]
    received_at: Mapped[datetime]
    received_by: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))  # opened|appended|resolved


class LoginAttempt(Base):
    """One password check (page, API, password change) for the login throttle, shared by every worker.

    Rows older than the window are pruned; the audit trail keeps the history (user.login_failed...).
    """

    __tablename__ = "login_attempt"
    __table_args__ = (Index("ix_login_attempt_username", "username", "at"),
                      Index("ix_login_attempt_address", "address", "at"), Index("ix_login_attempt_at", "at"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))  # as typed, lower-cased; may name nobody
    address: Mapped[str] = mapped_column(String(64))  # the client's address
    at: Mapped[datetime]
    ok: Mapped[bool]


class WebSession(Base):
    """A signed-in browser: the session cookie carries a random id, stored here only as SHA-256, so
    signing out (or a password change, or deactivation) ends it for good, even for a copied cookie."""

    __tablename__ = "web_session"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"), index=True)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    address: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class ConfigItem(Base):
    """A configuration item (配置项): a system, or a component a firm registers, that cases name.

    Every change to a row is in the audit trail (ci.created / ci.updated with the changed fields),
    so the row holds only the present state (engine/configuration/).
    """

    __tablename__ = "config_item"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    core: Mapped[bool]  # 核心交易 (True) or 非核心
    system_class: Mapped[int | None]  # the 2021 class 一类..五类 as 1..5; None where unclassified
    # the business category incident grading reads (集中交易, 网上交易, ... 其他: records.CATEGORIES)
    category: Mapped[str] = mapped_column(String(32), default="其他", server_default="其他")
    markets: Mapped[list[Any]] = mapped_column(JSON)  # market codes of processes/calendar/sessions.json
    environment: Mapped[str] = mapped_column(String(32))
    owner_role: Mapped[str] = mapped_column(String(64))
    maintainer_a: Mapped[str] = mapped_column(String(64))
    maintainer_b: Mapped[str] = mapped_column(String(64))
    vendor: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # 在用|停用|建设中|已下线
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(64))


class CaseItem(Base):
    """A case names an item (the systems a change touches, an incident hits): both ways, so an item's
    page lists its cases and a case its items. Written when a form's register field is submitted."""

    __tablename__ = "case_item"
    __table_args__ = (UniqueConstraint("instance_id", "item_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instance.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("config_item.id", ondelete="CASCADE"), index=True)
    linked_at: Mapped[datetime]
    linked_by: Mapped[str] = mapped_column(String(64))


class ConfigItemRelation(Base):
    """`from_id` depends on, or runs on, `to_id`."""

    __tablename__ = "config_item_relation"
    __table_args__ = (UniqueConstraint("from_id", "to_id", "kind"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    from_id: Mapped[int] = mapped_column(ForeignKey("config_item.id", ondelete="CASCADE"), index=True)
    to_id: Mapped[int] = mapped_column(ForeignKey("config_item.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # depends_on|runs_on


class StandardChangeTemplate(Base):
    """A standard-change template (标准变更模板): the steps and rollback plan a standard change of the
    bound systems follows, approved by an ops manager and the IT head in a standard_change_template
    case (engine/configuration/templates.py).

    status: 草稿 (proposed, not yet approved) | 生效 (active: changes may cite it) | 过期 (past
    valid_until, awaiting review) | 停用 (retired on review). A renewal keeps the code, raises version
    and sets a new validity; earlier versions live in the audit trail (template.activated ...).
    """

    __tablename__ = "standard_change_template"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)  # SC-0001
    title: Mapped[str] = mapped_column(String(256))
    system_ids: Mapped[list[Any]] = mapped_column(JSON)  # config_item ids the template covers
    steps: Mapped[list[Any]] = mapped_column(JSON)  # the steps, as text, in order
    rollback_plan: Mapped[str] = mapped_column(Text)
    rollback_tested: Mapped[bool]  # as declared by the proposer and approved
    status: Mapped[str] = mapped_column(String(16), index=True)  # 草稿|生效|过期|停用
    valid_from: Mapped[datetime | None]
    valid_until: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=1)
    approved_by_ops: Mapped[str | None] = mapped_column(String(64))
    approved_by_it_head: Mapped[str | None] = mapped_column(String(64))
    # the case that approved (or last renewed) this version
    instance_id: Mapped[int | None] = mapped_column(
        ForeignKey("process_instance.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(64))


class RegisterDocument(Base):
    """One version of a document a firm edits in the browser: a form, the trading calendar's session
    times or holidays, a register such as the emergency plans (engine/definitions/documents.py).

    Every node reads the newest version from here, so all see the same; the files in forms/ and
    processes/ seed a document at `opsflow init` when it has no row yet, or when its newest version
    was itself seeded and the file has changed since (never over an edit). Rows are never changed: a
    save adds version n+1, audited (document.saved).
    """

    __tablename__ = "register_document"
    __table_args__ = (UniqueConstraint("kind", "key", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # form | calendar | register
    key: Mapped[str] = mapped_column(String(128))  # approval.json | holidays | emergency_plans
    version: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)  # the JSON text exactly as saved (sha256 is over it)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(64))
    # the file this version was seeded from (forms/approval.json); None for an edit in the browser
    seeded_from: Mapped[str | None] = mapped_column(String(256))
