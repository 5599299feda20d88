"""pystats: the three example models (describe, ols, kmeans) in pure Python.

One component serves all three because a componentize-py component carries
a whole CPython (~18 MB); `model=` in the params picks one. The algorithms
are the same as the C examples, operation for operation, so both give the
same numbers. See ../README.md for the params of each model.
"""

import math

from componentize_py_types import Err
from wit_world import WitWorld as _World
from wit_world.imports import input as model_input
from wit_world.imports import log
from wit_world.imports.types import (
    Column,
    ColumnData_F64,
    ColumnData_I64,
    ColumnData_Str,
    ColumnType,
    Strings,
    Table,
)

NUMERIC = (ColumnType.F64, ColumnType.I64)


class ModelError(Exception):
    pass


def parse_params(params, allowed):
    """`key=value;key=value`; blanks around keys and values are ignored."""
    out = {}
    for part in params.split(";"):
        if part.strip() == "":
            continue
        if "=" not in part:
            raise ModelError(f"param `{part.strip()}` is not key=value")
        key, value = part.split("=", 1)
        key, value = key.strip(), value.strip()
        if key not in allowed:
            raise ModelError(f"unknown param `{key}`")
        if key in out:
            raise ModelError(f"param `{key}` given twice")
        out[key] = value
    return out


def name_list(value):
    names = []
    for n in value.split(","):
        n = n.strip()
        if n in names:
            raise ModelError(f"column `{n}` named twice")
        if n != "":
            names.append(n)
    return names


def numeric_columns(schema, wanted):
    """Indices of the wanted numeric columns (all numeric ones if None)."""
    index = {f.name: i for i, f in enumerate(schema)}
    if wanted is None:
        return [i for i, f in enumerate(schema) if f.ty in NUMERIC]
    out = []
    for name in wanted:
        if name not in index:
            raise ModelError(f"no column `{name}`")
        if schema[index[name]].ty not in NUMERIC:
            raise ModelError(f"column `{name}` is not numeric")
        out.append(index[name])
    return out


def values(column):
    """The column as floats; None for nulls and NaN."""
    data, valid = column.data, column.validity
    if isinstance(data, ColumnData_I64):
        out = [float(v) for v in data.value]
    else:
        out = [None if v != v else v for v in data.value]
    if valid is not None:
        for i in range(len(out)):
            if not (valid[i >> 3] >> (i & 7)) & 1:
                out[i] = None
    return out


