/* The safetensors container: reading with every check of docs/model-file.md §1.5, and writing through a
 * temporary file that is renamed into place. */
#define _POSIX_C_SOURCE 200809L

#include "io/safetensors.h"

#include "base/file_write.h"
#include "base/internal.h"
#include "base/rng.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The element data is copied as it lies in the file, and the file is little-endian. */
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "repmode's safetensors code assumes a little-endian host"
#endif

#define ST_ALIGN 64
/* JSON numbers reach us as doubles (cJSON), which hold every integer up to 2^53 exactly; larger ones could have
 * been rounded, so neither side accepts them. */
#define ST_MAX_INT INT64_C(9007199254740991)

/* The dtypes of the file that we read. */
enum st_src { ST_SRC_F32, ST_SRC_I64, ST_SRC_F16, ST_SRC_BF16 };
static const char *const st_src_names[] = {"F32", "I64", "F16", "BF16"};
static const int64_t st_src_sizes[] = {4, 8, 2, 2};

struct rm_st_file {
    size_t n;
    rm_st_entry *entries;          /* file order */
    const rm_st_entry **by_name;   /* sorted by name, for rm_st_find */
    size_t n_meta;
    const char **meta_keys;        /* file order */
    const char **meta_values;
    char *strings;                 /* every name, key and value */
    void *data;                    /* the element data, ST_ALIGN-aligned */
};

/* ---- small helpers ------------------------------------------------------------------------------------------- */

static void *st_aligned_alloc(size_t bytes)
{
    if (bytes > SIZE_MAX - ST_ALIGN)
        return NULL;
    size_t n = bytes ? (bytes + ST_ALIGN - 1) / ST_ALIGN * ST_ALIGN : ST_ALIGN;
    return rm_aligned_alloc(ST_ALIGN, n);
}

/* The length (1 to 4) of the well-formed UTF-8 sequence at s, or 0 when it is malformed: a stray continuation
 * byte, an overlong form, a surrogate, a code point past U+10FFFF, or a cut-off sequence. */
static size_t st_utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    uint32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, cp = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

static int st_utf8_valid(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t n = strlen(str);
    for (size_t i = 0; i < n;) {
        size_t len = st_utf8_seq(s + i, n - i);
        if (!len)
            return 0;
        i += len;
    }
    return 1;
}

/* What cJSON lets through and we do not: bytes that are not UTF-8, control characters (cJSON takes any byte up to
 * 0x20 for white space and copies raw ones inside strings), and NUL, raw or escaped (it would cut a name short).
 * Returns NULL when the header is clean, else what is wrong with *at the byte offset. */
static const char *st_header_scan(const unsigned char *s, size_t n, size_t *at)
{
    int in_string = 0;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        *at = i;
        if (c >= 0x80) {
            size_t len = st_utf8_seq(s + i, n - i);
            if (!len)
                return "is not valid UTF-8";
            i += len;
            continue;
        }
        if (c == 0)
            return "has a NUL byte";
        if (in_string) {
            if (c < 0x20)
                return "has a control character inside a string";
            if (c == '"') {
                in_string = 0;
            } else if (c == '\\' && i + 1 < n) {
                if (i + 6 <= n && memcmp(s + i + 1, "u0000", 5) == 0)
                    return "has an escaped NUL character (\\u0000)";
                if (s[i + 1] < 0x80) /* skip the escaped character (a quote must not end the string) */
                    i++;
            }
        } else {
            if (c < 0x20 && c != ' ' && c != '\t' && c != '\n' && c != '\r')
                return "has a control character";
            if (c == '"')
                in_string = 1;
        }
        i++;
    }
    return NULL;
}

static int st_is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* "(5, 12)", "()" for a scalar. */
static const char *st_shape_str(const int64_t *shape, int ndim, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    used += (size_t)snprintf(buf, len, "(");
    for (int i = 0; i < ndim && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (used < len)
        snprintf(buf + used, len - used, ")");
    return buf;
}

/* The element count of a shape, or -1 when it exceeds what int64_t holds. Dimensions must be non-negative. */
static int64_t st_numel(const int64_t *shape, int ndim)
{
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == 0)
            return 0;
    }
    for (int i = 0; i < ndim; i++) {
        if (numel > INT64_MAX / shape[i])
            return -1;
        numel *= shape[i];
    }
    return numel;
}

/* F16 (1 sign, 5 exponent, 10 fraction bits) to the bits of the F32 of the same value. */
static uint32_t st_f16_to_f32_bits(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t frac = h & 0x3FF;
    if (exp == 0x1F) /* inf, or NaN with its payload kept */
        return sign | 0x7F800000u | frac << 13;
    if (exp != 0) /* normal: rebias 15 -> 127 */
        return sign | (exp + 112) << 23 | frac << 13;
    if (frac == 0)
        return sign;
    /* subnormal, frac * 2^-24: normalize, since every F16 subnormal is a normal F32 */
    uint32_t e = 113; /* the F32 exponent field of 2^-14 */
    while (!(frac & 0x400)) {
        frac <<= 1;
        e--;
    }
    return sign | e << 23 | (frac & 0x3FF) << 13;
}

