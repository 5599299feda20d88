#!/usr/bin/env python3
"""Per-cell disclosure verdicts of ACRO 1.0 for a list of crosstabs.

The reference side of Anyu's agreement test (`enclave/tests/suite/acro.rs`) and of
`scripts/bench_acro.sh`. Reads a CSV and a table spec (JSON), runs
`acro.ACRO().crosstab` per table with ACRO's default configuration
(`default.yaml`: safe_threshold 10, safe_nk_n 2, safe_nk_k 0.9,
safe_pratio_p 0.1, zeros_are_disclosive, check_missing_values false) and
writes, per table, every cell of the crosstab with

- `keys`: the cell's group-key values, by column name;
- `checks`: the ACRO checks whose mask marks the cell (e.g. `NKCheck`);
- `verdict`: `pass`, `review` or `fail` — the worst status of those checks
  (a check's status is `fail`, or `review` where ACRO says so: dominance with
  negative values, missing values), `pass` for ACRO's `ok`.

Spec: `[{"name": "...", "index": ["sex"], "columns": ["race"],
"values": "income" | null, "aggfunc": "count" | "sum" | "mean"}, ...]`.

With `--time N` it also runs every table N times and reports the median
seconds per table (for the benchmark); the verdicts come from the first run.
No data values are printed: only group keys (category codes) and verdicts.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import statistics
import sys
import time

ORDER = {"pass": 0, "review": 1, "fail": 2}


def crosstab(acro_session, df, table):
    """Runs one table through ACRO; returns its (outcome, check statuses)."""
    index = [df[c] for c in table["index"]]
    columns = [df[c] for c in table["columns"]]
    values = df[table["values"]] if table.get("values") else None
    aggfunc = table.get("aggfunc")
    if aggfunc == "count":
        aggfunc = None
    acro_session.crosstab(index, columns, values=values, aggfunc=aggfunc)
    record = acro_session.results.results[f"output_{acro_session.results.output_id - 1}"]
    statuses = record.fair.get("check_status", {})
    return record.outcome, statuses, record.status


def cell_verdicts(table, outcome, statuses):
    """Every cell of the outcome frame: keys, checks flagging it, verdict."""
    index_names = list(table["index"])
    column_names = list(table["columns"])
    cells = []
    for ridx in outcome.index:
        rkeys = ridx if isinstance(ridx, tuple) else (ridx,)
        for cidx in outcome.columns:
            ckeys = cidx if isinstance(cidx, tuple) else (cidx,)
            text = str(outcome.loc[ridx, cidx]).strip()
            checks = [] if text == "ok" else [c.strip() for c in text.split(";") if c.strip()]
            verdict = "pass"
            for c in checks:
                status = statuses.get(c, "fail")
                if ORDER.get(status, 2) > ORDER[verdict]:
                    verdict = status if status in ORDER else "fail"
            keys = {}
            for name, v in zip(index_names + column_names, list(rkeys) + list(ckeys)):
                keys[name] = v.item() if hasattr(v, "item") else v
            cells.append({"keys": keys, "checks": sorted(checks), "verdict": verdict})
    return cells


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", required=True)
    ap.add_argument("--spec", required=True, help="JSON file with the tables")
    ap.add_argument("--out", required=True, help="where to write the verdict JSON")
    ap.add_argument("--time", type=int, default=0, help="timed runs per table")
    args = ap.parse_args()

    # ACRO logs every table (values included) at INFO: keep the output to verdicts.
    logging.disable(logging.CRITICAL)
    import acro  # noqa: E402  (imported after silencing its logger)
    import pandas as pd

    with open(args.spec, encoding="utf-8") as f:
        spec = json.load(f)
    load_started = time.perf_counter()
    df = pd.read_csv(args.csv)
    load_seconds = time.perf_counter() - load_started

    session = acro.ACRO(suppress=False)
    config = {
        k: session.config[k]
        for k in (
            "safe_threshold",
            "safe_nk_n",
            "safe_nk_k",
            "safe_pratio_p",
            "zeros_are_disclosive",
            "check_missing_values",
        )
    }
    out = {
        "acro_version": importlib.metadata.version("acro"),
        "config": config,
        "rows": int(len(df)),
        "load_seconds": load_seconds,
        "tables": [],
    }
    for table in spec:
        started = time.perf_counter()
        outcome, statuses, status = crosstab(session, df, table)
        first = time.perf_counter() - started
        timings = [first]
        for _ in range(max(args.time - 1, 0)):
            started = time.perf_counter()
            crosstab(session, df, table)
            timings.append(time.perf_counter() - started)
        out["tables"].append(
            {
                "name": table["name"],
                "status": status,
                "check_status": statuses,
                "cells": cell_verdicts(table, outcome, statuses),
                "seconds": timings,
                "median_seconds": statistics.median(timings),
            }
        )
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
