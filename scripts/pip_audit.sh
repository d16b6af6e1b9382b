#!/usr/bin/env bash
# Known vulnerabilities in the installed dependencies (the environment built from the pinned
# requirements/*.txt), from PyPI's advisory data (or OSV: PIP_AUDIT_SERVICE=osv).
# Exits non-zero on a known vulnerability and also when any package could not be checked
# (--strict): an audit that could not look is not reported as clean.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
exec "$PYTHON" -m pip_audit --strict --progress-spinner off --desc on \
  --vulnerability-service "${PIP_AUDIT_SERVICE:-pypi}" "$@"