/* BF16 is the upper half of an F32. */
static uint32_t st_bf16_to_f32_bits(uint16_t h) { return (uint32_t)h << 16; }

static void st_put_le64(unsigned char *b, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t st_get_le64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

static int st_cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int st_cmp_entry_name(const void *a, const void *b)
{
    return strcmp((*(const rm_st_entry *const *)a)->name, (*(const rm_st_entry *const *)b)->name);
}

/* ---- reading ------------------------------------------------------------------------------------------------- */

/* Where a tensor's bytes lie in the data buffer, for the coverage check and the copy. */
typedef struct st_span {
    int64_t begin, end;
    size_t index; /* into the entries */
    enum st_src src;
} st_span;

static int st_cmp_span(const void *a, const void *b)
{
    const st_span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static rm_status st_read_failed(rm_ctx *ctx, const char *path, FILE *fp)
{
    if (ferror(fp))
        return rm_fail(ctx, RM_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    return rm_fail(ctx, RM_ERR_IO, "%s: cannot read: the file ended early (did it change while being read?)", path);
}

/* Reads the header (NUL-terminated) and the data buffer (ST_ALIGN-aligned) of the file. */
static rm_status st_load(rm_ctx *ctx, const char *path, char **header, size_t *header_len, void **data,
                         size_t *data_len)
{
    *header = NULL;
    *data = NULL;
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, forever; it changes nothing for the
     * regular files read below. */
    const int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return rm_fail(ctx, RM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    const rm_status kind = fstat(fd, &st) != 0 ? rm_fail(ctx, RM_ERR_IO, "%s: cannot stat: %s", path, strerror(errno))
                           : S_ISDIR(st.st_mode)  ? rm_fail(ctx, RM_ERR_IO, "%s: a folder, not a regular file", path)
                           : !S_ISREG(st.st_mode) ? rm_fail(ctx, RM_ERR_IO, "%s: not a regular file", path)
                                                  : RM_OK;
    if (kind != RM_OK) {
        close(fd);
        return kind;
    }
    FILE *fp = fdopen(fd, "rb");
    if (!fp) {
        const rm_status s = rm_fail(ctx, RM_ERR_NOMEM, "%s: cannot open: %s", path, strerror(errno));
        close(fd);
        return s;
    }
    rm_status s = RM_OK;
    unsigned char len8[8];
    uint64_t size = (uint64_t)st.st_size;
    /* The file is read whole: one larger than this machine's memory could never be, and would be found out only by
     * an allocation failure (or the kernel's out-of-memory killer). */
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0 && size / (uint64_t)page > (uint64_t)pages) {
        s = rm_fail(ctx, RM_ERR_FORMAT, "%s: %llu bytes, more than the %llu bytes of this machine's memory", path,
                    (unsigned long long)size, (unsigned long long)pages * (unsigned long long)page);
        goto done;
    }
    if (size < 8) {
        s = rm_fail(ctx, RM_ERR_FORMAT, "%s: truncated: the file has %llu bytes, fewer than the 8 of the header length",
                    path, (unsigned long long)size);
        goto done;
    }
    if (fread(len8, 1, 8, fp) != 8) {
        s = st_read_failed(ctx, path, fp);
        goto done;
    }
    uint64_t n = st_get_le64(len8);
    if (n > size - 8) {
        s = rm_fail(ctx, RM_ERR_FORMAT, "%s: truncated: header says %llu bytes, file has %llu after the length", path,
                    (unsigned long long)n, (unsigned long long)(size - 8));
        goto done;
    }
    if (n > RM_ST_MAX_HEADER_BYTES) {
        s = rm_fail(ctx, RM_ERR_FORMAT, "%s: header length %llu exceeds the limit of %u bytes", path,
                    (unsigned long long)n, RM_ST_MAX_HEADER_BYTES);
        goto done;
    }
    uint64_t rest = size - 8 - n;
    if (rest > SIZE_MAX - ST_ALIGN) {
        s = rm_fail(ctx, RM_ERR_NOMEM, "%s: the data buffer of %llu bytes does not fit in memory", path,
                    (unsigned long long)rest);
        goto done;
    }
    *header = rm_malloc((size_t)n + 1);
    *data = st_aligned_alloc((size_t)rest);
    if (!*header || !*data) {
        s = rm_fail(ctx, RM_ERR_NOMEM, "%s: cannot allocate %llu bytes to read the file", path,
                    (unsigned long long)size);
        goto done;
    }
    if ((n && fread(*header, 1, (size_t)n, fp) != (size_t)n) || (rest && fread(*data, 1, (size_t)rest, fp) != rest)) {
        s = st_read_failed(ctx, path, fp);
        goto done;
    }
    (*header)[n] = '\0';
    *header_len = (size_t)n;
    *data_len = (size_t)rest;
done:
    if (fclose(fp) != 0 && s == RM_OK)
        s = rm_fail(ctx, RM_ERR_IO, "%s: cannot close: %s", path, strerror(errno));
    if (s != RM_OK) {
        rm_dealloc(*header);
        rm_dealloc(*data);
        *header = NULL;
        *data = NULL;
    }
    return s;
}

/* A JSON number that must be an integer in [0, 2^53 - 1]: NULL when it is, else what is wrong with it. */
static const char *st_get_uint(const cJSON *item, int64_t *v)
{
    if (!cJSON_IsNumber(item))
        return "is not a number";
    double d = item->valuedouble;
    if (d < 0)
        return "is negative";
    if (!(d <= (double)ST_MAX_INT))
        return "is too large (the limit is 2^53 - 1)";
    int64_t i = (int64_t)d;
    if ((double)i != d)
        return "is not an integer";
    *v = i;
    return NULL;
}

/* Checks one tensor's description and fills its entry (all but the name and the data) and its span. */
static rm_status st_parse_entry(rm_ctx *ctx, const char *path, const cJSON *item, size_t data_len, rm_st_entry *e,
                                st_span *span)
{
    const char *name = item->string;
    if (!cJSON_IsObject(item))
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: tensor '%s': the entry is not a JSON object", path, name);
    const cJSON *dtype = NULL, *shape = NULL, *offsets = NULL;
    for (const cJSON *field = item->child; field; field = field->next) {
        const cJSON **slot = strcmp(field->string, "dtype") == 0          ? &dtype
                             : strcmp(field->string, "shape") == 0        ? &shape
                             : strcmp(field->string, "data_offsets") == 0 ? &offsets
                                                                          : NULL;
        if (!slot)
            continue; /* other fields are ignored, as the reference implementation does */
        if (*slot)
            return rm_fail(ctx, RM_ERR_FORMAT, "%s: tensor '%s': \"%s\" appears twice", path, name, field->string);
        *slot = field;
    }

    if (!dtype)
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: tensor '%s': missing \"dtype\"", path, name);
    if (!cJSON_IsString(dtype))
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: tensor '%s': \"dtype\" is not a string", path, name);
    int src = -1;
    for (int k = 0; k < 4; k++)
        if (strcmp(dtype->valuestring, st_src_names[k]) == 0)
            src = k;
    if (src < 0)
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: tensor '%s': dtype '%s' is not supported (repmode reads F32, I64, F16 "
                       "and BF16)", path, name, dtype->valuestring);
    span->src = (enum st_src)src;
    e->dtype = src == ST_SRC_I64 ? RM_ST_I64 : RM_ST_F32;

    if (!shape)
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: tensor '%s': missing \"shape\"", path, name);
    if (!cJSON_IsArray(shape))
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: tensor '%s': \"shape\" is not an array", path, name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > RM_ST_MAX_DIMS)
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: tensor '%s': shape has %d dimensions, more than %d", path, name, ndim,
                       RM_ST_MAX_DIMS);
    e->ndim = ndim;
    int k = 0;
    for (const cJSON *dim = shape->child; dim; dim = dim->next, k++) {
        const char *bad = st_get_uint(dim, &e->shape[k]);
        if (bad && cJSON_IsNumber(dim))
            return rm_fail(ctx, RM_ERR_FORMAT, "%s: tensor '%s': shape dimension %d (%g) %s", path, name, k,
                           dim->valuedouble, bad);
        if (bad)
            return rm_fail(ctx, RM_ERR_FORMAT, "%s: tensor '%s': shape dimension %d %s", path, name, k, bad);
    }

    if (!offsets)
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: tensor '%s': missing \"data_offsets\"", path, name);
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2)
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" is not an array [begin, end]", path,
                       name);
    int64_t be[2];
    k = 0;
    for (const cJSON *o = offsets->child; o; o = o->next, k++) {
        const char *bad = st_get_uint(o, &be[k]);
        if (bad && cJSON_IsNumber(o))
            return rm_fail(ctx, RM_ERR_FORMAT, "%s: tensor '%s': data_offsets %s (%g) %s", path, name,
                           k ? "end" : "begin", o->valuedouble, bad);
        if (bad)
            return rm_fail(ctx, RM_ERR_FORMAT, "%s: tensor '%s': data_offsets %s %s", path, name, k ? "end" : "begin",
                           bad);
    }
    if (be[0] > be[1])
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] end before they begin", path,
                       name, (long long)be[0], (long long)be[1]);
    if ((uint64_t)be[1] > data_len)
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] are out of bounds: the data "
                       "buffer has %zu bytes", path, name, (long long)be[0], (long long)be[1], data_len);
    span->begin = be[0];
    span->end = be[1];

    char sbuf[256];
    int64_t numel = st_numel(e->shape, e->ndim);
    int64_t size = st_src_sizes[src];
    if (numel < 0 || numel > INT64_MAX / size)
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: tensor '%s': shape %s has too many elements", path, name,
                       st_shape_str(e->shape, e->ndim, sbuf, sizeof sbuf));
    if (be[1] - be[0] != numel * size)
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] hold %lld bytes, shape %s of %s "
                       "needs %lld", path, name, (long long)be[0], (long long)be[1], (long long)(be[1] - be[0]),
                       st_shape_str(e->shape, e->ndim, sbuf, sizeof sbuf), st_src_names[src],
                       (long long)(numel * size));
    return RM_OK;
}

