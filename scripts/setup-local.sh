#!/usr/bin/env bash
# Sets up this checkout on a fresh Debian/Ubuntu machine for the built-in `local` site:
# container tools (podman, runc, debootstrap, ssh) where missing, a virtual environment
# in .venv with the orchestrator and Ansible, and the node base image (built once from
# debootstrap when no registry answers; about a minute). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/containers.sh
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv
fi
[ -d .venv ] || python3 -m venv .venv
.venv/bin/pip install -q -e '.[ansible]'
.venv/bin/python -m orchestrator.providers.local.image
