#!/usr/bin/env bash
# Install automc (with dev extras) into .venv if needed, then run the test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -m slow
source "$(dirname "$0")/_venv.sh"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec python -m pytest -m "not slow" "$@"