/* The tensors, sorted by where they begin, must tile the data buffer exactly. */
static rm_status st_check_coverage(rm_ctx *ctx, const char *path, const st_span *spans, size_t n,
                                   const rm_st_entry *entries, size_t data_len)
{
    int64_t cursor = 0;
    const st_span *prev = NULL;
    for (size_t i = 0; i < n; i++) {
        const st_span *sp = &spans[i];
        if (sp->begin < cursor)
            return rm_fail(ctx, RM_ERR_FORMAT, "%s: tensors '%s' [%lld, %lld] and '%s' [%lld, %lld] overlap", path,
                           entries[prev->index].name, (long long)prev->begin, (long long)prev->end,
                           entries[sp->index].name, (long long)sp->begin, (long long)sp->end);
        if (sp->begin > cursor)
            return rm_fail(ctx, RM_ERR_FORMAT, "%s: gap in the data buffer: bytes [%lld, %lld) before tensor '%s' "
                           "belong to no tensor", path, (long long)cursor, (long long)sp->begin,
                           entries[sp->index].name);
        cursor = sp->end;
        prev = sp;
    }
    if ((uint64_t)cursor != data_len)
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: gap in the data buffer: bytes [%lld, %zu) at its end belong to no "
                       "tensor", path, (long long)cursor, data_len);
    return RM_OK;
}

