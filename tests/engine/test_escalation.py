"""Escalation per user task (the `escalation` property), due times in working days, priority from data."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from engine import ProcessEngine
from engine.definitions.deadlines import parse_escalation
from engine.errors import Forbidden, LintFailed
from engine.spiff.parsing import SourceFile
from tests.conftest import FIXTURES, Clock, deploy_fixture
from tests.engine.local_servers import SmtpServer, WebhookServer, smtp_server, webhook_server

__all__ = ["smtp_server", "webhook_server"]  # pytest fixtures, used by name

SHANGHAI = ZoneInfo("Asia/Shanghai")
RESPOND_RULES = ("0%: notify assignee via inapp; 50%: notify assignee; 75%: notify manager; "
                 "95%: notify supervisor via inapp, email, webhook; 100%: reassign ops_manager")


def escalations(engine: ProcessEngine, case_id: int) -> list[dict]:
    return [e.data for e in engine.audit.events(case_id) if e.action == "task.escalated"]


def the_task(engine: ProcessEngine, case_id: int, bpmn_id: str):
    return next(t for t in engine.runtime.show(case_id).open_tasks if t.bpmn_id == bpmn_id)


@pytest.fixture
def wired(engine: ProcessEngine, people, smtp_server: SmtpServer, webhook_server: WebhookServer) -> ProcessEngine:
    engine.seed_demo_register()
    engine.notify.configure(smtp_host=smtp_server.host, smtp_port=smtp_server.port, webhook_url=webhook_server.url,
                            webhook_format="wecom", base_url="https://opsflow.firm.cn")
    for name in ("wang", "li", "zhou", "du"):
        engine.notify.set_email(name, f"{name}@firm.cn")
    deploy_fixture(engine, "escalation.bpmn")
    return engine


def test_escalation_at_0_50_75_95_and_100_percent_of_the_due_time(
        wired: ProcessEngine, people, clock: Clock, smtp_server: SmtpServer, webhook_server: WebhookServer) -> None:
    engine = wired
    case = engine.runtime.start("escalating", people["wang"],
                                {"engineer": "wang", "priority": "P2", "response_within": "PT2H"})
    respond = the_task(engine, case.id, "respond")
    assert (respond.assignee, respond.priority, respond.due_at) == ("wang", 2, clock.now + timedelta(hours=2))
    started = clock.now
    jobs = engine.jobs.jobs(kind="escalation")
    assert [j.due_at - started for j in jobs] == [timedelta(minutes=m) for m in (0, 60, 90, 114, 120)]

    engine.jobs.tick()  # 0%: the engineer hears of the new task in the app only
    assert engine.notify.unread_count("wang") == 1 and smtp_server.messages == []

    clock.now = started + timedelta(minutes=59)
    assert engine.jobs.tick().idle
    clock.now = started + timedelta(minutes=60)  # 50%: the assignee, in the app and by e-mail
    engine.jobs.tick()
    assert [m["To"] for m in smtp_server.messages] == ["wang@firm.cn"]
    assert smtp_server.messages[0]["Subject"] == "【督办】响应事件：距截止还有 1小时"

    clock.now = started + timedelta(minutes=90)  # 75%: the engineers' manager (both ops managers)
    engine.jobs.tick()
    assert sorted(m["To"] for m in smtp_server.messages[1:]) == ["li@firm.cn", "zhou@firm.cn"]
    assert engine.notify.unread_count("li") == 1

    clock.now = started + timedelta(minutes=114)  # 95%: the supervisor, the group robot too
    engine.jobs.tick()
    assert smtp_server.messages[-1]["To"] == "du@firm.cn"
    [robot] = webhook_server.requests
    assert robot["json"]["msgtype"] == "markdown" and "响应事件" in robot["json"]["markdown"]["content"]

    clock.now = started + timedelta(minutes=120)  # 100%: the task goes to the ops managers' queue
    engine.jobs.tick()
    respond = the_task(engine, case.id, "respond")
    assert (respond.role, respond.assignee) == ("ops_manager", None)
    assert respond.id in {t.id for t in engine.tasks.inbox(people["li"])}
    assert respond.id not in {t.id for t in engine.tasks.inbox(people["wang"])}
    assert [m["Subject"] for m in smtp_server.messages[-2:]] == ["【任务转派】响应事件：已超期 0分钟"] * 2

    history = escalations(engine, case.id)
    assert [(h["rule"].split(":")[0], h["action"], h["recipients"]) for h in history] == [
        ("0%", "notify", ["wang"]), ("50%", "notify", ["wang"]), ("75%", "notify", ["li", "zhou"]),
        ("95%", "notify", ["du"]), ("100%", "reassign", ["li", "zhou"])]
    assert history[3]["channels"] == ["inapp", "email", "webhook"] and history[3]["webhook"] is True
    assert (history[4]["from_role"], history[4]["from_assignee"], history[4]["to_role"]) == (
        "ops_engineer", "wang", "ops_manager")
    assert engine.audit.verify().ok

    engine.tasks.claim(respond.id, people["li"])  # the manager takes it over and finishes it
    engine.tasks.complete(respond.id, people["li"], {"decision": "approve"})
    assert the_task(engine, case.id, "report").role == "ops_engineer"


def test_no_escalation_once_the_task_is_done(wired: ProcessEngine, people, clock: Clock) -> None:
    engine = wired
    case = engine.runtime.start("escalating", people["wang"], {"engineer": "wang", "response_within": "PT2H"})
    engine.jobs.tick()
    clock.advance(minutes=30)
    engine.tasks.complete(the_task(engine, case.id, "respond").id, people["wang"], {"decision": "approve"})
    clock.advance(hours=3)
    engine.jobs.tick()
    assert [h["rule"].split(":")[0] for h in escalations(engine, case.id)] == ["0%"]
    outcomes = sorted(j.payload["outcome"] for j in engine.jobs.jobs(kind="escalation", state="done"))
    assert outcomes == ["notify"] + ["task completed"] * 4


def test_due_in_working_days_skips_weekends_and_holidays_and_due_rules_follow_it(
        wired: ProcessEngine, people, clock: Clock) -> None:
    engine = wired
    clock.now = datetime(2026, 9, 30, 10, 0, tzinfo=SHANGHAI)  # the Wednesday before National Day
    case = engine.runtime.start("escalating", people["wang"], {"engineer": "wang"})
    engine.tasks.complete(the_task(engine, case.id, "respond").id, people["wang"], {"decision": "approve"})
    report = the_task(engine, case.id, "report")
    # Oct 1-7 closed (holidays and a weekend): the 5th trading day is Wednesday Oct 14.
    assert report.due_at == datetime(2026, 10, 14, 10, 0, tzinfo=SHANGHAI)
    assert (report.assignee, report.priority) == (None, 3)

    clock.now = report.due_at  # due: the queue (the engineers) and their manager
    engine.jobs.tick()
    clock.now = report.due_at + timedelta(days=1)  # due+P1D: the supervisor, named
    engine.jobs.tick()
    rules = [(h["rule"], h["recipients"]) for h in escalations(engine, case.id) if "due" in h["rule"]]
    assert rules == [("due: notify assignee, manager", ["chen", "li", "wang", "zhou"]),
                     ("due+P1D：notify @du via inapp", ["du"])]


def test_working_days_from_a_friday_evening(wired: ProcessEngine, people, clock: Clock) -> None:
    engine = wired
    clock.now = datetime(2026, 11, 20, 18, 0, tzinfo=SHANGHAI)
    case = engine.runtime.start("escalating", people["wang"], {"engineer": "wang"})
    engine.tasks.complete(the_task(engine, case.id, "respond").id, people["wang"], {"decision": "approve"})
    assert the_task(engine, case.id, "report").due_at == datetime(2026, 11, 27, 18, 0, tzinfo=SHANGHAI)


@pytest.mark.parametrize(("data", "priority", "due_in"), [
    ({"priority": "P1", "response_within": "PT30M"}, 1, timedelta(minutes=30)),
    ({"priority": 2}, 2, timedelta(hours=4)),  # no duration in the data: the task's own dueIn
    ({"priority": "urgent", "response_within": "soon"}, 3, timedelta(hours=4)),  # unusable data: the defaults
    ({}, 3, timedelta(hours=4)),
])
def test_priority_and_due_time_from_case_data(engine: ProcessEngine, people, clock: Clock, data: dict,
                                              priority: int, due_in: timedelta) -> None:
    deploy_fixture(engine, "escalation.bpmn")
    case = engine.runtime.start("escalating", people["wang"], {"engineer": "wang", **data})
    respond = the_task(engine, case.id, "respond")
    assert (respond.priority, respond.due_at - clock.now) == (priority, due_in)


# the syntax and the lint ---------------------------------------------------------------------------------
def deploy_with(engine: ProcessEngine, old: str, new: str) -> None:
    xml = (FIXTURES / "escalation.bpmn").read_text(encoding="utf-8")
    assert old in xml
    engine.repository.deploy([SourceFile("escalation.bpmn", xml.replace(old, new).encode())], "owner")


@pytest.mark.parametrize(("old", "new", "message"), [
    (RESPOND_RULES, "50% notify manager", "write WHEN: ACTION"),
    (RESPOND_RULES, "75%: shout manager", "the action is 'notify ...' or 'reassign ...'"),
    (RESPOND_RULES, "75%: notify nobody_role", "'nobody_role' is no role"),
    (RESPOND_RULES, "soon: notify manager", "WHEN is N%, due, due+PT1H or a duration"),
    (RESPOND_RULES, "75%: notify manager via sms", "unknown channel 'sms'"),
    (RESPOND_RULES, "100%: reassign assignee", "reassign to a role, manager, supervisor or @user"),
    ('name="dueCalendar" value="working"', 'name="dueCalendar" value="lunar"', "dueCalendar 'lunar'"),
    ('name="dueIn" value="P5D"', 'name="dueIn" value="P1M"', "counts whole days or weeks"),
    ('name="priorityFrom" value="priority"', 'name="priorityFrom" value="priority-level"', "not a data field"),
])
def test_deploy_lints_the_deadline_properties(engine: ProcessEngine, old: str, new: str, message: str) -> None:
    with pytest.raises(LintFailed) as refused:
        deploy_with(engine, old, new)
    problems = [str(p) for p in refused.value.problems]
    assert any(message in p and "user task" in p for p in problems), problems


def test_an_approval_is_never_reassigned_to_a_role_that_may_not_approve_it(engine: ProcessEngine) -> None:
    """The engineer's decision may go to the ops manager (access.json approves_for), not to the supervisor."""
    with pytest.raises(LintFailed) as refused:
        deploy_with(engine, RESPOND_RULES, "100%: reassign supervisor")
    assert any("reassigns this approval to 'supervisor'" in str(p) for p in refused.value.problems)
    with pytest.raises(LintFailed):
        deploy_with(engine, RESPOND_RULES, "100%: reassign compliance")
    deploy_with(engine, RESPOND_RULES, "100%: reassign manager")  # ops_engineer's manager: ops_manager


