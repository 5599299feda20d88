/* kmeans: Lloyd's algorithm on numeric columns.
 *
 * params: `k=3` (required, 1..1000), `iters=20` (optional, 1..100000, the
 * most centre updates), `cols=a,b` (optional; default every f64 and i64
 * column). Rows with a null or NaN in a chosen column are skipped.
 *
 * The input is read once and cannot be rewound, so the complete rows of the
 * chosen columns are kept in memory (8 bytes per cell). Deterministic: the
 * starting centres are the first k distinct rows; a row goes to the nearest
 * centre by squared distance, ties to the lower index; an empty cluster
 * keeps its centre; it stops when no row changes cluster. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

bool exports_model_run(str_t *params, table_t *ret, str_t *err) {
    static const char *const allowed[] = {"model", "k", "iters", "cols", NULL};
    params_t p;
    if (!params_parse(params, "kmeans", allowed, &p, err))
        return false;
    long k, iters;
    if (!params_int(&p, "k", 0, 1000, &k, err) ||
        !params_int(&p, "iters", 20, 100000, &iters, err))
        return false;
    schema_t schema;
    anyu_model_input_schema(&schema);
    slice_t *names = NULL;
    size_t n_names = 0;
    const slice_t *cols = params_get(&p, "cols");
    if (cols && !split_names(cols, &names, &n_names, err))
        return false;
    size_t *idx, d;
    if (!numeric_columns(&schema, cols ? names : NULL, n_names, &idx, &d, err))
        return false;
    if (d == 0)
        return fail(err, "kmeans needs at least one numeric column");
    for (size_t j = 0; j < d; j++) {
        const str_t *nm = &schema.ptr[idx[j]].name;
        if (slice_eq((slice_t){"cluster", 7}, (const char *)nm->ptr, nm->len) ||
            slice_eq((slice_t){"size", 4}, (const char *)nm->ptr, nm->len))
            return fail(err, "input columns `cluster` and `size` clash with the output");
    }

    size_t n = 0, cap = 1024;
    double *x = malloc(cap * d * sizeof *x);
    table_t batch;
    while (anyu_model_input_next_batch(&batch)) {
        size_t rows = batch_rows(&batch);
        for (size_t r = 0; r < rows; r++) {
            if (n == cap) {
                cap *= 2;
                x = realloc(x, cap * d * sizeof *x);
                if (!x)
                    __builtin_trap();
            }
            double *dst = &x[n * d];
            bool complete = true;
            for (size_t j = 0; j < d && complete; j++)
                complete = cell(&batch.columns.ptr[idx[j]], r, &dst[j]);
            if (complete)
                n++;
        }
        anyu_model_types_table_free(&batch);
    }

    size_t kc = (size_t)k;
    double *centre = malloc(kc * d * sizeof *centre);
    size_t found = 0;
    for (size_t i = 0; i < n && found < kc; i++) {
        bool seen = false;
        for (size_t c = 0; c < found && !seen; c++) {
            bool same = true;
            for (size_t j = 0; j < d; j++)
                same &= x[i * d + j] == centre[c * d + j];
            seen = same;
        }
        if (!seen)
            memcpy(&centre[found++ * d], &x[i * d], d * sizeof *x);
    }
    if (found < kc)
        return fail(err, "kmeans needs at least k=%ld distinct complete rows", k);

    long *assign = malloc((n ? n : 1) * sizeof *assign);
    for (size_t i = 0; i < n; i++)
        assign[i] = -1;
    double *sum = malloc(kc * d * sizeof *sum);
    int64_t *count = malloc(kc * sizeof *count);
    long done = 0;
    bool converged = false;
    for (long it = 0; it < iters; it++) {
        bool changed = false;
        for (size_t i = 0; i < n; i++) {
            long best = 0;
            double best_d = INFINITY;
            for (size_t c = 0; c < kc; c++) {
                double dist = 0.0;
                for (size_t j = 0; j < d; j++) {
                    double t = x[i * d + j] - centre[c * d + j];
                    dist += t * t;
                }
                if (dist < best_d) {
                    best = (long)c;
                    best_d = dist;
                }
            }
            if (assign[i] != best) {
                assign[i] = best;
                changed = true;
            }
        }
        if (!changed) {
            converged = true;
            break;
        }
        done++;
        memset(sum, 0, kc * d * sizeof *sum);
        memset(count, 0, kc * sizeof *count);
        for (size_t i = 0; i < n; i++) {
            size_t c = (size_t)assign[i];
            count[c]++;
            for (size_t j = 0; j < d; j++)
                sum[c * d + j] += x[i * d + j];
        }
        for (size_t c = 0; c < kc; c++)
            if (count[c] > 0)
                for (size_t j = 0; j < d; j++)
                    centre[c * d + j] = sum[c * d + j] / (double)count[c];
    }
    memset(count, 0, kc * sizeof *count);
    for (size_t i = 0; i < n; i++)
        count[assign[i]]++;
    logf_line("kmeans: n=%zu k=%ld %s after %ld updates", n, k,
              converged ? "converged" : "stopped", done);

    out_table(ret, 2 + d);
    column_t *oc = ret->columns.ptr;
    int64_t *cluster = out_i64(&oc[0], "cluster", kc);
    int64_t *size = out_i64(&oc[1], "size", kc);
    for (size_t c = 0; c < kc; c++) {
        cluster[c] = (int64_t)c + 1;
        size[c] = count[c];
    }
    for (size_t j = 0; j < d; j++) {
        const str_t *nm = &schema.ptr[idx[j]].name;
        double *v = out_f64(&oc[2 + j], (const char *)nm->ptr, nm->len, kc);
        for (size_t c = 0; c < kc; c++)
            v[c] = centre[c * d + j];
    }
    return true; /* the instance ends with the run: no need to free scratch */
}
