"""The audit trail: one signed, append-only event per action (who, what, from where), a signed head,
checkpoints to keep outside, and archives for events past their retention.

    engine.audit.record(session, actor, action, ...)   # in the caller's transaction
    engine.audit.verify(checkpoint=None)               # names the first bad event or the missing range
"""

from engine.storage.audit.archive import Archived, Retention, read_archive
from engine.storage.audit.chain import GENESIS, AuditKeyError, AuditUnavailable, load_key
from engine.storage.audit.service import AuditService, ChainReport

__all__ = ["GENESIS", "Archived", "AuditKeyError", "AuditService", "AuditUnavailable", "ChainReport", "Retention",
           "load_key", "read_archive"]
