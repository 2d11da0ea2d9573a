#!/usr/bin/env bash
# Debian's OpenStack (Zed) packages for the local cloud the OpenStack provider's tests and
# benchmark start (tests/e2e/openstack/cloud-up.sh): Keystone, Glance, Placement, Nova,
# Neutron, Cinder, RabbitMQ, uwsgi, the openstack client and sqlite3. No service is started
# by the installation (a policy-rc.d that refuses is put in place first when there is none).
# Idempotent: does nothing when every package is installed.
set -euo pipefail
packages="rabbitmq-server python3-keystone python3-nova python3-glance python3-placement
python3-neutron python3-cinder python3-openstackclient uwsgi-core uwsgi-plugin-python3 sqlite3
curl"
missing=()
for p in $packages; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
fi
echo "scripts/test-deps.d/30-openstack.sh: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