def validity(vals):
    """The bitmap of a result column: None is null; no bitmap without nulls."""
    if all(v is not None for v in vals):
        return None
    bits = bytearray((len(vals) + 7) // 8)
    for i, v in enumerate(vals):
        if v is not None:
            bits[i >> 3] |= 1 << (i & 7)
    return bytes(bits)


def f64_column(name, vals):
    return Column(name, ColumnData_F64([0.0 if v is None else v for v in vals]), validity(vals))


def i64_column(name, vals):
    return Column(name, ColumnData_I64([0 if v is None else v for v in vals]), validity(vals))


def str_column(name, vals):
    parts = [b"" if v is None else v.encode() for v in vals]
    offsets = [0]
    for p in parts:
        offsets.append(offsets[-1] + len(p))
    return Column(name, ColumnData_Str(Strings(offsets, b"".join(parts))), validity(vals))


def batches():
    while True:
        batch = model_input.next_batch()
        if batch is None:
            return
        yield batch.columns


def describe(p):
    schema = model_input.schema()
    cols = numeric_columns(schema, name_list(p["cols"]) if "cols" in p else None)
    # Welford's update, one value at a time: streams, and is stable.
    n = [0] * len(cols)
    mean = [0.0] * len(cols)
    m2 = [0.0] * len(cols)
    lo = [math.inf] * len(cols)
    hi = [-math.inf] * len(cols)
    for columns in batches():
        for j, c in enumerate(cols):
            for x in values(columns[c]):
                if x is None:
                    continue
                n[j] += 1
                d = x - mean[j]
                mean[j] += d / n[j]
                m2[j] += d * (x - mean[j])
                if x < lo[j]:
                    lo[j] = x
                if x > hi[j]:
                    hi[j] = x
    any_ = [k > 0 for k in n]
    return Table(
        [
            str_column("column", [schema[c].name for c in cols]),
            i64_column("n", n),
            f64_column("mean", [m if a else None for m, a in zip(mean, any_)]),
            f64_column("sd", [math.sqrt(m / (k - 1)) if k > 1 else None for m, k in zip(m2, n)]),
            f64_column("min", [v if a else None for v, a in zip(lo, any_)]),
            f64_column("max", [v if a else None for v, a in zip(hi, any_)]),
        ]
    )


def cholesky(a, k):
    """Lower-triangular L with L L' = a, or None if a is (nearly) singular."""
    low = [[0.0] * k for _ in range(k)]
    for i in range(k):
        for j in range(i + 1):
            s = a[i][j]
            for t in range(j):
                s -= low[i][t] * low[j][t]
            if i == j:
                if not s > 1e-12 * a[i][i]:
                    return None
                low[i][i] = math.sqrt(s)
            else:
                low[i][j] = s / low[j][j]
    return low


def chol_solve(low, b, k):
    z = [0.0] * k
    for i in range(k):
        s = b[i]
        for t in range(i):
            s -= low[i][t] * z[t]
        z[i] = s / low[i][i]
    x = [0.0] * k
    for i in range(k - 1, -1, -1):
        s = z[i]
        for t in range(i + 1, k):
            s -= low[t][i] * x[t]
        x[i] = s / low[i][i]
    return x


def ols(p):
    if "y" not in p or "x" not in p:
        raise ModelError("ols needs y=COLUMN;x=COLUMN,COLUMN,...")
    schema = model_input.schema()
    xs = name_list(p["x"])
    if p["y"] in xs:
        raise ModelError("y is also among the x columns")
    idx = numeric_columns(schema, xs + [p["y"]])
    k = len(xs)
    m = k + 1
    # Means and centred cross-products of z = (x..., y), merged batch by
    # batch (Chan et al.): one pass, without the cancellation of raw X'X.
    n = 0
    mean = [0.0] * m
    cp = [[0.0] * m for _ in range(m)]
    for columns in batches():
        cols = [values(columns[c]) for c in idx]
        rows = [r for r in zip(*cols) if None not in r]
        nb = len(rows)
        if nb == 0:
            continue
        bmean = [0.0] * m
        for r in rows:
            for j in range(m):
                bmean[j] += r[j]
        for j in range(m):
            bmean[j] /= nb
        bcp = [[0.0] * m for _ in range(m)]
        for r in rows:
            d = [r[j] - bmean[j] for j in range(m)]
            for i in range(m):
                for j in range(i + 1):
                    bcp[i][j] += d[i] * d[j]
        total = n + nb
        delta = [bmean[j] - mean[j] for j in range(m)]
        f = n * nb / total
        for i in range(m):
            for j in range(i + 1):
                cp[i][j] += bcp[i][j] + delta[i] * delta[j] * f
        for j in range(m):
            mean[j] += delta[j] * nb / total
        n = total
    df = n - m
    if df < 1:
        raise ModelError(f"ols needs more complete rows than terms ({m})")
    sxx = [[cp[max(i, j)][min(i, j)] for j in range(k)] for i in range(k)]
    sxy = [cp[k][j] for j in range(k)]
    low = cholesky(sxx, k)
    if low is None:
        raise ModelError("the x columns are collinear (or constant)")
    b = chol_solve(low, sxy, k)
    inv = [chol_solve(low, [1.0 if t == i else 0.0 for t in range(k)], k) for i in range(k)]
    rss = cp[k][k]
    for j in range(k):
        rss -= b[j] * sxy[j]
    s2 = max(rss, 0.0) / df
    xbar = mean[:k]
    a = mean[k]
    for j in range(k):
        a -= b[j] * xbar[j]
    q = 0.0
    for i in range(k):
        for j in range(k):
            q += xbar[i] * inv[i][j] * xbar[j]
    se = [math.sqrt(s2 * (1.0 / n + q))] + [math.sqrt(s2 * inv[j][j]) for j in range(k)]
    log.write(f"ols: n={n} df_resid={df}")
    return Table(
        [
            str_column("term", ["intercept"] + xs),
            f64_column("estimate", [a] + b),
            f64_column("std_error", se),
            i64_column("n", [n] * m),
            i64_column("df_resid", [df] * m),
        ]
    )


def positive_int(p, key, default, most):
    raw = p.get(key)
    if raw is None:
        if default is None:
            raise ModelError(f"param `{key}` is required")
        return default
    if raw == "" or any(c not in "0123456789" for c in raw):
        raise ModelError(f"param `{key}` is not an integer")
    v = int(raw)
    if v < 1 or v > most:
        raise ModelError(f"param `{key}` must be 1..{most}")
    return v


def kmeans(p):
    k = positive_int(p, "k", None, 1000)
    iters = positive_int(p, "iters", 20, 100000)
    schema = model_input.schema()
    idx = numeric_columns(schema, name_list(p["cols"]) if "cols" in p else None)
    if not idx:
        raise ModelError("kmeans needs at least one numeric column")
    names = [schema[c].name for c in idx]
    if "cluster" in names or "size" in names:
        raise ModelError("input columns `cluster` and `size` clash with the output")
    d = len(idx)
    # Input is read once: keep the complete rows of the chosen columns.
    rows = []
    for columns in batches():
        cols = [values(columns[c]) for c in idx]
        rows.extend(r for r in zip(*cols) if None not in r)
    n = len(rows)
    # Deterministic start: the first k distinct rows.
    centres = []
    seen = set()
    for r in rows:
        if r not in seen:
            seen.add(r)
            centres.append(list(r))
            if len(centres) == k:
                break
    if len(centres) < k:
        raise ModelError(f"kmeans needs at least k={k} distinct complete rows")
    assign = [-1] * n
    done = 0
    converged = False
    for _ in range(iters):
        changed = False
        for i, r in enumerate(rows):
            best, best_d = 0, math.inf
            for c in range(k):
                cen = centres[c]
                dist = 0.0
                for j in range(d):
                    t = r[j] - cen[j]
                    dist += t * t
                if dist < best_d:
                    best, best_d = c, dist
            if assign[i] != best:
                assign[i] = best
                changed = True
        if not changed:
            converged = True
            break
        done += 1
        sums = [[0.0] * d for _ in range(k)]
        counts = [0] * k
        for i, r in enumerate(rows):
            c = assign[i]
            counts[c] += 1
            s = sums[c]
            for j in range(d):
                s[j] += r[j]
        for c in range(k):
            if counts[c] > 0:  # an empty cluster keeps its centre
                centres[c] = [s / counts[c] for s in sums[c]]
    sizes = [0] * k
    for c in assign:
        sizes[c] += 1
    state = "converged" if converged else "stopped"
    log.write(f"kmeans: n={n} k={k} {state} after {done} updates")
    return Table(
        [i64_column("cluster", list(range(1, k + 1))), i64_column("size", sizes)]
        + [f64_column(names[j], [centres[c][j] for c in range(k)]) for j in range(d)]
    )


MODELS = {
    "describe": (describe, {"model", "cols"}),
    "ols": (ols, {"model", "y", "x"}),
    "kmeans": (kmeans, {"model", "k", "iters", "cols"}),
}


class WitWorld(_World):
    def run(self, params: str) -> Table:
        try:
            which = parse_params(params, {"model", "cols", "y", "x", "k", "iters"}).get("model")
            if which not in MODELS:
                raise ModelError("param model= must be describe, ols or kmeans")
            fn, allowed = MODELS[which]
            return fn(parse_params(params, allowed))
        except ModelError as e:
            raise Err(str(e)) from None
