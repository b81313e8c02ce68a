"""Property-based API check (schemathesis): no generated request, valid or not, gets a 5xx."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

OPERATIONS = [
    ("GET", "/health"),
    ("POST", "/score"),
    ("POST", "/predict_masked"),
    ("POST", "/rerank"),
    ("POST", "/chat"),
    ("POST", "/feedback"),
    ("DELETE", "/feedback/user/{user_id}"),
    ("POST", "/admin/reload"),
]


@pytest.fixture(scope="module")
def schema(live_server):
    import schemathesis

    return schemathesis.openapi.from_url(live_server.url + "/openapi.json")


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_no_server_errors(schema, live_server, method, path):
    from schemathesis import GenerationMode

    op = schema[path][method]
    examples = 12 if path in ("/chat", "/rerank") else 25

    # an operation without body or path parameters has no invalid input to generate
    has_input = path not in ("/health", "/admin/reload")
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if has_input else (GenerationMode.POSITIVE,):

        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=op.as_strategy(generation_mode=mode))
        def run(case):
            case.call_and_validate(base_url=live_server.url, checks=[not_a_server_error], timeout=60)

        run()
