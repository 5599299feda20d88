#include "common.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p)
        __builtin_trap(); /* the host reports it as a memory limit or trap */
    return p;
}

/* A growable byte buffer for format(). */
typedef struct {
    char *ptr;
    size_t len, cap;
} buf_t;

static void put(buf_t *b, const char *p, size_t n) {
    if (b->len + n + 1 > b->cap) {
        while (b->len + n + 1 > b->cap)
            b->cap = b->cap ? 2 * b->cap : 64;
        b->ptr = realloc(b->ptr, b->cap);
        if (!b->ptr)
            __builtin_trap();
    }
    memcpy(b->ptr + b->len, p, n);
    b->len += n;
    b->ptr[b->len] = 0;
}

static void put_int(buf_t *b, long long v) {
    char tmp[24];
    size_t i = sizeof tmp;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        tmp[--i] = '-';
    put(b, tmp + i, sizeof tmp - i);
}

/* A small printf: %s, %.*s, %ld, %lld, %zu and %% only. libc's printf
 * family would link wasi-libc's stdio, which imports WASI file calls. */
static char *vformat(const char *fmt, va_list ap, size_t *len) {
    buf_t b = {0};
    put(&b, "", 0);
    for (const char *f = fmt; *f; f++) {
        if (*f != '%') {
            put(&b, f, 1);
            continue;
        }
        f++;
        if (*f == 's') {
            const char *s = va_arg(ap, const char *);
            put(&b, s, strlen(s));
        } else if (f[0] == '.' && f[1] == '*' && f[2] == 's') {
            int n = va_arg(ap, int);
            const char *s = va_arg(ap, const char *);
            put(&b, s, (size_t)n);
            f += 2;
        } else if (f[0] == 'l' && f[1] == 'd') {
            put_int(&b, va_arg(ap, long));
            f += 1;
        } else if (f[0] == 'l' && f[1] == 'l' && f[2] == 'd') {
            put_int(&b, va_arg(ap, long long));
            f += 2;
        } else if (f[0] == 'z' && f[1] == 'u') {
            put_int(&b, (long long)va_arg(ap, size_t));
            f += 1;
        } else {
            put(&b, "%", 1);
            if (*f != '%')
                __builtin_trap(); /* a format this file does not support */
        }
    }
    *len = b.len;
    return b.ptr;
}

bool fail(str_t *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t len;
    char *msg = vformat(fmt, ap, &len);
    va_end(ap);
    err->ptr = (uint8_t *)msg;
    err->len = len;
    return false;
}

void logf_line(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t len;
    char *msg = vformat(fmt, ap, &len);
    va_end(ap);
    str_t line = {(uint8_t *)msg, len};
    anyu_model_log_write(&line);
    free(msg);
}

static slice_t trim(const char *p, size_t len) {
    while (len > 0 && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
        p++;
        len--;
    }
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t' || p[len - 1] == '\n' ||
                       p[len - 1] == '\r'))
        len--;
    return (slice_t){p, len};
}

bool slice_eq(slice_t a, const char *ptr, size_t len) {
    return a.len == len && memcmp(a.ptr, ptr, len) == 0;
}

static bool slice_is(slice_t a, const char *s) {
    return slice_eq(a, s, strlen(s));
}

bool params_parse(const str_t *params, const char *self, const char *const *allowed,
                  params_t *p, str_t *err) {
    const char *s = (const char *)params->ptr;
    size_t len = params->len;
    p->n = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != ';')
            continue;
        slice_t part = trim(s + start, i - start);
        start = i + 1;
        if (part.len == 0)
            continue;
        const char *eq = memchr(part.ptr, '=', part.len);
        if (!eq)
            return fail(err, "param `%.*s` is not key=value", (int)part.len, part.ptr);
        slice_t key = trim(part.ptr, (size_t)(eq - part.ptr));
        slice_t value = trim(eq + 1, part.len - (size_t)(eq - part.ptr) - 1);
        bool known = false;
        for (const char *const *a = allowed; *a; a++)
            known |= slice_is(key, *a);
        if (!known)
            return fail(err, "unknown param `%.*s`", (int)key.len, key.ptr);
        for (size_t j = 0; j < p->n; j++)
            if (slice_eq(p->key[j], key.ptr, key.len))
                return fail(err, "param `%.*s` given twice", (int)key.len, key.ptr);
        if (p->n == MAX_PARAMS)
            return fail(err, "too many params");
        p->key[p->n] = key;
        p->value[p->n] = value;
        p->n++;
    }
    const slice_t *model = params_get(p, "model");
    if (model && !slice_is(*model, self))
        return fail(err, "this is the %s model, not `%.*s`", self, (int)model->len,
                    model->ptr);
    return true;
}

const slice_t *params_get(const params_t *p, const char *key) {
    for (size_t i = 0; i < p->n; i++)
        if (slice_is(p->key[i], key))
            return &p->value[i];
    return NULL;
}

bool params_int(const params_t *p, const char *key, long dflt, long most, long *out,
                str_t *err) {
    const slice_t *v = params_get(p, key);
    if (!v) {
        if (dflt == 0)
            return fail(err, "param `%s` is required", key);
        *out = dflt;
        return true;
    }
    if (v->len == 0)
        return fail(err, "param `%s` is not an integer", key);
    for (size_t i = 0; i < v->len; i++)
        if (v->ptr[i] < '0' || v->ptr[i] > '9')
            return fail(err, "param `%s` is not an integer", key);
    long x = 0;
    for (size_t i = 0; i < v->len && x <= most; i++)
        x = x * 10 + (v->ptr[i] - '0');
    if (x < 1 || x > most)
        return fail(err, "param `%s` must be 1..%ld", key, most);
    *out = x;
    return true;
}