/* Points the entries at their element data: in the buffer read from the file when every tensor is F32/I64 at an
 * aligned offset (*raw is then taken over), else in a new buffer the data is copied (and widened) into. */
static rm_status st_place_data(rm_ctx *ctx, const char *path, rm_st_file *f, const st_span *spans, void **raw)
{
    int in_place = 1;
    for (size_t i = 0; i < f->n; i++) {
        const st_span *sp = &spans[i];
        if (sp->src == ST_SRC_F16 || sp->src == ST_SRC_BF16 || sp->begin % st_src_sizes[sp->src] != 0)
            in_place = 0;
    }
    const unsigned char *src = *raw;
    if (in_place) {
        f->data = *raw;
        *raw = NULL;
        for (size_t i = 0; i < f->n; i++)
            f->entries[spans[i].index].data = (unsigned char *)f->data + spans[i].begin;
        return RM_OK;
    }

    /* Each tensor at a multiple of ST_ALIGN; the sizes are bounded by twice the file's, so nothing overflows. */
    size_t total = 0;
    for (size_t i = 0; i < f->n; i++) {
        rm_st_entry *e = &f->entries[spans[i].index];
        size_t bytes = (size_t)rm_st_numel(e) * (e->dtype == RM_ST_I64 ? 8 : 4);
        total += (bytes + ST_ALIGN - 1) / ST_ALIGN * ST_ALIGN;
    }
    unsigned char *dst = st_aligned_alloc(total);
    if (!dst)
        return rm_fail(ctx, RM_ERR_NOMEM, "%s: cannot allocate %zu bytes for the tensors", path, total);
    f->data = dst;
    size_t at = 0;
    for (size_t i = 0; i < f->n; i++) {
        const st_span *sp = &spans[i];
        rm_st_entry *e = &f->entries[sp->index];
        size_t numel = (size_t)rm_st_numel(e);
        const unsigned char *in = src + sp->begin;
        unsigned char *out = dst + at;
        e->data = out;
        if (sp->src == ST_SRC_F32 || sp->src == ST_SRC_I64) {
            if (numel)
                memcpy(out, in, (size_t)(sp->end - sp->begin));
        } else {
            for (size_t k = 0; k < numel; k++) {
                uint16_t h = (uint16_t)(in[2 * k] | in[2 * k + 1] << 8);
                uint32_t bits = sp->src == ST_SRC_F16 ? st_f16_to_f32_bits(h) : st_bf16_to_f32_bits(h);
                memcpy(out + 4 * k, &bits, 4);
            }
        }
        size_t bytes = numel * (e->dtype == RM_ST_I64 ? 8 : 4);
        at += (bytes + ST_ALIGN - 1) / ST_ALIGN * ST_ALIGN;
    }
    return RM_OK;
}

static char *st_stash(char **arena, const char *s)
{
    size_t len = strlen(s) + 1;
    char *copy = memcpy(*arena, s, len);
    *arena += len;
    return copy;
}

