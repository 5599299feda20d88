#!/usr/bin/env bash
# Anyu's DP path vs SmartNoise SQL 1.0, side by side on the same 1M PUMS-shaped rows
# (distinct pids), the same query, bounds and ε = 1. Prints both medians and the ratio.
#   ROWS=1000000 REPEAT=5 PROFILE=release scripts/bench_dp.sh
# PROFILE=dev gives a quick smoke run (figures meaningless); release builds take long cold.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-1000000}
REPEAT=${REPEAT:-5}
PROFILE=${PROFILE:-release}
WORK=${WORK:-$(mktemp -d -t anyu-bench-dp.XXXXXX)}
scripts/bench --profile "$PROFILE" dp --dp-rows "$ROWS" --query-repeat "$REPEAT" --work-dir "$WORK" --json "$WORK/anyu.json"
PY=${PYTHON:-python3}
if ! "$PY" -c 'import snsql' 2>/dev/null; then
    python3 -m venv "$WORK/venv"
    "$WORK/venv/bin/pip" install -q 'smartnoise-sql==1.0.*' pandas
    PY="$WORK/venv/bin/python"
fi
"$PY" scripts/bench_dp_smartnoise.py "$WORK/samples/pums.csv" --repeat "$(( REPEAT < 3 ? REPEAT : 3 ))" \
    --json "$WORK/smartnoise.json" --anyu "$WORK/anyu.json"
echo "results in $WORK"
