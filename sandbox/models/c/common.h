/* Helpers shared by the C example models: params, schema look-ups, reading
 * cells, building the result table, errors and the log.
 *
 * Everything handed back to the host (result columns, error text) must be
 * malloc'd: the generated post-return function frees it. */
#ifndef ANYU_MODELS_COMMON_H
#define ANYU_MODELS_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef model_string_t str_t;
typedef anyu_model_types_table_t table_t;
typedef anyu_model_types_column_t column_t;
typedef anyu_model_input_list_field_t schema_t;

/* A slice of someone else's string, not NUL-terminated. */
typedef struct {
    const char *ptr;
    size_t len;
} slice_t;

#define MAX_PARAMS 16

/* `key=value;key=value`, blanks around keys and values ignored. */
typedef struct {
    slice_t key[MAX_PARAMS];
    slice_t value[MAX_PARAMS];
    size_t n;
} params_t;

/* Writes a formatted, malloc'd message to *err and returns false. */
bool fail(str_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes one formatted line to the job log. */
void logf_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parses params; refuses keys not in `allowed` (NULL-terminated), repeated
 * keys, and `model=` naming another model than `self`. */
bool params_parse(const str_t *params, const char *self, const char *const *allowed,
                  params_t *p, str_t *err);

/* The value of `key`, or NULL if it was not given. */
const slice_t *params_get(const params_t *p, const char *key);

/* Parses a positive integer param in 1..most; `dflt` 0 makes it required. */
bool params_int(const params_t *p, const char *key, long dflt, long most, long *out,
                str_t *err);

/* Splits a comma list into a malloc'd array of slices (blanks trimmed,
 * empty items skipped); refuses a name given twice. */
bool split_names(const slice_t *list, slice_t **names, size_t *n, str_t *err);

bool slice_eq(slice_t a, const char *ptr, size_t len);

/* Indices (malloc'd) of the named columns, each of which must be f64 or
 * i64; with names == NULL, all f64 and i64 columns in schema order. */
bool numeric_columns(const schema_t *schema, const slice_t *names, size_t n_names,
                     size_t **idx, size_t *n, str_t *err);

/* Number of rows of a batch. */
size_t batch_rows(const table_t *batch);

/* Whether row `row` of a column holds a value (its validity bit). */
static inline bool present(const column_t *c, size_t row) {
    return !c->validity.is_some || (c->validity.val.ptr[row >> 3] >> (row & 7) & 1);
}

/* Cell `row` of a numeric column as a double; false for null and NaN. */
static inline bool cell(const column_t *c, size_t row, double *out) {
    if (!present(c, row))
        return false;
    const anyu_model_types_column_data_t *d = &c->data;
    if (d->tag == ANYU_MODEL_TYPES_COLUMN_DATA_F64) {
        double v = d->val.f64.ptr[row];
        if (v != v)
            return false;
        *out = v;
        return true;
    }
    *out = (double)d->val.i64.ptr[row];
    return true;
}

/* Cell `row` of a string column (not NUL-terminated); false for null. */
static inline bool str_cell(const column_t *c, size_t row, slice_t *out) {
    if (!present(c, row))
        return false;
    const anyu_model_types_strings_t *s = &c->data.val.str;
    out->ptr = (const char *)s->bytes.ptr + s->offsets.ptr[row];
    out->len = s->offsets.ptr[row + 1] - s->offsets.ptr[row];
    return true;
}

/* Result columns under a copied name: `rows` values, zeroed, none null. */
double *out_f64(column_t *c, const char *name, size_t name_len, size_t rows);
int64_t *out_i64(column_t *c, const char *name, size_t rows);

/* A result string column of `rows` copied values; a value whose ptr is
 * NULL is null. */
void out_str(column_t *c, const char *name, const slice_t *values, size_t rows);

/* Marks row `row` of a result column null. */
void out_null(column_t *c, size_t row);

/* A table with `n` zeroed columns, to be filled with out_*. */
void out_table(table_t *t, size_t n);

/* A malloc'd copy of `len` bytes as a result string. */
void out_string(str_t *s, const char *ptr, size_t len);

#endif
