"""What callers of the engine (the web UI, the API) read: the models the services hand out, and the few pure
helpers that turn them into pages. Callers import `engine` (ProcessEngine), `engine.errors` and this module,
never the engine's inner modules, so those can move without breaking a caller.
"""

from engine.cases.intake import SEVERITIES, STATUSES
from engine.cases.progress import CaseProgress, case_titles
from engine.cases.regulatory import STATUSES as REPORT_STATUSES
from engine.cases.regulatory import RegulatoryReport
from engine.cases.reports import Dashboard
from engine.config import ROOT
from engine.configuration.browse import XLSX, export_csv, export_json, export_xlsx, item_detail, shown
from engine.configuration.records import SYSTEM_CLASSES
from engine.configuration.templates import STATUSES as TEMPLATE_STATUSES
from engine.definitions.forms import declared_fields, enum_options, read_form, schema_problem
from engine.definitions.repository import DeployedVersion
from engine.people.identity import Actor
from engine.spiff.parsing import Problem, SourceFile
from engine.tasks.service import INBOX_ORDERS, TaskDetail
from engine.tasks.views import TaskView

__all__ = [
    "INBOX_ORDERS",
    "ROOT",
    "SEVERITIES",
    "STATUSES",
    "SYSTEM_CLASSES",
    "TEMPLATE_STATUSES",
    "XLSX",
    "Actor",
    "CaseProgress",
    "Dashboard",
    "DeployedVersion",
    "Problem",
    "REPORT_STATUSES",
    "RegulatoryReport",
    "SourceFile",
    "TaskDetail",
    "TaskView",
    "case_titles",
    "declared_fields",
    "enum_options",
    "export_csv",
    "export_json",
    "export_xlsx",
    "item_detail",
    "read_form",
    "schema_problem",
    "shown",
]
