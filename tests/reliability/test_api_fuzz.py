"""Property-based fuzzing of the whole JSON API from its own OpenAPI document (schemathesis).

For each role (member, broker, commissioner, admin) and each documented operation, schemathesis
generates valid (positive) and invalid (negative) requests. Every answer must:
- never be a 5xx;
- use a documented status code and content type, and match the documented schema;
- be application/problem+json with a string `code` whenever it is an error.

The operations come from /api/v1/openapi.json, so every capability's blueprint that is
registered is fuzzed without changing this file. The number of examples per operation is
derived from a total request budget (FUZZ_BUDGET, default 1000 requests) so the file stays
well under a minute as the API grows.
"""
from __future__ import annotations

import os
import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_headers_conformance,
                                 response_schema_conformance, status_code_conformance)

ROLES = ("member", "broker", "commissioner", "admin")
PASSWORD = "pw-fuzz-123456789"
BUDGET = int(os.environ.get("FUZZ_BUDGET", "1000"))
# Password checks (argon2) cost ~0.1 s each by design; a few examples of HTTP Basic operations suffice.
BASIC_AUTH_EXAMPLES = 4
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def load_schema(app):
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


def operations(schema):
    ops = []
    for result in schema.get_all_operations():
        ops.append(result.ok())  # an operation the loader cannot read is a broken spec: fail loudly
    return ops


def examples_per_operation(n_operations: int) -> int:
    per = BUDGET // max(1, n_operations * len(ROLES) * 2)
    return max(3, min(15, per))


def uses_basic_auth(operation) -> bool:
    return any("basicAuth" in requirement for requirement in operation.definition.raw.get("security", []))


def documents_header(operation, name: str) -> bool:
    return any(p.get("in") == "header" and p.get("name") == name
               for p in operation.definition.raw.get("parameters", []))


def assert_problem_json(case, response):
    if response.status_code >= 400:
        assert response.headers.get("content-type", [""])[0].startswith("application/problem+json"), \
            f"{case.method} {case.formatted_path} -> {response.status_code} is not problem+json"
        body = response.json()
        assert isinstance(body.get("code"), str) and body.get("status") == response.status_code, body


@pytest.fixture
def community(session, timebank, make_person):
    """One person per role plus a few neighbours and an organisation, so ids in paths sometimes exist."""
    from timebank.community.service import create_organisation

    people = {role: make_person(role, password=PASSWORD)[0] for role in ROLES}
    for _ in range(3):
        make_person("member", password=PASSWORD)
    create_organisation(session, timebank=timebank, name="Fuzz Community Centre", kind="community_group")
    session.flush()
    return people


def test_spec_documents_problem_json_errors_and_idempotency_keys(app):
    """The spec promises what the API does: problem+json errors, and writes that need a key."""
    schema = load_schema(app)
    raw = schema.raw_schema
    assert "application/problem+json" in raw["components"]["responses"]["DEFAULT_ERROR"]["content"]
    for path, item in raw["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            assert "default" in operation["responses"], f"{method} {path} documents no error response"
    assert len(operations(schema)) >= 3


@pytest.mark.parametrize("role", ROLES)
def test_api_fuzz_as_role(app, community, api_headers, role):
    schema = load_schema(app)
    ops = operations(schema)
    user = community[role]
    n = examples_per_operation(len(ops))
    seen_statuses: dict[str, set[int]] = {}

    for operation in ops:
        basic = uses_basic_auth(operation)
        needs_key = documents_header(operation, "Idempotency-Key")
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(max_examples=BASIC_AUTH_EXAMPLES if basic else n, deadline=None, database=None, derandomize=IN_CI,
                      phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def fuzz(case):
                headers = dict(case.headers or {})
                if basic:
                    import base64

                    credentials = base64.b64encode(f"{user.email}:{PASSWORD}".encode()).decode()
                    headers["Authorization"] = f"Basic {credentials}"
                else:
                    # A fresh token per request: an earlier example may have revoked the last one.
                    headers.update(api_headers(user))
                if needs_key and mode is GenerationMode.POSITIVE:
                    headers["Idempotency-Key"] = uuid.uuid4().hex
                case.headers = headers
                response = case.call()
                seen_statuses.setdefault(operation.label, set()).add(response.status_code)
                case.validate_response(response, checks=CHECKS)
                assert_problem_json(case, response)

            fuzz()

    # Every operation was really exercised and at least one answered with success for this role.
    assert set(seen_statuses) == {op.label for op in ops}
    assert any(any(s < 400 for s in statuses) for statuses in seen_statuses.values()), seen_statuses
