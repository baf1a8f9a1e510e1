#!/usr/bin/env bash
# The project's test command: set up ./.venv (idempotent), lint, then every test (the real GIMP/Krita
# tests too when the trixie root from tests/hosts/setup_root.sh exists and we are root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check .
# Two workers (tests/conftest.py says how the files are split): the suite mostly waits on the
# processes it starts, so one pytest process leaves a core idle.
exec .venv/bin/python -m pytest -q -n "${SINE_TEST_WORKERS:-2}" "$@"
