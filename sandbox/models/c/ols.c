/* ols: least squares with an intercept, one pass over the input.
 *
 * params: `y=COLUMN;x=COLUMN,COLUMN,...` (`x=` empty fits the mean only).
 * Rows with a null (or NaN) in y or any x are skipped. Per batch it takes
 * the means and centred cross-products of z = (x..., y) and merges them into
 * the running ones (Chan et al.), which avoids the cancellation of raw X'X
 * when means are large against the spread. Slopes come from a Cholesky
 * solve of the centred X'X; the intercept and every standard error follow
 * from the same sums. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* Lower-triangular l with l l' = a (k x k, row-major); false if a is
 * (nearly) singular. */
static bool cholesky(const double *a, double *l, size_t k) {
    memset(l, 0, k * k * sizeof *l);
    for (size_t i = 0; i < k; i++)
        for (size_t j = 0; j <= i; j++) {
            double s = a[i * k + j];
            for (size_t t = 0; t < j; t++)
                s -= l[i * k + t] * l[j * k + t];
            if (i == j) {
                if (!(s > 1e-12 * a[i * k + i]))
                    return false;
                l[i * k + i] = sqrt(s);
            } else {
                l[i * k + j] = s / l[j * k + j];
            }
        }
    return true;
}

/* Solves l l' x = b; z is scratch of k. */
static void chol_solve(const double *l, const double *b, double *z, double *x, size_t k) {
    for (size_t i = 0; i < k; i++) {
        double s = b[i];
        for (size_t t = 0; t < i; t++)
            s -= l[i * k + t] * z[t];
        z[i] = s / l[i * k + i];
    }
    for (size_t i = k; i-- > 0;) {
        double s = z[i];
        for (size_t t = i + 1; t < k; t++)
            s -= l[t * k + i] * x[t];
        x[i] = s / l[i * k + i];
    }
}

/* z of row r, in the order of idx; false if any is null or NaN. */
static bool row(const table_t *batch, const size_t *idx, size_t m, size_t r, double *z) {
    for (size_t j = 0; j < m; j++)
        if (!cell(&batch->columns.ptr[idx[j]], r, &z[j]))
            return false;
    return true;
}

