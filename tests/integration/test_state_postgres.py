"""The state store's behaviour (tests/unit/test_state.py's TestStore) against PostgreSQL.

The server comes from tests/pg.py: ``$ORCHESTRATOR_TEST_PG_URL``, else a throwaway cluster
(``.ci/postgres.sh`` installs PostgreSQL); without either these tests skip locally and fail
in CI. Each test works in a fresh schema of its own."""
from __future__ import annotations

import pytest

from tests.pg import postgres_server  # noqa: F401 - the session fixture
from tests.unit.test_state import TestStore as TestStorePostgres  # noqa: F401 - collected here


@pytest.fixture
def store_url(postgres_server):  # noqa: F811
    url = postgres_server.new_schema_url()
    yield url
    postgres_server.drop_schemas()
