#!/usr/bin/env bash
# moto's EC2 API emulator (server mode) in a virtual environment of its own, for the
# `cloud` provider's tests (tests/integration/test_cloud_provider.py). It cannot share the
# project's venv: botocore wants python-dateutil < 3, kubernetes wants >= 3.
# Location: $ORCHESTRATOR_MOTO_VENV, default ~/.cache/orchestrator/moto-venv (the tests
# look in the same place). Idempotent: quick when moto is already installed.
set -euo pipefail
MOTO_VERSION="${MOTO_VERSION:-5.2.5}"
VENV="${ORCHESTRATOR_MOTO_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/orchestrator/moto-venv}"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "$MOTO_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
import flask, moto.server  # noqa: F401  (server mode needs flask)
sys.exit(0 if version("moto") == sys.argv[1] else 1)
PY
then
    exit 0
fi
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq python3-venv
fi
mkdir -p "$(dirname "$VENV")"
python3 -m venv "$VENV"
# its dependencies come pinned from constraints/moto.txt (scripts/refresh-constraints.sh)
"$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    -c "$(dirname "$0")/../../constraints/moto.txt" "moto[server]==$MOTO_VERSION"
echo "moto $MOTO_VERSION installed in $VENV"
