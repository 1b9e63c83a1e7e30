#!/usr/bin/env bash
# The device check in one call (under 8 minutes on a GPU): the accelerator
# benchmark suite, the SR and detection steps (detection with and without
# deterministic ops), a kill -9 resume compared bitwise; writes
# OUT_DIR/accelerator_check.json and .md. On a CPU it runs at reduced sizes.
#
#   tools/accelerator_check.sh [OUT_DIR] [--reduced]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-accelerator_check}}"
shift || true
exec timeout 480 "${PYTHON:-python}" tools/accelerator_check.py "$out" "$@"
