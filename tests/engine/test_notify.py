"""Notifications: the in-app list, e-mail over SMTP and the webhook (WeCom, DingTalk, JSON), with retries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from datetime import timedelta

import pytest

from engine import ProcessEngine
from engine.people.notify import Message, NotifySettings, dingtalk_signed_url, webhook_body
from engine.storage.models import Job
from tests.conftest import Clock, deploy_fixture
from tests.engine.local_servers import SmtpServer, WebhookServer, free_port, smtp_server, webhook_server

__all__ = ["smtp_server", "webhook_server"]  # pytest fixtures, used by name

MESSAGE = Message("【督办】响应事件：已超期 10分钟", "案件：#7 网上交易登录缓慢\n处理人：wang", "escalation",
                  7, "task-1")


def send(engine: ProcessEngine, usernames, message: Message = MESSAGE, channels=("inapp", "email", "webhook")):
    with engine.ctx.db.transaction() as s:
        return engine.notify.notify(s, usernames, message, channels)


# in-app -------------------------------------------------------------------------------------------------
def test_in_app_list_unread_count_and_mark_read(engine: ProcessEngine, people, clock: Clock) -> None:
    send(engine, ["wang", "du"], channels=("inapp",))
    send(engine, ["wang"], Message("第二条", "正文"), channels=("inapp",))
    assert engine.notify.unread_count("wang") == 2
    assert engine.notify.unread_count("li") == 0
    first, second = engine.notify.list("wang")[::-1]
    assert (first.title, first.kind, first.instance_id, first.task_id) == (MESSAGE.title, "escalation", 7, "task-1")
    assert engine.notify.mark_read("du", [second.id]) == 0  # not du's
    assert engine.notify.mark_read("wang", [first.id]) == 1
    assert [n.title for n in engine.notify.list("wang", unread_only=True)] == ["第二条"]
    assert engine.notify.mark_read("wang") == 1
    assert engine.notify.unread_count("wang") == 0
    assert engine.notify.unread_count("du") == 1
    assert engine.notify.list("wang")[0].read_at == clock.now


def test_nothing_but_in_app_is_queued_when_mail_and_webhook_are_not_configured(engine: ProcessEngine,
                                                                               people) -> None:
    engine.notify.configure(smtp_host=None, webhook_url=None)
    engine.notify.set_email("wang", "wang@example.com")
    assert send(engine, ["wang"]) == {"inapp": ["wang"], "email": [], "webhook": False}
    assert engine.jobs.jobs() == []


def test_settings_come_from_the_environment() -> None:
    settings = NotifySettings.from_env({"OPSFLOW_SMTP_HOST": "mail.example.com", "OPSFLOW_SMTP_PORT": "587",
                                        "OPSFLOW_SMTP_SECURITY": "STARTTLS", "OPSFLOW_WEBHOOK_FORMAT": "wecom",
                                        "OPSFLOW_WEBHOOK_URL": "https://qyapi.weixin.qq.com/x",
                                        "OPSFLOW_BASE_URL": "https://opsflow.example.com/"})
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_security) == ("mail.example.com", 587, "starttls")
    assert (settings.webhook_format, settings.base_url) == ("wecom", "https://opsflow.example.com")
    with pytest.raises(ValueError, match="OPSFLOW_WEBHOOK_FORMAT"):
        NotifySettings.from_env({"OPSFLOW_WEBHOOK_FORMAT": "slack"})


# e-mail -------------------------------------------------------------------------------------------------
def test_email_is_sent_by_the_tick_to_users_with_an_address(engine: ProcessEngine, people,
                                                            smtp_server: SmtpServer) -> None:
    engine.notify.configure(smtp_host=smtp_server.host, smtp_port=smtp_server.port, smtp_from="opsflow@firm.cn",
                            base_url="https://opsflow.firm.cn")
    engine.notify.set_email("wang", "wang@firm.cn")
    queued = send(engine, ["wang", "du"], channels=("email",))  # du has no address
    assert queued["email"] == ["wang"]
    assert smtp_server.messages == []  # nothing is sent inside the notifying transaction
    assert len(engine.jobs.tick().done) == 1
    [mail] = smtp_server.messages
    assert mail["Subject"] == MESSAGE.title and mail["To"] == "wang@firm.cn"
    assert "opsflow@firm.cn" in mail["From"]
    body = mail.get_content()
    assert "网上交易登录缓慢" in body and "https://opsflow.firm.cn/tasks/task-1" in body
    [job] = engine.jobs.jobs(kind="notification")
    assert job.payload["idempotency_key"].startswith("opsflow-")
    assert mail["Message-ID"] == f"<{job.payload['idempotency_key']}@firm.cn>"  # a resend has the same ID


def test_every_message_queued_has_its_own_idempotency_key(engine: ProcessEngine, people) -> None:
    engine.notify.configure(smtp_host="127.0.0.1", webhook_url="http://127.0.0.1:9/hook")
    engine.notify.set_email("wang", "wang@firm.cn")
    engine.notify.set_email("du", "du@firm.cn")
    send(engine, ["wang", "du"])
    send(engine, ["wang", "du"])
    keys = [job.payload["idempotency_key"] for job in engine.jobs.jobs(kind="notification")]
    assert len(keys) == 6 and len(set(keys)) == 6  # 2 e-mails and a webhook message, twice


def test_email_refused_once_is_retried_and_then_delivered(engine: ProcessEngine, people, clock: Clock,
                                                          smtp_server: SmtpServer) -> None:
    engine.notify.configure(smtp_host=smtp_server.host, smtp_port=smtp_server.port)
    engine.notify.set_email("du", "du@firm.cn")
    smtp_server.refuse_next(1)
    send(engine, ["du"], channels=("email",))
    report = engine.jobs.tick()
    [job] = engine.jobs.jobs(kind="notification")
    assert report.retrying == [job.id] and smtp_server.messages == []
    assert "451" in job.last_error and job.due_at == clock.now + timedelta(seconds=30)
    clock.advance(seconds=30)
    assert engine.jobs.tick().done == [job.id]
    assert len(smtp_server.messages) == 1


def test_set_email_checks_the_address(engine: ProcessEngine, people) -> None:
    from engine.errors import BadRequest

    with pytest.raises(BadRequest):
        engine.notify.set_email("wang", "not an address")
    with pytest.raises(BadRequest):
        engine.notify.set_email("nobody", "x@y.cn")


# webhook ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["wecom", "dingtalk", "json"])
def test_webhook_posts_the_robot_format(engine: ProcessEngine, people, fmt: str,
                                        webhook_server: WebhookServer) -> None:
    engine.notify.configure(webhook_url=webhook_server.url, webhook_format=fmt, base_url="https://opsflow.firm.cn")
    send(engine, ["wang", "du"], channels=("webhook",))
    assert len(engine.jobs.tick().done) == 1
    [request] = webhook_server.requests
    assert request["headers"]["Content-Type"].startswith("application/json")
    body = request["json"]
    if fmt == "wecom":
        assert body["msgtype"] == "markdown"
        assert body["markdown"]["content"].startswith(f"**{MESSAGE.title}**\n案件：#7")
        assert "[打开 OpsFlow](https://opsflow.firm.cn/tasks/task-1)" in body["markdown"]["content"]
    elif fmt == "dingtalk":
        assert body["msgtype"] == "markdown" and body["markdown"]["title"] == MESSAGE.title
        assert body["markdown"]["text"].startswith(f"### {MESSAGE.title}\n\n案件：#7")
    else:
        assert body["title"] == MESSAGE.title and body["usernames"] == ["du", "wang"]
        assert body["url"] == "https://opsflow.firm.cn/tasks/task-1" and body["instance_id"] == 7
    [job] = engine.jobs.jobs(kind="notification")
    key = job.payload["idempotency_key"]
    assert request["headers"]["Idempotency-Key"] == key
    assert body.get("idempotency_key") == (key if fmt == "json" else None)  # the robots take no extra field


def test_dingtalk_signing(engine: ProcessEngine, webhook_server: WebhookServer) -> None:
    url = dingtalk_signed_url("https://oapi.dingtalk.com/robot/send?access_token=abc", "SEC123", 1700000000000)
    query = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
    expected = base64.b64encode(hmac.new(b"SEC123", b"1700000000000\nSEC123", hashlib.sha256).digest()).decode()
    assert query["timestamp"] == ["1700000000000"] and query["sign"] == [expected]
    assert query["access_token"] == ["abc"]

    engine.notify.configure(webhook_url=webhook_server.url, webhook_format="dingtalk", webhook_secret="SEC123")
    engine.notify.send_webhook(MESSAGE)
    path = webhook_server.requests[0]["path"]
    assert "key=test-key&timestamp=" in path and "&sign=" in path


@pytest.mark.parametrize(("status", "answer", "error"), [
    (500, {}, "HTTP 500"),
    (200, {"errcode": 93000, "errmsg": "invalid webhook url"}, "errcode 93000 invalid webhook url"),
])
def test_webhook_refused_once_is_retried(engine: ProcessEngine, people, clock: Clock, status: int,
                                         answer: dict, error: str, webhook_server: WebhookServer) -> None:
    engine.notify.configure(webhook_url=webhook_server.url, webhook_format="wecom")
    webhook_server.answer_next(status, answer)
    send(engine, ["wang"], channels=("webhook",))
    engine.jobs.tick()
    [job] = engine.jobs.jobs(kind="notification")
    assert job.state == "pending" and error in job.last_error
    clock.advance(seconds=30)
    assert engine.jobs.tick().done == [job.id]
    first, second = webhook_server.requests
    assert first["headers"]["Idempotency-Key"] == second["headers"]["Idempotency-Key"]
    assert first["headers"]["Idempotency-Key"] == job.payload["idempotency_key"]


def test_webhook_bodies_without_a_base_url_carry_no_link() -> None:
    from datetime import UTC, datetime

    body = webhook_body("wecom", MESSAGE, None, [], datetime.now(UTC))
    assert "打开 OpsFlow" not in body["markdown"]["content"]


# failures never block a task ------------------------------------------------------------------------------
def test_a_failing_notification_retries_then_records_its_error_without_blocking_the_task(
        engine: ProcessEngine, people, clock: Clock) -> None:
    """The 0% rule notifies the engineer as the task opens; the mail server is down the whole time."""
    engine.notify.configure(smtp_host="127.0.0.1", smtp_port=free_port(), smtp_timeout=2)  # nothing listens
    engine.notify.set_email("wang", "wang@firm.cn")
    deploy_fixture(engine, "escalation.bpmn")
    case = engine.runtime.start("escalating", people["wang"], {"engineer": "wang", "response_within": "PT4H"})
    engine.jobs.tick()  # the 0% rule: in-app only
    [respond] = engine.runtime.show(case.id).open_tasks
    clock.advance(hours=2)
    engine.jobs.tick()  # the 50% rule: in-app and an e-mail that cannot be delivered
    [mail] = engine.jobs.jobs(kind="notification")
    assert mail.state == "pending" and "ConnectionRefusedError" in mail.last_error

    # The engineer works on regardless: the task completes while the mail job keeps failing.
    engine.tasks.complete(respond.id, people["wang"], {"decision": "approve"})
    assert [t.bpmn_id for t in engine.runtime.show(case.id).open_tasks] == ["report"]
    for _ in range(4):
        clock.now = engine.jobs.jobs(kind="notification")[0].due_at
        engine.jobs.tick()
    [mail] = engine.jobs.jobs(kind="notification")
    assert (mail.state, mail.retries_left) == ("failed", 0)
    [failed] = [e for e in engine.audit.events(case.id) if e.action == "job.failed"]
    assert failed.data["channel"] == "email" and failed.data["attempts"] == 5
    assert engine.notify.unread_count("wang") == 2  # the in-app copies arrived all the same
    assert isinstance(mail, Job)
