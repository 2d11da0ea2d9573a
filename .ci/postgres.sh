#!/usr/bin/env bash
# Installs PostgreSQL's server programs (initdb, pg_ctl) when they are missing, for the tests
# in tests/integration/test_state_postgres.py: their fixture (tests/pg.py) starts a
# throwaway cluster of its own, so no service is started here. Idempotent.
set -euo pipefail

have_server() {
    command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 && return 0
    compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null
}

if have_server; then
    exit 0
fi
if [ -n "${ORCHESTRATOR_TEST_PG_URL:-}" ]; then
    exit 0  # the tests use that server instead
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null
have_server || { echo ".ci/postgres.sh: postgresql installed but initdb/pg_ctl not found" >&2; exit 1; }
