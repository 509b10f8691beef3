/* Reference concatenation along C: every element of y is looked up in the input that holds its channel. */
#include "ops/ref/ref.h"

/* The input that holds channel c of the concatenation, and c's index inside it. */
static int find_part(const rm_dtensor *const *parts, int n, int64_t c, int64_t *local)
{
    for (int i = 0; i < n; i++) {
        if (c < parts[i]->ne[1]) {
            *local = c;
            return i;
        }
        c -= parts[i]->ne[1];
    }
    *local = c;
    return -1; /* past the last channel: the caller's shapes are wrong */
}

void rm_ref_concat_forward(const rm_dtensor *const *xs, int n, rm_dtensor *y)
{
    for (int64_t b = 0; b < y->ne[0]; b++)
        for (int64_t c = 0; c < y->ne[1]; c++) {
            int64_t lc = 0;
            const int i = find_part(xs, n, c, &lc);
            for (int64_t d = 0; d < y->ne[2]; d++)
                for (int64_t h = 0; h < y->ne[3]; h++)
                    for (int64_t w = 0; w < y->ne[4]; w++)
                        *rm_ref_at(y, b, c, d, h, w) = *rm_ref_at(xs[i], b, lc, d, h, w);
        }
}

/* An entry with NULL data is skipped; its shape still counts towards the offsets of those after it. */
void rm_ref_concat_backward(const rm_dtensor *dy, rm_dtensor *const *dxs, int n)
{
    for (int64_t b = 0; b < dy->ne[0]; b++)
        for (int64_t c = 0; c < dy->ne[1]; c++) {
            int64_t lc = 0;
            const int i = find_part((const rm_dtensor *const *)dxs, n, c, &lc);
            if (!dxs[i]->data)
                continue;
            for (int64_t d = 0; d < dy->ne[2]; d++)
                for (int64_t h = 0; h < dy->ne[3]; h++)
                    for (int64_t w = 0; w < dy->ne[4]; w++)
                        *rm_ref_at(dxs[i], b, lc, d, h, w) = *rm_ref_at(dy, b, c, d, h, w);
        }
}
