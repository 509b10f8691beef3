/* The safetensors container (docs/model-file.md §1), read and written by the core: an internal module the model
 * code builds on.
 *
 *     8 bytes   N, the header length, unsigned 64-bit little-endian
 *     N bytes   UTF-8 JSON object: "<name>": {"dtype", "shape", "data_offsets": [begin, end]}, and "__metadata__"
 *     rest      the tensors' bytes, little-endian, row-major, at the given offsets into this data buffer
 *
 * Reading checks every rule of the format and refuses anything else with RM_ERR_FORMAT (RM_ERR_IO when the file
 * cannot be opened or read, RM_ERR_NOMEM when memory runs out) and a message naming the file, the problem and the
 * tensor. F32 and I64 tensors are kept; F16 and BF16 are widened to F32; other dtypes are refused. The returned
 * element data is aligned for its type (4 bytes for float, 8 for int64_t; the data is used where it lies in the
 * file when every tensor's offset allows that, else copied) and stays valid until rm_st_free.
 */
#ifndef REPMODE_SAFETENSORS_H
#define REPMODE_SAFETENSORS_H

#include "repmode/core.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The element type in memory after reading (F16 and BF16 in the file read as F32). */
typedef enum rm_st_dtype { RM_ST_F32 = 0, RM_ST_I64 = 1 } rm_st_dtype;

#define RM_ST_MAX_DIMS 8

/* The largest header length a reader accepts (as the reference implementation does). */
#define RM_ST_MAX_HEADER_BYTES 100000000u

typedef struct rm_st_entry {
    const char *name;
    rm_st_dtype dtype;
    int ndim; /* 0 for a scalar */
    int64_t shape[RM_ST_MAX_DIMS];
    const void *data; /* float or int64_t in host order, numel elements; never NULL in a read file */
} rm_st_entry;

/* A file read into memory: the entries in file order, the metadata in file order, the element data. */
typedef struct rm_st_file rm_st_file;

/* Reads and checks the whole file. On success *out owns everything (free it with rm_st_free); on failure *out is
 * NULL and the context's message says why. */
rm_status rm_st_read(rm_ctx *ctx, const char *path, rm_st_file **out);

size_t rm_st_count(const rm_st_file *f);
/* The i-th tensor in file order, or NULL when i is out of range. */
const rm_st_entry *rm_st_at(const rm_st_file *f, size_t i);
/* The tensor with this name, or NULL when absent. */
const rm_st_entry *rm_st_find(const rm_st_file *f, const char *name);

size_t rm_st_metadata_count(const rm_st_file *f);
/* The i-th metadata key in file order, or NULL when i is out of range. */
const char *rm_st_metadata_key(const rm_st_file *f, size_t i);
/* The metadata value of this key, or NULL when absent. */
const char *rm_st_metadata(const rm_st_file *f, const char *key);

/* The element count: the product of the shape, 1 for a scalar. */
int64_t rm_st_numel(const rm_st_entry *e);

void rm_st_free(rm_st_file *f);

/* Writes the entries in the given order, with the metadata (n_meta key/value string pairs, may be 0; none means
 * no "__metadata__") first in the header. Data offsets are contiguous in entry order; the header is padded with
 * spaces to a multiple of 8 bytes, as the reference implementation does. Reading a file this wrote and writing
 * it again gives identical bytes. Bad input (NULL or empty or duplicate names, ndim outside 0..RM_ST_MAX_DIMS,
 * negative or oversized dimensions, NULL data with elements, duplicate metadata keys, strings that are not UTF-8)
 * is RM_ERR_ARGUMENT. The file is written to "<path>.tmp-XXXXXX" in the same folder and renamed over path, so a
 * failure never leaves a partial file at path (nor the temporary file). */
rm_status rm_st_write(rm_ctx *ctx, const char *path, const rm_st_entry *entries, size_t n,
                      const char *const *meta_keys, const char *const *meta_values, size_t n_meta);

#ifdef __cplusplus
}
#endif

#endif /* REPMODE_SAFETENSORS_H */