def test_an_approval_escalated_to_a_named_user_who_may_not_approve_stays_and_they_are_told(
        engine: ProcessEngine, people, clock: Clock) -> None:
    deploy_with(engine, RESPOND_RULES, "100%: reassign @du")  # du is a supervisor: known only at run time
    case = engine.runtime.start("escalating", people["wang"],
                                {"engineer": "wang", "priority": "P2", "response_within": "PT2H"})
    clock.advance(hours=2)
    engine.jobs.tick()
    respond = the_task(engine, case.id, "respond")
    assert (respond.role, respond.assignee) == ("ops_engineer", "wang")  # not handed to the supervisor
    [escalated] = escalations(engine, case.id)
    assert escalated["outcome"] == "du may not approve a task of ops_engineer: notified, not reassigned"
    assert escalated["recipients"] == ["du", "wang"] and engine.notify.unread_count("du") == 1
    with pytest.raises(Forbidden):
        engine.tasks.complete(respond.id, people["du"], {"decision": "approve"})


def test_a_rule_relative_to_the_due_time_needs_one(engine: ProcessEngine) -> None:
    xml = (FIXTURES / "escalation.bpmn").read_text(encoding="utf-8")
    for prop in ('<spiffworkflow:property name="dueInFrom" value="response_within" />',
                 '<spiffworkflow:property name="dueIn" value="PT4H" />'):
        xml = xml.replace(prop, "")
    with pytest.raises(LintFailed) as refused:
        engine.repository.deploy([SourceFile("escalation.bpmn", xml.encode())], "owner")
    assert any("relative to the due time" in str(p) for p in refused.value.problems)