/* Everything after reading: the header's checks, then the entries and the metadata in memory. */
static rm_status st_parse(rm_ctx *ctx, const char *path, const char *header, size_t header_len, void **raw,
                          size_t data_len, rm_st_file **out)
{
    size_t at = 0;
    const char *bad = st_header_scan((const unsigned char *)header, header_len, &at);
    if (bad)
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: header %s at byte %zu", path, bad, at);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(header, header_len, &end, 0);
    if (!root && rm_json_parsable(header, header_len, 0))
        return rm_fail(ctx, RM_ERR_NOMEM, "%s: out of memory reading the header", path);
    if (!root)
        return rm_fail(ctx, RM_ERR_FORMAT, "%s: header is not valid JSON (error near byte %zu)", path,
                       end ? (size_t)(end - header) : (size_t)0);

    rm_status s = RM_OK;
    rm_st_file *f = NULL;
    st_span *spans = NULL;
    const char **keys = NULL;
    for (const char *p = end; p < header + header_len; p++) {
        if (!st_is_space(*p)) {
            s = rm_fail(ctx, RM_ERR_FORMAT, "%s: header has content after the JSON value at byte %zu", path,
                        (size_t)(p - header));
            goto done;
        }
    }
    if (!cJSON_IsObject(root)) {
        s = rm_fail(ctx, RM_ERR_FORMAT, "%s: header is not a JSON object", path);
        goto done;
    }

    /* Count, check the metadata, and size the string arena. */
    size_t n = 0, n_meta = 0, chars = 0;
    const cJSON *meta = NULL;
    for (const cJSON *it = root->child; it; it = it->next) {
        if (strcmp(it->string, "__metadata__") != 0) {
            if (it->string[0] == '\0') {
                s = rm_fail(ctx, RM_ERR_FORMAT, "%s: a tensor has an empty name", path);
                goto done;
            }
            n++;
            chars += strlen(it->string) + 1;
            continue;
        }
        if (meta) {
            s = rm_fail(ctx, RM_ERR_FORMAT, "%s: \"__metadata__\" appears twice", path);
            goto done;
        }
        meta = it;
        if (!cJSON_IsObject(meta)) {
            s = rm_fail(ctx, RM_ERR_FORMAT, "%s: \"__metadata__\" is not a JSON object", path);
            goto done;
        }
        for (const cJSON *kv = meta->child; kv; kv = kv->next) {
            if (!cJSON_IsString(kv)) {
                s = rm_fail(ctx, RM_ERR_FORMAT, "%s: metadata '%s' is not a string", path, kv->string);
                goto done;
            }
            n_meta++;
            chars += strlen(kv->string) + strlen(kv->valuestring) + 2;
        }
    }

    f = rm_calloc(1, sizeof *f);
    if (!f)
        goto nomem;
    f->entries = rm_calloc(n ? n : 1, sizeof *f->entries);
    f->by_name = rm_malloc((n ? n : 1) * sizeof *f->by_name);
    f->meta_keys = rm_malloc((n_meta ? n_meta : 1) * sizeof *f->meta_keys);
    f->meta_values = rm_malloc((n_meta ? n_meta : 1) * sizeof *f->meta_values);
    f->strings = rm_malloc(chars ? chars : 1);
    spans = rm_malloc((n ? n : 1) * sizeof *spans);
    keys = rm_malloc((n_meta ? n_meta : 1) * sizeof *keys);
    if (!f->entries || !f->by_name || !f->meta_keys || !f->meta_values || !f->strings || !spans || !keys)
        goto nomem;

    char *arena = f->strings;
    for (const cJSON *it = root->child; it; it = it->next) {
        if (it == meta)
            continue;
        rm_st_entry *e = &f->entries[f->n];
        spans[f->n].index = f->n;
        s = st_parse_entry(ctx, path, it, data_len, e, &spans[f->n]);
        if (s != RM_OK)
            goto done;
        e->name = st_stash(&arena, it->string);
        f->by_name[f->n] = e;
        f->n++;
    }
    for (const cJSON *kv = meta ? meta->child : NULL; kv; kv = kv->next) {
        f->meta_keys[f->n_meta] = st_stash(&arena, kv->string);
        f->meta_values[f->n_meta] = st_stash(&arena, kv->valuestring);
        keys[f->n_meta] = f->meta_keys[f->n_meta];
        f->n_meta++;
    }

    qsort(f->by_name, f->n, sizeof *f->by_name, st_cmp_entry_name);
    for (size_t i = 1; i < f->n; i++) {
        if (strcmp(f->by_name[i - 1]->name, f->by_name[i]->name) == 0) {
            s = rm_fail(ctx, RM_ERR_FORMAT, "%s: duplicate tensor name '%s'", path, f->by_name[i]->name);
            goto done;
        }
    }
    qsort(keys, f->n_meta, sizeof *keys, st_cmp_str_ptr);
    for (size_t i = 1; i < f->n_meta; i++) {
        if (strcmp(keys[i - 1], keys[i]) == 0) {
            s = rm_fail(ctx, RM_ERR_FORMAT, "%s: duplicate metadata key '%s'", path, keys[i]);
            goto done;
        }
    }

    qsort(spans, f->n, sizeof *spans, st_cmp_span);
    s = st_check_coverage(ctx, path, spans, f->n, f->entries, data_len);
    if (s == RM_OK)
        s = st_place_data(ctx, path, f, spans, raw);
    goto done;

nomem:
    s = rm_fail(ctx, RM_ERR_NOMEM, "%s: out of memory reading the header", path);
done:
    cJSON_Delete(root);
    rm_dealloc(spans);
    rm_dealloc(keys);
    if (s == RM_OK)
        *out = f;
    else
        rm_st_free(f);
    return s;
}

