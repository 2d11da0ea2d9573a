#!/usr/bin/env bash
# Installs what the local provider's tests need, when missing: podman, runc (crun fails
# on hosts with hybrid cgroups), debootstrap (builds the base image when no registry can
# be reached), the ssh client and the docker command line (the docker engine path is
# tested against podman's Docker-compatible API; no docker daemon is ever started).
# Idempotent and quiet; writes nothing else. Uses sudo when not run as root.
set -euo pipefail
missing=()
for pair in podman:podman runc:runc debootstrap:debootstrap ssh:openssh-client \
            ssh-keygen:openssh-client docker:docker.io; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
    echo ".ci/containers.sh: installing $packages"
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $packages >/dev/null
fi
