#!/usr/bin/env bash
# Rewrites the pins in constraints/ from the newest releases on PyPI that satisfy the
# package's own ranges (setup.cfg), the way a user's fresh `pip install` would resolve
# them today:
#   constraints/project.txt  the project's venv: pip install -e '.[test]' (a superset of
#                            every other extra)
#   constraints/moto.txt     the EC2 emulator's own venv (scripts/test-deps.d/40-moto.sh)
# Each is resolved in a throwaway venv and written with `pip freeze`. Review the diff and
# run the suite on the new pins before committing them:
#   bash scripts/refresh-constraints.sh && git diff constraints/
#   rm -rf .venv && python3 -m venv .venv && . .venv/bin/activate \
#       && pip install -c constraints/project.txt -e '.[test]' && python -m pytest
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
moto_version=$(sed -n 's/^MOTO_VERSION="\${MOTO_VERSION:-\([^}]*\)}"$/\1/p' \
    scripts/test-deps.d/40-moto.sh)

freeze() {  # freeze VENV OUTPUT WHAT
    {
        echo "# Pins for $3, resolved on $(date -u +%Y-%m-%d) by scripts/refresh-constraints.sh"
        echo "# with Python $("$1/bin/python" -c 'import platform; print(platform.python_version())'). Do not edit by hand."
        "$1/bin/pip" freeze --exclude-editable --disable-pip-version-check \
            | grep -v -i '^tosca-orchestrator[= ]' | LC_ALL=C sort -f
    } > "$2"
    echo "wrote $2 ($(grep -vc '^#' "$2") packages)"
}

echo "resolving the project's test environment (newest releases)..."
python3 -m venv "$work/project"
"$work/project/bin/pip" install -q --disable-pip-version-check -e '.[test]'
freeze "$work/project" constraints/project.txt "pip install -e '.[test]' (and every extra)"

echo "resolving moto[server]==$moto_version..."
python3 -m venv "$work/moto"
"$work/moto/bin/pip" install -q --disable-pip-version-check "moto[server]==$moto_version"
freeze "$work/moto" constraints/moto.txt "moto[server]==$moto_version (scripts/test-deps.d/40-moto.sh)"