bool split_names(const slice_t *list, slice_t **names, size_t *n, str_t *err) {
    size_t cap = 1;
    for (size_t i = 0; i < list->len; i++)
        cap += list->ptr[i] == ',';
    slice_t *out = xmalloc(cap * sizeof *out);
    size_t count = 0, start = 0;
    for (size_t i = 0; i <= list->len; i++) {
        if (i < list->len && list->ptr[i] != ',')
            continue;
        slice_t name = trim(list->ptr + start, i - start);
        start = i + 1;
        if (name.len == 0)
            continue;
        for (size_t j = 0; j < count; j++)
            if (slice_eq(out[j], name.ptr, name.len)) {
                free(out);
                return fail(err, "column `%.*s` named twice", (int)name.len, name.ptr);
            }
        out[count++] = name;
    }
    *names = out;
    *n = count;
    return true;
}

static bool is_numeric(anyu_model_types_column_type_t t) {
    return t == ANYU_MODEL_TYPES_COLUMN_TYPE_F64 || t == ANYU_MODEL_TYPES_COLUMN_TYPE_I64;
}

bool numeric_columns(const schema_t *schema, const slice_t *names, size_t n_names,
                     size_t **idx, size_t *n, str_t *err) {
    size_t *out = xmalloc((names ? n_names : schema->len) * sizeof *out);
    size_t count = 0;
    if (!names) {
        for (size_t i = 0; i < schema->len; i++)
            if (is_numeric(schema->ptr[i].ty))
                out[count++] = i;
    } else {
        for (size_t k = 0; k < n_names; k++) {
            size_t i = 0;
            while (i < schema->len &&
                   !slice_eq(names[k], (const char *)schema->ptr[i].name.ptr,
                             schema->ptr[i].name.len))
                i++;
            if (i == schema->len) {
                free(out);
                return fail(err, "no column `%.*s`", (int)names[k].len, names[k].ptr);
            }
            if (!is_numeric(schema->ptr[i].ty)) {
                free(out);
                return fail(err, "column `%.*s` is not numeric", (int)names[k].len,
                            names[k].ptr);
            }
            out[count++] = i;
        }
    }
    *idx = out;
    *n = count;
    return true;
}

size_t batch_rows(const table_t *batch) {
    if (batch->columns.len == 0)
        return 0;
    const anyu_model_types_column_data_t *d = &batch->columns.ptr[0].data;
    switch (d->tag) {
    case ANYU_MODEL_TYPES_COLUMN_DATA_F64:
        return d->val.f64.len;
    case ANYU_MODEL_TYPES_COLUMN_DATA_I64:
        return d->val.i64.len;
    case ANYU_MODEL_TYPES_COLUMN_DATA_STR:
        return d->val.str.offsets.len ? d->val.str.offsets.len - 1 : 0;
    default:
        return d->val.boolean.len;
    }
}

void out_string(str_t *s, const char *ptr, size_t len) {
    s->ptr = xmalloc(len);
    memcpy(s->ptr, ptr, len);
    s->len = len;
}

void out_table(table_t *t, size_t n) {
    t->columns.ptr = xmalloc(n * sizeof(column_t));
    memset(t->columns.ptr, 0, n * sizeof(column_t));
    t->columns.len = n;
}

static void *zeroed(size_t n) {
    void *p = xmalloc(n);
    memset(p, 0, n);
    return p;
}

double *out_f64(column_t *c, const char *name, size_t name_len, size_t rows) {
    out_string(&c->name, name, name_len);
    c->data.tag = ANYU_MODEL_TYPES_COLUMN_DATA_F64;
    c->data.val.f64.ptr = zeroed(rows * sizeof(double));
    c->data.val.f64.len = rows;
    return c->data.val.f64.ptr;
}

int64_t *out_i64(column_t *c, const char *name, size_t rows) {
    out_string(&c->name, name, strlen(name));
    c->data.tag = ANYU_MODEL_TYPES_COLUMN_DATA_I64;
    c->data.val.i64.ptr = zeroed(rows * sizeof(int64_t));
    c->data.val.i64.len = rows;
    return c->data.val.i64.ptr;
}

void out_str(column_t *c, const char *name, const slice_t *values, size_t rows) {
    out_string(&c->name, name, strlen(name));
    c->data.tag = ANYU_MODEL_TYPES_COLUMN_DATA_STR;
    anyu_model_types_strings_t *s = &c->data.val.str;
    s->offsets.ptr = xmalloc((rows + 1) * sizeof(uint32_t));
    s->offsets.len = rows + 1;
    size_t total = 0;
    for (size_t r = 0; r < rows; r++)
        total += values[r].ptr ? values[r].len : 0;
    s->bytes.ptr = xmalloc(total);
    s->bytes.len = total;
    size_t at = 0;
    s->offsets.ptr[0] = 0;
    for (size_t r = 0; r < rows; r++) {
        if (values[r].ptr) {
            memcpy(s->bytes.ptr + at, values[r].ptr, values[r].len);
            at += values[r].len;
        } else {
            out_null(c, r);
        }
        s->offsets.ptr[r + 1] = (uint32_t)at;
    }
}

static size_t column_rows(const column_t *c) {
    table_t one = {{(column_t *)c, 1}};
    return batch_rows(&one);
}

void out_null(column_t *c, size_t row) {
    if (!c->validity.is_some) {
        size_t n = (column_rows(c) + 7) / 8;
        c->validity.is_some = true;
        c->validity.val.ptr = xmalloc(n);
        memset(c->validity.val.ptr, 0xff, n);
        c->validity.val.len = n;
    }
    c->validity.val.ptr[row >> 3] &= (uint8_t) ~(1u << (row & 7));
}