rm_status rm_st_read(rm_ctx *ctx, const char *path, rm_st_file **out)
{
    if (!out)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "rm_st_read: out is NULL");
    *out = NULL;
    if (!path)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "rm_st_read: path is NULL");
    char *header;
    void *raw;
    size_t header_len = 0, data_len = 0;
    RM_TRY(st_load(ctx, path, &header, &header_len, &raw, &data_len));
    rm_status s = st_parse(ctx, path, header, header_len, &raw, data_len, out);
    rm_dealloc(header);
    rm_dealloc(raw); /* NULL when the file kept it */
    return s;
}

size_t rm_st_count(const rm_st_file *f) { return f ? f->n : 0; }

const rm_st_entry *rm_st_at(const rm_st_file *f, size_t i) { return f && i < f->n ? &f->entries[i] : NULL; }

const rm_st_entry *rm_st_find(const rm_st_file *f, const char *name)
{
    if (!f || !name)
        return NULL;
    rm_st_entry key;
    key.name = name;
    const rm_st_entry *kp = &key;
    const rm_st_entry **hit = bsearch(&kp, f->by_name, f->n, sizeof *f->by_name, st_cmp_entry_name);
    return hit ? *hit : NULL;
}

size_t rm_st_metadata_count(const rm_st_file *f) { return f ? f->n_meta : 0; }

const char *rm_st_metadata_key(const rm_st_file *f, size_t i) { return f && i < f->n_meta ? f->meta_keys[i] : NULL; }

const char *rm_st_metadata(const rm_st_file *f, const char *key)
{
    if (!f || !key)
        return NULL;
    for (size_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0)
            return f->meta_values[i];
    return NULL;
}

int64_t rm_st_numel(const rm_st_entry *e)
{
    int64_t numel = 1;
    for (int i = 0; i < e->ndim; i++)
        numel *= e->shape[i];
    return numel;
}

void rm_st_free(rm_st_file *f)
{
    if (!f)
        return;
    rm_dealloc(f->entries);
    rm_dealloc(f->by_name);
    rm_dealloc(f->meta_keys);
    rm_dealloc(f->meta_values);
    rm_dealloc(f->strings);
    rm_dealloc(f->data);
    rm_dealloc(f);
}

/* ---- writing ------------------------------------------------------------------------------------------------- */

