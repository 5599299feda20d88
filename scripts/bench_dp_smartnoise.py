#!/usr/bin/env python3
"""SmartNoise SQL 1.0 on the CSV `anyu-bench dp` generated: the same grouped
COUNT/SUM/AVG, the same bounds, one row per person, total ε = 1 (SmartNoise's
per-mechanism ε is scaled so get_privacy_cost reports 1.0). Times
reader.execute only (the DataFrame is loaded once, as Anyu's data is imported
once), median of --repeat runs; with --anyu prints the ratio."""

import argparse
import json
import statistics
import sys
import tempfile
import time

import pandas as pd
import snsql
from snsql import Privacy

QUERY = (
    "SELECT married, educ, COUNT(*) AS n, SUM(income) AS income_sum, AVG(age) AS age_mean "
    "FROM PUMS.PUMS GROUP BY married, educ"
)

META = """PUMS:
  PUMS:
    PUMS:
      row_privacy: False
      max_ids: 1
      censor_dims: True
      pid:
        type: int
        private_id: True
      age:
        type: int
        lower: 0
        upper: 100
      sex:
        type: int
        lower: 0
        upper: 1
      educ:
        type: int
        lower: 1
        upper: 16
      race:
        type: int
        lower: 1
        upper: 6
      income:
        type: float
        lower: 0
        upper: 500000
      married:
        type: int
        lower: 0
        upper: 1
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--delta", type=float, default=1e-6)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--anyu", help="anyu-bench --json output, for the ratio")
    a = ap.parse_args()

    t = time.perf_counter()
    df = pd.read_csv(a.csv)
    load_s = time.perf_counter() - t
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(META)
        meta = f.name
    probe = snsql.from_df(df, privacy=Privacy(epsilon=a.epsilon, delta=a.delta), metadata=meta)
    cost_eps, cost_delta = probe.get_privacy_cost(QUERY)
    per_mech = a.epsilon * a.epsilon / cost_eps
    reader = snsql.from_df(df, privacy=Privacy(epsilon=per_mech, delta=a.delta), metadata=meta)
    total_eps, total_delta = reader.get_privacy_cost(QUERY)
    runs = []
    rows = 0
    for _ in range(max(1, a.repeat)):
        t = time.perf_counter()
        res = reader.execute(QUERY)
        runs.append((time.perf_counter() - t) * 1000.0)
        rows = len(res) - 1
    med = statistics.median(runs)
    out = {
        "rows": len(df),
        "load_seconds": load_s,
        "epsilon_total": total_eps,
        "delta_total": total_delta,
        "runs_ms": runs,
        "median_ms": med,
        "released_groups": rows,
        "smartnoise_sql": getattr(snsql, "__version__", "1.0"),
    }
    print(
        f"smartnoise: {len(df)} rows, grouped COUNT/SUM/AVG with total ε = {total_eps:.3f}: "
        f"median {med:.1f} ms over {len(runs)} runs ({rows} groups released)"
    )
    if a.anyu:
        anyu = json.load(open(a.anyu))["dp"]
        out["anyu_median_ms"] = anyu["median_ms"]
        out["ratio"] = med / anyu["median_ms"]
        print(f"ratio:     SmartNoise / Anyu = {out['ratio']:.0f}x (goal: at least 100x)")
    if a.json:
        json.dump(out, open(a.json, "w"), indent=2)


if __name__ == "__main__":
    sys.exit(main())
