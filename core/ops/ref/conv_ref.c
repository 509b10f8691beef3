/* Reference convolution and transposed convolution: the defining sums, one output (or input) element at a time. */
#include "ops/ref/ref.h"

#include <string.h>

/* The kernel's depth: a planar kernel spans one plane. */
static int ref_depth(const rm_conv3d_params *p)
{
    return p->planar ? 1 : p->kernel;
}

/* The stride along spatial axis `axis` (0 depth). */
static int64_t ref_stride(const rm_conv3d_params *p, int axis)
{
    return axis == 0 && p->planar ? 1 : p->stride;
}

/* Input index along spatial axis `axis` (0 depth) that kernel tap `a` of output position `o` reads, or -1 outside
 * the input. A planar kernel has no depth padding. */
static int64_t ref_tap(int64_t o, int a, const rm_conv3d_params *p, int axis, int64_t len)
{
    const int64_t pad = axis == 0 && p->planar ? 0 : p->pad_before;
    const int64_t i = o * ref_stride(p, axis) + a - pad;
    return (i >= 0 && i < len) ? i : -1;
}

void rm_ref_conv3d_forward(const rm_conv3d_params *p, const rm_dtensor *x, const rm_dtensor *w, const double *b,
                           rm_dtensor *y)
{
    const int k = p->kernel;
    for (int64_t n = 0; n < y->ne[0]; n++)
    for (int64_t o = 0; o < y->ne[1]; o++)
    for (int64_t z = 0; z < y->ne[2]; z++)
    for (int64_t r = 0; r < y->ne[3]; r++)
    for (int64_t c = 0; c < y->ne[4]; c++) {
        double acc = b ? b[o] : 0.0;
        for (int64_t i = 0; i < x->ne[1]; i++)
        for (int a = 0; a < ref_depth(p); a++)
        for (int bb = 0; bb < k; bb++)
        for (int cc = 0; cc < k; cc++) {
            int64_t iz = ref_tap(z, a, p, 0, x->ne[2]), iy = ref_tap(r, bb, p, 1, x->ne[3]),
                    ix = ref_tap(c, cc, p, 2, x->ne[4]);
            if (iz < 0 || iy < 0 || ix < 0)
                continue;
            acc += *rm_ref_at(w, o, i, a, bb, cc) * *rm_ref_at(x, n, i, iz, iy, ix);
        }
        *rm_ref_at(y, n, o, z, r, c) = acc;
    }
}

void rm_ref_conv3d_backward(const rm_conv3d_params *p, const rm_dtensor *x, const rm_dtensor *w,
                            const rm_dtensor *dy, rm_dtensor *dx, rm_dtensor *dw, double *db)
{
    const int k = p->kernel;
    if (dx)
        memset(dx->data, 0, sizeof(double) * (size_t)rm_ref_numel(dx));
    if (dw)
        memset(dw->data, 0, sizeof(double) * (size_t)rm_ref_numel(dw));
    if (db)
        memset(db, 0, sizeof(double) * (size_t)dy->ne[1]);
    /* Each output element's gradient flows back along exactly the products that formed it. */
    for (int64_t n = 0; n < dy->ne[0]; n++)
    for (int64_t o = 0; o < dy->ne[1]; o++)
    for (int64_t z = 0; z < dy->ne[2]; z++)
    for (int64_t r = 0; r < dy->ne[3]; r++)
    for (int64_t c = 0; c < dy->ne[4]; c++) {
        const double g = *rm_ref_at(dy, n, o, z, r, c);
        if (db)
            db[o] += g;
        for (int64_t i = 0; i < x->ne[1]; i++)
        for (int a = 0; a < ref_depth(p); a++)
        for (int bb = 0; bb < k; bb++)
        for (int cc = 0; cc < k; cc++) {
            int64_t iz = ref_tap(z, a, p, 0, x->ne[2]), iy = ref_tap(r, bb, p, 1, x->ne[3]),
                    ix = ref_tap(c, cc, p, 2, x->ne[4]);
            if (iz < 0 || iy < 0 || ix < 0)
                continue;
            if (dx)
                *rm_ref_at(dx, n, i, iz, iy, ix) += g * *rm_ref_at(w, o, i, a, bb, cc);
            if (dw)
                *rm_ref_at(dw, o, i, a, bb, cc) += g * *rm_ref_at(x, n, i, iz, iy, ix);
        }
    }
}

