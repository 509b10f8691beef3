/* Test-time augmentation: the 8 in-plane flips and rotations of a window. */
#include "predict/tta.h"

#include <string.h>

/* The voxel (y, x) of the untransformed plane (H, W) that transform k puts at (i, j). Each quarter turn maps b[i][j]
 * = a[j][h - 1 - i] for b of shape (h, w), a of shape (w, h); the turns are undone last first, then the flip. */
static void source_of(int k, int64_t height, int64_t width, int64_t i, int64_t j, int64_t *y, int64_t *x)
{
    const int turns = k % 4;
    int64_t h = turns % 2 ? width : height, w = turns % 2 ? height : width;
    for (int r = 0; r < turns; r++) {
        const int64_t ni = j, nj = h - 1 - i;
        const int64_t t = h;
        i = ni;
        j = nj;
        h = w;
        w = t;
    }
    *y = i;
    *x = k >= 4 ? width - 1 - j : j;
}

rm_status rm_tta_forward_window(rm_ctx *ctx, const rm_deploy *d, const rm_tensor *x, const int64_t origin[3],
                                rm_tensor *y, float *in, float *out)
{
    const int64_t depth = x->ne[2], height = x->ne[3], width = x->ne[4], channels = y->ne[1];
    const int64_t plane = height * width, volume = depth * plane;
    float *acc = y->data;
    memset(acc, 0, (size_t)(channels * volume) * sizeof *acc);
    for (int k = 0; k < RM_TTA_TRANSFORMS; k++) {
        const int64_t h = k % 2 ? width : height, w = k % 2 ? height : width;
        for (int64_t i = 0; i < h; i++)
            for (int64_t j = 0; j < w; j++) {
                int64_t sy, sx;
                source_of(k, height, width, i, j, &sy, &sx);
                for (int64_t z = 0; z < depth; z++)
                    in[(z * h + i) * w + j] = x->data[z * plane + sy * width + sx];
            }
        rm_tensor xt = rm_tensor_5d(in, 1, 1, depth, h, w);
        rm_tensor yt = rm_tensor_5d(out, 1, channels, depth, h, w);
        RM_TRY(rm_deploy_forward_window(ctx, d, &xt, origin, &yt));
        for (int64_t i = 0; i < h; i++)
            for (int64_t j = 0; j < w; j++) {
                int64_t sy, sx;
                source_of(k, height, width, i, j, &sy, &sx);
                for (int64_t c = 0; c < channels; c++)
                    for (int64_t z = 0; z < depth; z++)
                        acc[c * volume + z * plane + sy * width + sx] += out[(c * depth + z) * plane + i * w + j];
            }
    }
    for (int64_t n = 0; n < channels * volume; n++)
        acc[n] *= 1.0f / RM_TTA_TRANSFORMS;
    return RM_OK;
}
