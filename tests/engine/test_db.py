"""Hot-path statements (engine/storage/db.py `Sql`) fail the way every other statement does."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from engine import ProcessEngine
from engine.storage.db import Sql
from tests.engine.test_audit import _walk

_COPY_EVENT = Sql("INSERT INTO audit_event (id, at, actor, action, data, prev_hash, hash) "
                  "SELECT id, at, actor, action, data, prev_hash, hash FROM audit_event WHERE id = :id")


def test_a_refused_statement_is_sqlalchemys_error_and_rolls_the_action_back(engine: ProcessEngine, people) -> None:
    _walk(engine, people)
    before = len(engine.audit.events())
    with pytest.raises(IntegrityError), engine.ctx.db.transaction() as s:
        engine.audit.record(s, "zhang", "test.half_done")
        engine.ctx.db.run(s, _COPY_EVENT, {"id": 1})  # the same id again: the primary key refuses it
    assert len(engine.audit.events()) == before  # the append before it is gone too
    assert engine.audit.verify().ok
