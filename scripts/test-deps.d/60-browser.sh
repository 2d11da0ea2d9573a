#!/usr/bin/env bash
# Chromium from Debian for the dashboard's browser test (tests/integration/test_dashboard.py):
# Playwright (in the project's venv) drives /usr/bin/chromium; it never downloads a browser
# of its own. Idempotent: does nothing when both packages are installed.
set -euo pipefail
packages="chromium chromium-driver"
missing=()
for p in $packages; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "scripts/test-deps.d/60-browser.sh: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