def test_the_syntax_reads_chinese_punctuation_durations_and_named_users() -> None:
    rules = parse_escalation("PT30M：notify @du，starter via webhook；due+PT1H: reassign manager")
    assert [(r.percent, r.offset, r.action, r.targets, r.channels) for r in rules] == [
        (None, "PT30M", "notify", ("@du", "starter"), ("webhook",)),
        (100.0, "PT1H", "reassign", ("manager",), ()),
    ]
    created, due = datetime(2026, 1, 5, 9, 0, tzinfo=SHANGHAI), datetime(2026, 1, 5, 13, 0, tzinfo=SHANGHAI)
    assert rules[0].fires_at(created, None) == created + timedelta(minutes=30)
    assert rules[1].fires_at(created, due) == due + timedelta(hours=1)
    assert parse_escalation("50%: notify manager")[0].fires_at(created, None) is None


# done when: an incident whose response deadline passes escalates by itself ---------------------------------
RESPOND_PROPS = '<spiffworkflow:property name="formJsonSchemaFilename" value="incident_respond.json" />'
ESCALATE_PROPS = '<spiffworkflow:property name="formJsonSchemaFilename" value="escalation.json" />'


@pytest.fixture
def library(database_url, tmp_path, smtp_server: SmtpServer, webhook_server: WebhookServer):
    """The process library, its incident process given deadlines and escalation rules as an owner would."""
    import json

    from tests.conftest import ROOT, make_settings
    from tests.processes.conftest import START

    clock = Clock(START)
    engine = ProcessEngine(make_settings(database_url, tmp_path, forms_dir=ROOT / "forms"), clock=clock)
    engine.migrate()
    engine.identity.seed_roles(ROOT / "processes" / "roles.json")
    sources = []
    for path in sorted((ROOT / "processes").iterdir()):
        if path.suffix not in (".bpmn", ".dmn"):
            continue
        text = path.read_text(encoding="utf-8")
        if path.name == "incident.bpmn":
            assert text.count(RESPOND_PROPS) == 1 and text.count(ESCALATE_PROPS) >= 1
            text = text.replace(RESPOND_PROPS, RESPOND_PROPS + (
                '<spiffworkflow:property name="dueInFrom" value="response_within" />'
                '<spiffworkflow:property name="escalation" value="50%: notify assignee; '
                '100%: notify supervisor via inapp, email, webhook" />'))
            start = text.index('<bpmn:userTask id="escalate_response"')
            text = text[:start] + text[start:].replace(ESCALATE_PROPS, ESCALATE_PROPS + (
                '<spiffworkflow:property name="escalation" value="0%: notify assignee via inapp, email; '
                'due: notify manager, supervisor via inapp, email, webhook" />'), 1)
        sources.append(SourceFile(path.name, text.encode()))
    engine.repository.deploy(sources, "maqing")
    for u in json.loads((ROOT / "processes" / "demo_users.json").read_text(encoding="utf-8")):
        engine.identity.add_user(u["username"], u["roles"], u["display_name"])
        engine.notify.set_email(u["username"], f"{u['username']}@firm.cn")
    engine.seed_demo_register()
    engine.notify.configure(smtp_host=smtp_server.host, smtp_port=smtp_server.port, webhook_url=webhook_server.url,
                            webhook_format="dingtalk")
    yield engine, clock
    engine.close()


