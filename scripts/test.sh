#!/usr/bin/env bash
# The project's test command: lint, then every test (host-app tests included when the trixie root exists).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