/* Checks the entries and the metadata; *data_bytes gets the size of the data buffer. */
static rm_status st_check_input(rm_ctx *ctx, const char *path, const rm_st_entry *entries, size_t n,
                                const char *const *meta_keys, const char *const *meta_values, size_t n_meta,
                                int64_t *data_bytes)
{
    if (n && !entries)
        return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: %zu entries but no entry array", path, n);
    if (n_meta && (!meta_keys || !meta_values))
        return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: %zu metadata pairs but no key or value array", path, n_meta);
    int64_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        const rm_st_entry *e = &entries[i];
        if (!e->name)
            return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: entry %zu has no name", path, i);
        if (!e->name[0])
            return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: entry %zu has an empty name", path, i);
        if (strcmp(e->name, "__metadata__") == 0)
            return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: entry %zu: the name \"__metadata__\" is reserved", path, i);
        if (!st_utf8_valid(e->name))
            return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: entry %zu: the name is not valid UTF-8", path, i);
        if (e->dtype != RM_ST_F32 && e->dtype != RM_ST_I64)
            return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: tensor '%s': unknown dtype %d", path, e->name, (int)e->dtype);
        if (e->ndim < 0 || e->ndim > RM_ST_MAX_DIMS)
            return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: tensor '%s': ndim %d is outside 0..%d", path, e->name, e->ndim,
                           RM_ST_MAX_DIMS);
        for (int k = 0; k < e->ndim; k++) {
            if (e->shape[k] < 0 || e->shape[k] > ST_MAX_INT)
                return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: tensor '%s': dimension %d is %lld, outside 0..2^53 - 1", path,
                               e->name, k, (long long)e->shape[k]);
        }
        int64_t numel = st_numel(e->shape, e->ndim);
        int64_t size = e->dtype == RM_ST_I64 ? 8 : 4;
        if (numel < 0 || numel > (ST_MAX_INT - offset) / size)
            return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: tensor '%s': too many elements for one file", path, e->name);
        if (numel > 0 && !e->data)
            return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: tensor '%s' has %lld elements but no data", path, e->name,
                           (long long)numel);
        offset += numel * size;
    }
    for (size_t i = 0; i < n_meta; i++) {
        if (!meta_keys[i] || !meta_values[i])
            return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: metadata pair %zu has no %s", path, i,
                           meta_keys[i] ? "value" : "key");
        if (!st_utf8_valid(meta_keys[i]) || !st_utf8_valid(meta_values[i]))
            return rm_fail(ctx, RM_ERR_ARGUMENT, "%s: metadata pair %zu is not valid UTF-8", path, i);
    }
    *data_bytes = offset;

    /* Duplicates, found by sorting the names. */
    size_t most = n > n_meta ? n : n_meta;
    const char **names = rm_malloc((most ? most : 1) * sizeof *names);
    if (!names)
        return rm_fail(ctx, RM_ERR_NOMEM, "%s: out of memory checking names", path);
    rm_status s = RM_OK;
    for (size_t i = 0; i < n; i++)
        names[i] = entries[i].name;
    qsort(names, n, sizeof *names, st_cmp_str_ptr);
    for (size_t i = 1; i < n && s == RM_OK; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            s = rm_fail(ctx, RM_ERR_ARGUMENT, "%s: duplicate tensor name '%s'", path, names[i]);
    for (size_t i = 0; i < n_meta; i++)
        names[i] = meta_keys[i];
    qsort(names, n_meta, sizeof *names, st_cmp_str_ptr);
    for (size_t i = 1; i < n_meta && s == RM_OK; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            s = rm_fail(ctx, RM_ERR_ARGUMENT, "%s: duplicate metadata key '%s'", path, names[i]);
    rm_dealloc(names);
    return s;
}

/* A JSON array of integers, printed exactly (as raw text rather than through cJSON's doubles). */
static cJSON *st_int_array(const int64_t *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) {
        char buf[24];
        snprintf(buf, sizeof buf, "%lld", (long long)v[i]);
        cJSON *x = cJSON_CreateRaw(buf);
        if (!x || !cJSON_AddItemToArray(a, x)) {
            cJSON_Delete(x);
            cJSON_Delete(a);
            a = NULL;
        }
    }
    return a;
}

/* The header JSON, "__metadata__" first, then the tensors in order, each {"dtype", "shape", "data_offsets"} (the
 * reference implementation's field order); NULL when out of memory. */
static char *st_header_json(const rm_st_entry *entries, size_t n, const char *const *meta_keys,
                            const char *const *meta_values, size_t n_meta)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    if (n_meta) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        if (!meta)
            goto fail;
        for (size_t i = 0; i < n_meta; i++)
            if (!cJSON_AddStringToObject(meta, meta_keys[i], meta_values[i]))
                goto fail;
    }
    int64_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        const rm_st_entry *e = &entries[i];
        int64_t bytes = rm_st_numel(e) * (e->dtype == RM_ST_I64 ? 8 : 4);
        int64_t be[2] = {offset, offset + bytes};
        offset += bytes;
        cJSON *item = cJSON_CreateObject();
        if (!item)
            goto fail;
        if (!cJSON_AddItemToObject(root, e->name, item)) {
            cJSON_Delete(item);
            goto fail;
        }
        cJSON *shape = st_int_array(e->shape, e->ndim);
        cJSON *offsets = NULL;
        if (!cJSON_AddStringToObject(item, "dtype", e->dtype == RM_ST_I64 ? "I64" : "F32") || !shape ||
            !cJSON_AddItemToObject(item, "shape", shape)) {
            cJSON_Delete(shape);
            goto fail;
        }
        offsets = st_int_array(be, 2);
        if (!offsets || !cJSON_AddItemToObject(item, "data_offsets", offsets)) {
            cJSON_Delete(offsets);
            goto fail;
        }
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return json;
fail:
    cJSON_Delete(root);
    return NULL;
}

/* Removes "<path>.tmp-<pid>-XXXXXX" files that writers killed outright (SIGKILL, a power cut) left next to `path`:
 * those whose process no longer exists. A live writer's file, this process's included, is left alone. */
static void st_remove_stale_temps(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    char dir[4096] = ".";
    if (slash) {
        const size_t dlen = slash == path ? 1 : (size_t)(slash - path); /* "/name": the root */
        if (dlen >= sizeof dir)
            return;
        memcpy(dir, path, dlen);
        dir[dlen] = '\0';
    }
    DIR *d = opendir(dir);
    if (!d)
        return;
    const size_t blen = strlen(base);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        const char *n = e->d_name;
        if (strncmp(n, base, blen) != 0 || strncmp(n + blen, ".tmp-", 5) != 0)
            continue;
        char *end = NULL;
        errno = 0;
        const long pid = strtol(n + blen + 5, &end, 10);
        if (errno || pid <= 0 || *end != '-' || strlen(end + 1) != 6)
            continue;
        if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
            char stale[4096 + 256];
            snprintf(stale, sizeof stale, "%s/%s", dir, n);
            unlink(stale);
        }
    }
    closedir(d);
}