def test_a_late_incident_response_escalates_by_itself_by_email_webhook_and_audit(
        library, smtp_server: SmtpServer, webhook_server: WebhookServer) -> None:
    from tests.processes.conftest import Flow
    from tests.processes.test_incident import incident_report

    engine, clock = library
    flow = Flow(engine)
    case = flow.start("incident", "zhangwei", {"title": "事件"})
    # P2: respond in 30 min
    flow.do(case, "report", "zhangwei", incident_report(flow.engine, impact="high", urgency="medium"))
    respond = flow.task(case, "respond")
    assert respond.due_at == clock.now + timedelta(minutes=30)

    clock.advance(minutes=15)
    engine.jobs.tick()  # 50%: the engineers on duty (the queue) are reminded
    assert {m["To"] for m in smtp_server.messages} == {"lina@firm.cn", "wangqiang@firm.cn"}

    clock.advance(minutes=15, seconds=1)  # the deadline passes: nobody has responded
    report = engine.jobs.tick()
    assert report.timers == [case]  # the BPMN boundary timer opened the manager's 督办 task
    assert flow.open_names(case) == ["escalate_response", "respond"]
    to = sorted(m["To"] for m in smtp_server.messages[2:])
    assert to == ["liuyang@firm.cn", "zhuhong@firm.cn"]  # the manager's new task; the supervisor, late
    assert [r["json"]["msgtype"] for r in webhook_server.requests] == ["markdown"]
    assert "响应事件" in webhook_server.requests[0]["json"]["markdown"]["title"]
    assert engine.notify.unread_count("zhuhong") == 1

    clock.advance(minutes=30)  # the manager's 督办 task is itself due: manager and supervisor again
    engine.jobs.tick()
    assert len(webhook_server.requests) == 2
    history = [(e.action, e.data.get("rule", "")) for e in engine.audit.events(case)
               if e.action in ("timer.fired", "task.escalated")]
    assert history == [
        ("task.escalated", "50%: notify assignee"),
        ("timer.fired", ""),
        ("task.escalated", "100%: notify supervisor via inapp, email, webhook"),
        ("task.escalated", "0%: notify assignee via inapp, email"),
        ("task.escalated", "due: notify manager, supervisor via inapp, email, webhook"),
    ]
    assert engine.audit.verify().ok
