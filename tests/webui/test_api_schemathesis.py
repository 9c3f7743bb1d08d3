"""Schemathesis over /api/v1/openapi.json: generated requests for every operation, bounded to a few
examples each; no response is a 5xx and every response matches the document (status, content type,
schema)."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from tests.webui.test_api_support import Api, api, api_clock, api_engine, app  # noqa: F401

FUZZER = "fuzzer"
# What the document promises. Not positive_data_acceptance: a schema-valid body may still fail lint,
# a form, or an engine rule (422/400 by design: the JSON Schema cannot say what BPMN lint checks).
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance, checks.response_headers_conformance, checks.ignored_auth]
EXAMPLES = 10  # per operation


def test_api_matches_its_openapi_document(app, api: Api) -> None:
    # One caller holding every role, so generated requests get past the role checks and reach the engine.
    api.engine.identity.add_user(FUZZER, [r.key for r in api.engine.identity.roles()], "Fuzzer")
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 24  # all but GET /openapi.json, which schemathesis leaves out
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def conforms(case) -> None:
            token = api.engine.identity.create_token(FUZZER)  # fresh: DELETE /auth/token revokes it
            case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)

        conforms()