void rm_ref_conv_transpose3d_forward(const rm_conv3d_params *p, const rm_dtensor *x, const rm_dtensor *w,
                                     const double *b, rm_dtensor *y)
{
    const int k = p->kernel, s = p->stride;
    for (int64_t n = 0; n < y->ne[0]; n++)
    for (int64_t o = 0; o < y->ne[1]; o++)
    for (int64_t v = 0; v < y->ne[2] * y->ne[3] * y->ne[4]; v++)
        y->data[(n * y->ne[1] + o) * y->ne[2] * y->ne[3] * y->ne[4] + v] = b ? b[o] : 0.0;
    /* Every input element scatters its kernel-weighted copy into the output. */
    for (int64_t n = 0; n < x->ne[0]; n++)
    for (int64_t i = 0; i < x->ne[1]; i++)
    for (int64_t z = 0; z < x->ne[2]; z++)
    for (int64_t r = 0; r < x->ne[3]; r++)
    for (int64_t c = 0; c < x->ne[4]; c++)
    for (int64_t o = 0; o < y->ne[1]; o++)
    for (int a = 0; a < ref_depth(p); a++)
    for (int bb = 0; bb < k; bb++)
    for (int cc = 0; cc < k; cc++)
        *rm_ref_at(y, n, o, z * ref_stride(p, 0) + a, r * s + bb, c * s + cc) +=
            *rm_ref_at(x, n, i, z, r, c) * *rm_ref_at(w, i, o, a, bb, cc);
}

void rm_ref_conv_transpose3d_backward(const rm_conv3d_params *p, const rm_dtensor *x, const rm_dtensor *w,
                                      const rm_dtensor *dy, rm_dtensor *dx, rm_dtensor *dw, double *db)
{
    const int k = p->kernel, s = p->stride;
    if (dw)
        memset(dw->data, 0, sizeof(double) * (size_t)rm_ref_numel(dw));
    if (db) {
        memset(db, 0, sizeof(double) * (size_t)dy->ne[1]);
        for (int64_t n = 0; n < dy->ne[0]; n++)
        for (int64_t o = 0; o < dy->ne[1]; o++)
        for (int64_t z = 0; z < dy->ne[2]; z++)
        for (int64_t r = 0; r < dy->ne[3]; r++)
        for (int64_t c = 0; c < dy->ne[4]; c++)
            db[o] += *rm_ref_at(dy, n, o, z, r, c);
    }
    for (int64_t n = 0; n < x->ne[0]; n++)
    for (int64_t i = 0; i < x->ne[1]; i++)
    for (int64_t z = 0; z < x->ne[2]; z++)
    for (int64_t r = 0; r < x->ne[3]; r++)
    for (int64_t c = 0; c < x->ne[4]; c++) {
        double acc = 0.0;
        for (int64_t o = 0; o < dy->ne[1]; o++)
        for (int a = 0; a < ref_depth(p); a++)
        for (int bb = 0; bb < k; bb++)
        for (int cc = 0; cc < k; cc++) {
            const double g = *rm_ref_at(dy, n, o, z * ref_stride(p, 0) + a, r * s + bb, c * s + cc);
            acc += g * *rm_ref_at(w, i, o, a, bb, cc);
            if (dw)
                *rm_ref_at(dw, i, o, a, bb, cc) += g * *rm_ref_at(x, n, i, z, r, c);
        }
        if (dx)
            *rm_ref_at(dx, n, i, z, r, c) = acc;
    }
}
