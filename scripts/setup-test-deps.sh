#!/usr/bin/env bash
# System packages the test suite needs, installed where missing (Debian/Ubuntu, as root or
# with sudo): Python's venv support, PostgreSQL's server programs (the state-store tests
# start a throwaway cluster of their own on 127.0.0.1) and the container tools of the
# local provider (podman, runc, debootstrap, ssh). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq python3-venv
fi
bash .ci/postgres.sh
bash .ci/containers.sh
# further components some test groups need (an OpenStack, an EC2 emulator, a browser...)
for part in scripts/test-deps.d/*.sh; do
    [ -e "$part" ] && bash "$part"
done