/* Creates "<path>.tmp-<pid>-XXXXXX" exclusively, after removing the stale ones of dead processes. Unlike mkstemp
 * (mode 0600), the mode is 0666 less the umask, so the renamed file gets the permissions a plain fopen would give
 * it. `tmp` holds ST_TEMP_EXTRA bytes more than `path`. Returns the descriptor, or -1 with errno set. */
#define ST_TEMP_EXTRA 32
static int st_open_temp(char *tmp, const char *path, size_t plen)
{
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    st_remove_stale_temps(path);
    struct timespec ts = {0, 0};
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec * RM_GOLDEN ^ (uint64_t)ts.tv_sec ^
                 (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)tmp;
    const int head = snprintf(tmp, plen + ST_TEMP_EXTRA, "%s.tmp-%ld-", path, (long)getpid());
    for (int attempt = 0; attempt < 100; attempt++) {
        for (int k = 0; k < 6; k++)
            tmp[head + k] = digits[rm_splitmix64_next(&x) % 62];
        tmp[head + 6] = '\0';
        int fd = rm_open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    errno = EEXIST;
    return -1;
}

static rm_status st_write_file(rm_ctx *ctx, const char *path, const char *json, const rm_st_entry *entries,
                               size_t n)
{
    size_t plen = strlen(path);
    char *tmp = rm_malloc(plen + ST_TEMP_EXTRA);
    if (!tmp)
        return rm_fail(ctx, RM_ERR_NOMEM, "%s: out of memory", path);
    int fd = st_open_temp(tmp, path, plen);
    if (fd < 0) {
        rm_status s = rm_fail(ctx, RM_ERR_IO, "%s: cannot create %s: %s", path, tmp, strerror(errno));
        rm_dealloc(tmp);
        return s;
    }
    FILE *fp = rm_fdopen(fd, "wb");
    if (!fp) {
        rm_status s = rm_fail(ctx, RM_ERR_IO, "%s: cannot open %s: %s", path, tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        rm_dealloc(tmp);
        return s;
    }

    size_t jlen = strlen(json);
    size_t padded = (jlen + 7) / 8 * 8;
    unsigned char len8[8];
    st_put_le64(len8, padded);
    const char *what = "write";
    int ok = rm_fwrite(len8, 1, 8, fp) == 8 && rm_fwrite(json, 1, jlen, fp) == jlen &&
             rm_fwrite("       ", 1, padded - jlen, fp) == padded - jlen;
    for (size_t i = 0; ok && i < n; i++) {
        size_t bytes = (size_t)rm_st_numel(&entries[i]) * (entries[i].dtype == RM_ST_I64 ? 8 : 4);
        ok = bytes == 0 || rm_fwrite(entries[i].data, 1, bytes, fp) == bytes;
    }
    if (ok && rm_fflush(fp) != 0)
        ok = 0;
    if (ok && rm_fsync(fileno(fp)) != 0)
        ok = 0, what = "sync";
    int err = errno;
    if (rm_fclose(fp) != 0 && ok)
        ok = 0, what = "close", err = errno;
    if (ok && rm_rename(tmp, path) != 0)
        ok = 0, what = "rename", err = errno;
    rm_status s = RM_OK;
    if (!ok) {
        if (strcmp(what, "rename") == 0)
            s = rm_fail(ctx, RM_ERR_IO, "%s: cannot rename %s to it: %s", path, tmp, strerror(err));
        else
            s = rm_fail(ctx, RM_ERR_IO, "%s: cannot %s %s: %s", path, what, tmp, strerror(err));
        unlink(tmp);
    }
    rm_dealloc(tmp);
    return s;
}

rm_status rm_st_write(rm_ctx *ctx, const char *path, const rm_st_entry *entries, size_t n,
                      const char *const *meta_keys, const char *const *meta_values, size_t n_meta)
{
    if (!path || !path[0])
        return rm_fail(ctx, RM_ERR_ARGUMENT, "rm_st_write: no path");
    int64_t data_bytes = 0;
    RM_TRY(st_check_input(ctx, path, entries, n, meta_keys, meta_values, n_meta, &data_bytes));
    char *json = st_header_json(entries, n, meta_keys, meta_values, n_meta);
    if (!json)
        return rm_fail(ctx, RM_ERR_NOMEM, "%s: out of memory building the header", path);
    rm_status s = st_write_file(ctx, path, json, entries, n);
    cJSON_free(json);
    return s;
}