bool exports_model_run(str_t *params, table_t *ret, str_t *err) {
    static const char *const allowed[] = {"model", "y", "x", NULL};
    params_t p;
    if (!params_parse(params, "ols", allowed, &p, err))
        return false;
    const slice_t *y = params_get(&p, "y"), *x = params_get(&p, "x");
    if (!y || !x)
        return fail(err, "ols needs y=COLUMN;x=COLUMN,COLUMN,...");
    slice_t *names;
    size_t k;
    if (!split_names(x, &names, &k, err))
        return false;
    for (size_t j = 0; j < k; j++)
        if (slice_eq(names[j], y->ptr, y->len))
            return fail(err, "y is also among the x columns");
    size_t m = k + 1;
    names = realloc(names, m * sizeof *names);
    names[k] = *y;
    schema_t schema;
    anyu_model_input_schema(&schema);
    size_t *idx, got;
    if (!numeric_columns(&schema, names, m, &idx, &got, err))
        return false;

    double *mean = calloc(m, sizeof *mean), *cp = calloc(m * m, sizeof *cp);
    double *bmean = malloc(m * sizeof *bmean), *bcp = malloc(m * m * sizeof *bcp);
    double *z = malloc(m * sizeof *z), *delta = malloc(m * sizeof *delta);
    int64_t n = 0;
    table_t batch;
    while (anyu_model_input_next_batch(&batch)) {
        size_t rows = batch_rows(&batch);
        int64_t nb = 0;
        memset(bmean, 0, m * sizeof *bmean);
        for (size_t r = 0; r < rows; r++) {
            if (!row(&batch, idx, m, r, z))
                continue;
            nb++;
            for (size_t j = 0; j < m; j++)
                bmean[j] += z[j];
        }
        if (nb == 0) {
            anyu_model_types_table_free(&batch);
            continue;
        }
        for (size_t j = 0; j < m; j++)
            bmean[j] /= (double)nb;
        memset(bcp, 0, m * m * sizeof *bcp);
        for (size_t r = 0; r < rows; r++) {
            if (!row(&batch, idx, m, r, z))
                continue;
            for (size_t j = 0; j < m; j++)
                z[j] -= bmean[j];
            for (size_t i = 0; i < m; i++)
                for (size_t j = 0; j <= i; j++)
                    bcp[i * m + j] += z[i] * z[j];
        }
        anyu_model_types_table_free(&batch);
        int64_t total = n + nb;
        for (size_t j = 0; j < m; j++)
            delta[j] = bmean[j] - mean[j];
        double f = (double)(n * nb) / (double)total;
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j <= i; j++)
                cp[i * m + j] += bcp[i * m + j] + delta[i] * delta[j] * f;
        for (size_t j = 0; j < m; j++)
            mean[j] += delta[j] * (double)nb / (double)total;
        n = total;
    }

    int64_t df = n - (int64_t)m;
    if (df < 1)
        return fail(err, "ols needs more complete rows than terms (%zu)", m);
    size_t kk = k ? k : 1;
    double *sxx = malloc(kk * kk * sizeof *sxx), *sxy = malloc(kk * sizeof *sxy);
    for (size_t i = 0; i < k; i++) {
        for (size_t j = 0; j < k; j++)
            sxx[i * k + j] = i >= j ? cp[i * m + j] : cp[j * m + i];
        sxy[i] = cp[k * m + i];
    }
    double *l = malloc(kk * kk * sizeof *l);
    if (!cholesky(sxx, l, k))
        return fail(err, "the x columns are collinear (or constant)");
    double *b = malloc(kk * sizeof *b), *inv = malloc(kk * kk * sizeof *inv);
    double *e = malloc(kk * sizeof *e), *scratch = malloc(kk * sizeof *scratch);
    chol_solve(l, sxy, scratch, b, k);
    for (size_t i = 0; i < k; i++) {
        for (size_t t = 0; t < k; t++)
            e[t] = t == i ? 1.0 : 0.0;
        chol_solve(l, e, scratch, &inv[i * k], k);
    }
    double rss = cp[k * m + k];
    for (size_t j = 0; j < k; j++)
        rss -= b[j] * sxy[j];
    double s2 = (rss > 0.0 ? rss : 0.0) / (double)df;
    double a = mean[k];
    for (size_t j = 0; j < k; j++)
        a -= b[j] * mean[j];
    double q = 0.0;
    for (size_t i = 0; i < k; i++)
        for (size_t j = 0; j < k; j++)
            q += mean[i] * inv[i * k + j] * mean[j];
    logf_line("ols: n=%lld df_resid=%lld", (long long)n, (long long)df);

    out_table(ret, 5);
    column_t *oc = ret->columns.ptr;
    slice_t *terms = malloc(m * sizeof *terms);
    terms[0] = (slice_t){"intercept", 9};
    for (size_t j = 1; j < m; j++)
        terms[j] = names[j - 1];
    out_str(&oc[0], "term", terms, m);
    double *est = out_f64(&oc[1], "estimate", 8, m);
    double *se = out_f64(&oc[2], "std_error", 9, m);
    int64_t *on = out_i64(&oc[3], "n", m);
    int64_t *odf = out_i64(&oc[4], "df_resid", m);
    for (size_t j = 0; j < m; j++) {
        double v = j == 0 ? s2 * (1.0 / (double)n + q) : s2 * inv[(j - 1) * k + (j - 1)];
        est[j] = j == 0 ? a : b[j - 1];
        se[j] = sqrt(v);
        on[j] = n;
        odf[j] = df;
    }
    return true; /* the instance ends with the run: no need to free scratch */
}
