#!/usr/bin/env bash
# Anyu's disclosure checks against ACRO 1.0, side by side, on the crosstabs of
# the ACRO agreement test over a PUMS-shaped table (1M rows by default), plus
# the dominance rules' cost over the plain threshold path. Figures are only
# meaningful in a release build (the default; ~25 min cold on 2 cores).
#
#   scripts/bench_acro.sh [--profile release|dev|…] [anyu-bench flags, e.g. --acro-rows 1000000 --json out.json]
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
if [[ "${1:-}" == "--profile" ]]; then
    profile=$2
    shift 2
fi

acro_version=1.0.2
python=${ANYU_PYTHON:-python3}
if ! "$python" -c "import importlib.metadata as m, sys; sys.exit(m.version('acro') != '$acro_version')" 2>/dev/null; then
    "$python" -m pip install --quiet --disable-pip-version-check "acro==$acro_version" || {
        echo "bench_acro.sh: could not install acro==$acro_version with '$python -m pip'" >&2
        exit 2
    }
fi
export ANYU_PYTHON="$python" ANYU_ACRO_SCRIPT="$PWD/scripts/acro_verdicts.py"

exec scripts/bench --profile "$profile" acro "$@"
