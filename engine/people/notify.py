"""Notifications: in-app (the unread count in the navigation), e-mail over SMTP, and a webhook.

`notify()` runs inside the caller's transaction: the in-app rows are written there, and every
e-mail and webhook message becomes a `notification` job that a ticker sends afterwards, so a slow
or refusing server never blocks the task or the case; a failed send is retried with back-off and
its error recorded (engine/jobs/queue.py, escalation.py).

Each e-mail and webhook job carries an idempotency key fixed when it is queued (`opsflow-<uuid>`,
payload `idempotency_key`). A send is not transactional: a worker that dies after the server took
the message but before the job was marked done leaves it to be sent again. Every send of the job
carries the same key, so the receiver can drop the repeat: the webhook's `Idempotency-Key` header
(and `idempotency_key` in the plain JSON body; WeCom and DingTalk take no extra fields) and the
e-mail's `Message-ID` (`<key@sender's domain>`). A run that starts after an interrupted one is
known from the job's `_started` count, committed before each send, and logged.

Configuration (environment):

    OPSFLOW_SMTP_HOST, OPSFLOW_SMTP_PORT (25), OPSFLOW_SMTP_FROM (opsflow@localhost),
    OPSFLOW_SMTP_USER, OPSFLOW_SMTP_PASSWORD, OPSFLOW_SMTP_SECURITY (none|starttls|ssl),
    OPSFLOW_SMTP_TIMEOUT (10 s)                    e-mail is off without OPSFLOW_SMTP_HOST
    OPSFLOW_WEBHOOK_URL, OPSFLOW_WEBHOOK_FORMAT (json|wecom|dingtalk), OPSFLOW_WEBHOOK_SECRET
    (DingTalk 加签), OPSFLOW_WEBHOOK_TIMEOUT (10 s)  the webhook is off without OPSFLOW_WEBHOOK_URL
    OPSFLOW_BASE_URL                               links in messages (https://opsflow.example.com)
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import hmac
import json
import logging
import os
import smtplib
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from engine.context import EngineContext
from engine.errors import BadRequest
from engine.jobs.queue import schedule_job
from engine.storage.audit import AuditService
from engine.storage.models import Notification, User

log = logging.getLogger("opsflow.notify")

WEBHOOK_FORMATS = ("json", "wecom", "dingtalk")


class SendError(Exception):
    """A server refused or answered with an error; the job table retries it."""


@dataclass(frozen=True)
class NotifySettings:
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "opsflow@localhost"
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_security: str = "none"  # none | starttls | ssl
    smtp_timeout: float = 10.0
    webhook_url: str | None = None
    webhook_format: str = "json"
    webhook_secret: str | None = None
    webhook_timeout: float = 10.0
    base_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> NotifySettings:
        env = os.environ if env is None else env
        fmt = (env.get("OPSFLOW_WEBHOOK_FORMAT") or "json").lower()
        if fmt not in WEBHOOK_FORMATS:
            raise ValueError(f"OPSFLOW_WEBHOOK_FORMAT is one of {', '.join(WEBHOOK_FORMATS)}, not {fmt!r}")
        return cls(
            smtp_host=env.get("OPSFLOW_SMTP_HOST") or None,
            smtp_port=int(env.get("OPSFLOW_SMTP_PORT") or 25),
            smtp_from=env.get("OPSFLOW_SMTP_FROM") or "opsflow@localhost",
            smtp_user=env.get("OPSFLOW_SMTP_USER") or None,
            smtp_password=env.get("OPSFLOW_SMTP_PASSWORD") or None,
            smtp_security=(env.get("OPSFLOW_SMTP_SECURITY") or "none").lower(),
            smtp_timeout=float(env.get("OPSFLOW_SMTP_TIMEOUT") or 10),
            webhook_url=env.get("OPSFLOW_WEBHOOK_URL") or None,
            webhook_format=fmt,
            webhook_secret=env.get("OPSFLOW_WEBHOOK_SECRET") or None,
            webhook_timeout=float(env.get("OPSFLOW_WEBHOOK_TIMEOUT") or 10),
            base_url=(env.get("OPSFLOW_BASE_URL") or "").rstrip("/") or None,
        )


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    kind: str = "info"
    instance_id: int | None = None
    task_id: str | None = None

    def link(self, base_url: str | None) -> str | None:
        if not base_url:
            return None
        if self.task_id:
            return f"{base_url}/tasks/{self.task_id}"
        return f"{base_url}/cases/{self.instance_id}" if self.instance_id else base_url


class NotifyService:
    def __init__(self, ctx: EngineContext, audit: AuditService, settings: NotifySettings | None = None) -> None:
        self.ctx = ctx
        self.audit = audit
        self.settings = settings or NotifySettings.from_env()

    def configure(self, **changes: Any) -> NotifySettings:
        """Change settings at run time (tests, an admin page); returns the new settings."""
        self.settings = replace(self.settings, **changes)
        return self.settings

    # the in-app list ------------------------------------------------------------------------------
    def unread_count(self, username: str) -> int:
        with self.ctx.db.transaction() as s:
            return s.scalar(select(func.count()).select_from(Notification)
                            .where(Notification.username == username, Notification.read_at.is_(None))) or 0

    def list(self, username: str, unread_only: bool = False, limit: int = 50, offset: int = 0) -> list[Notification]:
        """The user's notifications, newest first."""
        with self.ctx.db.transaction() as s:
            query = select(Notification).where(Notification.username == username)
            if unread_only:
                query = query.where(Notification.read_at.is_(None))
            return list(s.scalars(query.order_by(Notification.id.desc()).offset(offset).limit(limit)))

    def mark_read(self, username: str, ids: Iterable[int] | None = None) -> int:
        """Mark the user's notifications read (all of them without ids); returns how many changed."""
        with self.ctx.db.transaction() as s:
            query = update(Notification).where(Notification.username == username, Notification.read_at.is_(None))
            if ids is not None:
                query = query.where(Notification.id.in_([int(i) for i in ids]))
            # An UPDATE's result is a CursorResult, though Session.execute is typed for any statement.
            return cast(CursorResult[Any], s.execute(query.values(read_at=self.ctx.now()))).rowcount or 0

    def set_email(self, username: str, email: str | None, by: str = "system") -> None:
        if email is not None and ("@" not in email or any(c.isspace() for c in email) or len(email) > 256):
            raise BadRequest(f"{email!r} is not an e-mail address")
        with self.ctx.db.transaction() as s:
            user = s.scalars(select(User).where(User.username == username)).first()
            if user is None:
                raise BadRequest(f"unknown user {username!r}")
            user.email = email or None
            self.audit.record(s, by, "user.email_set", data={"username": username, "email": user.email})

    # sending -------------------------------------------------------------------------------------
    def notify(self, s: Session, usernames: Iterable[str], message: Message,
               channels: Iterable[str] = ("inapp", "email"), retries: int = 5) -> dict[str, Any]:
        """Notify people through the channels, within the caller's transaction.

        In-app rows are written now; e-mails (to users with an address, when SMTP is configured)
        and the webhook message (when configured) are queued as jobs. Returns what was queued.
        """
        channels = set(channels)
        users = sorted(set(usernames))
        now = self.ctx.now()
        out: dict[str, Any] = {"inapp": [], "email": [], "webhook": False}
        if "inapp" in channels:
            for username in users:
                s.add(Notification(username=username, kind=message.kind[:32], title=message.title[:256],
                                   body=message.body, instance_id=message.instance_id, task_id=message.task_id,
                                   created_at=now))
            out["inapp"] = users
        common = {"title": message.title, "body": message.body, "kind": message.kind,
                  "instance_id": message.instance_id, "task_id": message.task_id}
        # One key per message sent, fixed now: every retry of that send carries the same one.
        if "email" in channels and self.settings.smtp_host and users:
            for username, email in s.execute(select(User.username, User.email)
                                             .where(User.username.in_(users), User.email.is_not(None))):
                schedule_job(s, "notification", now, created_at=now, instance_id=message.instance_id,
                             task_id=message.task_id, retries=retries,
                             payload={**common, "channel": "email", "to": [email], "username": username,
                                      "idempotency_key": idempotency_key()})
                out["email"].append(username)
        if "webhook" in channels and self.settings.webhook_url:
            schedule_job(s, "notification", now, created_at=now, instance_id=message.instance_id,
                         task_id=message.task_id, retries=retries,
                         payload={**common, "channel": "webhook", "usernames": users,
                                  "idempotency_key": idempotency_key()})
            out["webhook"] = True
        return out

    def send(self, payload: dict[str, Any]) -> None:
        """Send one queued notification job's payload; raises SendError (or OSError) on failure."""
        message = Message(payload.get("title", ""), payload.get("body", ""), payload.get("kind", "info"),
                          payload.get("instance_id"), payload.get("task_id"))
        channel = payload.get("channel")
        key = payload.get("idempotency_key")  # None on jobs queued before keys existed
        started, failed = int(payload.get("_started", 1)), int(payload.get("_attempts", 0))
        if started > failed + 1:
            log.info("%s notification %s: sending again after an interrupted send (run %d, %d failed); "
                     "the receiver may drop it as a duplicate", channel, key, started, failed)
        if channel == "email":
            self.send_email(payload["to"], message, key)
        elif channel == "webhook":
            self.send_webhook(message, payload.get("usernames") or [], key)
        else:
            raise SendError(f"unknown notification channel {channel!r}")

    def send_email(self, to: builtins.list[str], message: Message,  # `list` is a method here
                   idempotency_key: str | None = None) -> None:
        cfg = self.settings
        if not cfg.smtp_host:
            raise SendError("e-mail is not configured (OPSFLOW_SMTP_HOST)")
        mail = EmailMessage()
        mail["Subject"] = message.title
        mail["From"] = formataddr(("OpsFlow 运维流程", cfg.smtp_from))
        mail["To"] = ", ".join(to)
        domain = cfg.smtp_from.rpartition("@")[2] or "opsflow"
        # The same key, the same Message-ID: a receiver that keeps the IDs it has seen drops a resend.
        mail["Message-ID"] = f"<{idempotency_key}@{domain}>" if idempotency_key else make_msgid(domain=domain)
        link = message.link(cfg.base_url)
        mail.set_content(message.body + (f"\n\n{link}" if link else "") + "\n", charset="utf-8")
        if cfg.smtp_security == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(cfg.smtp_host, cfg.smtp_port, timeout=cfg.smtp_timeout,
                                                    context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=cfg.smtp_timeout)
        try:
            if cfg.smtp_security == "starttls":
                client.starttls(context=ssl.create_default_context())
            if cfg.smtp_user:
                client.login(cfg.smtp_user, cfg.smtp_password or "")
            refused = client.send_message(mail)
            if refused:
                raise SendError(f"the SMTP server refused {', '.join(sorted(refused))}")
        except smtplib.SMTPException as exc:
            raise SendError(f"SMTP {exc.__class__.__name__}: {exc}") from exc
        finally:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()

    def send_webhook(self, message: Message, usernames: builtins.list[str] | None = None,
                     idempotency_key: str | None = None) -> None:
        cfg = self.settings
        if not cfg.webhook_url:
            raise SendError("the webhook is not configured (OPSFLOW_WEBHOOK_URL)")
        url = cfg.webhook_url
        if cfg.webhook_format == "dingtalk" and cfg.webhook_secret:
            url = dingtalk_signed_url(url, cfg.webhook_secret)
        body = json.dumps(webhook_body(cfg.webhook_format, message, message.link(cfg.base_url), usernames or [],
                                       self.ctx.now(), idempotency_key), ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        request = urllib.request.Request(url, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=cfg.webhook_timeout) as response:  # noqa: S310
                text = response.read(65536).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            raise SendError(f"webhook answered HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise SendError(f"webhook unreachable: {getattr(exc, 'reason', exc)}") from exc
        try:
            answer = json.loads(text) if text.strip() else {}
        except ValueError:
            answer = {}
        if isinstance(answer, dict) and answer.get("errcode", 0) not in (0, "0"):
            raise SendError(f"webhook refused: errcode {answer.get('errcode')} {answer.get('errmsg', '')}".strip())


def idempotency_key() -> str:
    """A new notification's key: unique, and usable as the local part of a Message-ID."""
    return f"opsflow-{uuid.uuid4()}"


def webhook_body(fmt: str, message: Message, link: str | None, usernames: list[str],
                 now: datetime, idempotency_key: str | None = None) -> dict[str, Any]:
    """The JSON a group robot expects: WeCom (企业微信) and DingTalk (钉钉) markdown, or plain JSON.

    The robots' formats take no field of ours: there the key rides in the header alone."""
    lines = message.body.strip()
    if fmt == "wecom":
        content = f"**{message.title}**\n{lines}" + (f"\n[打开 OpsFlow]({link})" if link else "")
        return {"msgtype": "markdown", "markdown": {"content": content}}
    if fmt == "dingtalk":
        text = f"### {message.title}\n\n" + "\n\n".join(lines.splitlines()) + (f"\n\n[打开 OpsFlow]({link})"
                                                                             if link else "")
        return {"msgtype": "markdown", "markdown": {"title": message.title, "text": text}}
    return {"title": message.title, "body": message.body, "kind": message.kind, "instance_id": message.instance_id,
            "task_id": message.task_id, "url": link, "usernames": usernames, "sent_at": now.isoformat(),
            **({"idempotency_key": idempotency_key} if idempotency_key else {})}


def dingtalk_signed_url(url: str, secret: str, timestamp_ms: int | None = None) -> str:
    """DingTalk 加签: timestamp + HMAC-SHA256(secret, "timestamp\\nsecret"), base64, URL-encoded."""
    timestamp = str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000))
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    sign = urllib.parse.quote_plus(base64.b64encode(digest).decode())
    return f"{url}{'&' if '?' in url else '?'}timestamp={timestamp}&sign={sign}"
