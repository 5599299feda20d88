/* describe: n, mean, sample sd, min and max of numeric columns.
 *
 * params: `cols=a,b` (optional; default every f64 and i64 column).
 * Streams: holds one batch at a time and five numbers per column. */
#include <math.h>
#include <stdlib.h>

#include "common.h"

typedef struct {
    int64_t n;
    double mean, m2, min, max;
} acc_t;

bool exports_model_run(str_t *params, table_t *ret, str_t *err) {
    static const char *const allowed[] = {"model", "cols", NULL};
    params_t p;
    if (!params_parse(params, "describe", allowed, &p, err))
        return false;
    schema_t schema;
    anyu_model_input_schema(&schema);
    slice_t *names = NULL;
    size_t n_names = 0;
    const slice_t *cols = params_get(&p, "cols");
    if (cols && !split_names(cols, &names, &n_names, err))
        return false;
    size_t *idx, k;
    if (!numeric_columns(&schema, cols ? names : NULL, n_names, &idx, &k, err))
        return false;

    acc_t *acc = calloc(k ? k : 1, sizeof *acc);
    for (size_t j = 0; j < k; j++) {
        acc[j].min = INFINITY;
        acc[j].max = -INFINITY;
    }
    table_t batch;
    while (anyu_model_input_next_batch(&batch)) {
        size_t rows = batch_rows(&batch);
        for (size_t j = 0; j < k; j++) {
            const column_t *c = &batch.columns.ptr[idx[j]];
            acc_t *a = &acc[j];
            for (size_t r = 0; r < rows; r++) {
                double x;
                if (!cell(c, r, &x))
                    continue;
                /* Welford's update: one pass, no cancellation. */
                a->n++;
                double d = x - a->mean;
                a->mean += d / (double)a->n;
                a->m2 += d * (x - a->mean);
                if (x < a->min)
                    a->min = x;
                if (x > a->max)
                    a->max = x;
            }
        }
        anyu_model_types_table_free(&batch);
    }

    out_table(ret, 6);
    column_t *oc = ret->columns.ptr;
    slice_t *names_out = malloc((k ? k : 1) * sizeof *names_out);
    for (size_t j = 0; j < k; j++) {
        const str_t *nm = &schema.ptr[idx[j]].name;
        names_out[j] = (slice_t){(const char *)nm->ptr, nm->len};
    }
    out_str(&oc[0], "column", names_out, k);
    int64_t *n = out_i64(&oc[1], "n", k);
    double *mean = out_f64(&oc[2], "mean", 4, k);
    double *sd = out_f64(&oc[3], "sd", 2, k);
    double *min = out_f64(&oc[4], "min", 3, k);
    double *max = out_f64(&oc[5], "max", 3, k);
    for (size_t j = 0; j < k; j++) {
        const acc_t *a = &acc[j];
        n[j] = a->n;
        if (a->n > 0) {
            mean[j] = a->mean;
            min[j] = a->min;
            max[j] = a->max;
        } else {
            out_null(&oc[2], j);
            out_null(&oc[4], j);
            out_null(&oc[5], j);
        }
        if (a->n > 1)
            sd[j] = sqrt(a->m2 / (double)(a->n - 1));
        else
            out_null(&oc[3], j);
    }
    free(names_out);
    free(acc);
    free(idx);
    free(names);
    anyu_model_input_list_field_free(&schema);
    return true;
}
