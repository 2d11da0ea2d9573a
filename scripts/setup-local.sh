#!/usr/bin/env bash
# Sets up this checkout on a fresh Debian/Ubuntu machine for the built-in `local` site:
# container tools (podman, runc, debootstrap, ssh) where missing, a virtual environment
# in .venv with the orchestrator and Ansible (pinned by constraints/project.txt), and the
# node base image (built once from debootstrap when no registry answers; one to two
# minutes). Idempotent.
#
# Run it as root: the local site's containers run under root's podman and debootstrap
# needs root. As another user it installs packages through sudo, then stops with a hint.
set -euo pipefail
cd "$(dirname "$0")/.."
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
bash .ci/containers.sh
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    $sudo apt-get update -qq && $sudo apt-get install -y -qq python3-venv
fi
[ -d .venv ] || python3 -m venv .venv
echo "installing the orchestrator and Ansible into .venv..."
.venv/bin/pip install -q --disable-pip-version-check -c constraints/project.txt -e '.[ansible]'
if [ "$(id -u)" -ne 0 ]; then
    echo "setup-local.sh: the node image is built with debootstrap, which needs root;" \
         "run this script again as root (sudo bash scripts/setup-local.sh)" >&2
    exit 1
fi
.venv/bin/python -m orchestrator.providers.local
