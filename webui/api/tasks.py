"""The inbox and the work on a task: list, read, claim, unclaim, assign, complete."""

from __future__ import annotations

from typing import Any

from webui.api.access import actor, endpoint, engine
from webui.api.schemas import (
    AssignRequest,
    CompletedSchema,
    CompleteRequest,
    TaskDetailSchema,
    TaskPage,
    TaskQuery,
    TaskSchema,
)


@endpoint("GET", "/tasks", rule="any user sees their own inbox; scope=everyone needs tasks.read_all "
          "(engine: tasks.inbox)", summary="Open tasks: scope mine|group|all (default), overdue=true",
          tag="tasks", query=TaskQuery, response=TaskPage, errors=(403,))
def list_tasks(query: dict[str, Any]) -> dict[str, Any]:
    tasks, who = engine().tasks, actor()
    args = (who, query["scope"], query["overdue"], query.get("process_id"))
    return {"items": tasks.inbox(*args, limit=query["limit"], offset=query["offset"]),
            "total": tasks.count(*args), "limit": query["limit"], "offset": query["offset"]}


@endpoint("GET", "/tasks/{task_id}", rule="whoever may read its case: the starter, whoever has or had a task in it, "
          "the queue of an open unassigned task, an active substitute, case.read_all (engine: tasks.get)",
          summary="A task with its JSON Schema form, what the form opens with, the case's facts and "
          "the approval record", tag="tasks",
          response=TaskDetailSchema, errors=(403, 404))
def get_task(task_id: str) -> dict[str, Any]:
    detail = engine().tasks.get(task_id, actor())
    return {**detail.task.as_dict(), "case_title": detail.case_title, "form_schema": detail.form, "data": detail.data,
            "case_data": detail.case_data, "record": detail.record,
            "documentation": detail.documentation, "instructions": detail.instructions}


@endpoint("POST", "/tasks/{task_id}/claim", rule="a holder of the task's role not barred by separation of "
          "duties (engine: tasks.claim)", summary="Claim a task from the role's queue", tag="tasks",
          response=TaskSchema, errors=(403, 404, 409))
def claim_task(task_id: str) -> Any:
    return engine().tasks.claim(task_id, actor())


@endpoint("POST", "/tasks/{task_id}/unclaim", rule="the assignee, or tasks.assign (engine: tasks.unclaim)",
          summary="Put a claimed task back in its role's queue", tag="tasks", response=TaskSchema,
          errors=(403, 404, 409))
def unclaim_task(task_id: str) -> Any:
    return engine().tasks.unclaim(task_id, actor())


@endpoint("POST", "/tasks/{task_id}/assign", rule="tasks.assign, to a holder of the role "
          "not barred by separation of duties (engine: tasks.assign)", summary="Assign a task to a user",
          tag="tasks", body=AssignRequest, response=TaskSchema, errors=(403, 404, 409))
def assign_task(task_id: str, body: dict[str, Any]) -> Any:
    return engine().tasks.assign(task_id, actor(), body["user"])


@endpoint("POST", "/tasks/{task_id}/complete", rule="the assignee (or, unclaimed, a holder of the role) not "
          "barred by separation of duties (engine: tasks.complete)",
          summary="Validate the data against the form and complete the task; a key the form does not "
          "declare is refused (422, naming it)", tag="tasks",
          body=CompleteRequest, response=CompletedSchema, errors=(403, 404, 409, 422))
def complete_task(task_id: str, body: dict[str, Any]) -> dict[str, Any]:
    created = engine().tasks.complete(task_id, actor(), body["data"])
    return {"id": task_id, "state": "completed", "next_tasks": created}
