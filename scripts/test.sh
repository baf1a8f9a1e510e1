#!/usr/bin/env bash
# The project's test command: set up ./.venv (idempotent), lint, then every test (the real GIMP/Krita
# tests too when the trixie root from tests/hosts/setup_root.sh exists and we are root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
