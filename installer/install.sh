#!/bin/sh
# sine-edit installer for Linux and macOS: finds a Python >= 3.10 and hands every argument to install.py.
#   sh installer/install.sh [--model ID] [--dry-run] [--uninstall] ...   (install.py --help lists all)
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
for candidate in ${PYTHON:-} python3.13 python3.12 python3.11 python3.10 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
        exec "$candidate" "$HERE/install.py" "$@"
    fi
done
echo "sine-edit needs Python 3.10 or newer (3.11+ for the backend)." >&2
echo "  Debian/Ubuntu: sudo apt install python3 python3-venv    macOS: brew install python@3.12" >&2
echo "  or set PYTHON=/path/to/python3 and run this again." >&2
exit 1
