"""schemathesis against the served OpenAPI document: generated requests (valid and not)
to every operation, with a valid token, never get a 5xx answer."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.fakes.oidc_issuer import OIDCIssuer
from tests.integration import api_server as support

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def issuer():
    with OIDCIssuer() as running:
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory, issuer):
    yield from support.simulated_server(tmp_path_factory.mktemp("schema"), issuer.url, workers=1)


@pytest.fixture(scope="module")
def token(issuer):
    return issuer.token("fuzzer", groups=["fuzz"])


def test_no_server_errors(server, token):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20
    failures = []
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def call(case):
            response = case.call(headers={"Authorization": f"Bearer {token}"}, timeout=30)
            if response.status_code >= 500:
                failures.append((case.method, case.formatted_path, response.status_code,
                                 response.text[:300]))
            elif response.status_code >= 400:
                assert "application/problem+json" in str(response.headers["content-type"]), \
                    (case.method, case.formatted_path, response.status_code)

        call()
    assert failures == []
