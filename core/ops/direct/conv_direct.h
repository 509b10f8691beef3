/* The direct convolution: stride 1, register-blocked FMA kernels over a blocked channel layout, AVX-512 or AVX2.
 *
 * Layouts (all float32):
 * - input planes, blocked and zero-padded: [cib][Hp][Wp][L] for each input plane, L input channels per block
 *   (16, or the channel count when it is below 16), Hp = Ho + k - 1 and Wp = Wo + k - 1 with the zeros of the
 *   padding stored, so the kernels have no boundary tests in height and width;
 * - packed weights: [og][cib][a][b][c][L][gw]: groups og of RM_DIRECT_GROUP output channels (the last group gw =
 *   16 or 32 wide: the output channels rounded up to 16, zero-filled), so one tap of one input channel is a
 *   contiguous row of output-channel vectors, and the weights one call reads (one group) are one contiguous run
 *   that the hardware prefetcher follows (rows of all 512 channels of a deep layer would be 2 KB apart with the
 *   call reading 128 bytes of each).
 *
 * Every output element starts at its bias and adds, in this order, input channel blocks, depth taps, height taps,
 * then the channels of the block and the width taps (for kernels 5 wide each channel's five width taps in turn, for
 * other kernels each width tap's channels), one fused multiply-add each. The AVX-512 and AVX2 kernels follow the
 * same order (AVX2 holds a block of 16 output channels in two registers), so both paths give the same bits, on any
 * number of threads. The one-input-channel kernel (vectors over positions) adds the same products in the same order.
 * The few-output-channels kernel adds the same products per input lane, then the 16 lanes in one fixed order, then
 * the bias.
 */
#ifndef REPMODE_CONV_DIRECT_H
#define REPMODE_CONV_DIRECT_H

#include "ops/activation_apply.h"
#include "ops/conv_engine.h"

/* The kernels are built for x86-64 with GCC or Clang (their vector extensions and function targets). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define RM_HAVE_DIRECT 1
#else
#define RM_HAVE_DIRECT 0
#endif

/* The largest kernel the direct convolution takes (the public limit, RM_CONV_MAX_KERNEL in conv.c). */
#define RM_DIRECT_MAX_K 7

/* Output channels per group of the packed weights: the most one call computes on any instruction set. */
#define RM_DIRECT_GROUP 32

/* What one call of a row kernel computes: `rw` consecutive output positions of one output row, for `nb` blocks of 16
 * output channels starting at block `cob`, from some input channel blocks of the padded input planes of the row's
 * depth taps. Deep layers split their input channels into several calls (so that a call's weights stay in the L2
 * cache over a whole plane), which carry their sums in `part`: float to float, the same sums as one call. */
typedef struct rm_direct_row {
    const float *planes[RM_DIRECT_MAX_K]; /* depth tap a's padded input plane at the call's first input block and
                                           * the row's first position, or NULL */
    const float *w; /* packed weights of the group of output block cob from the call's first input block:
                     * [cib][a][b][c][L][gw] */
    const float *bias;                    /* the bias of output block cob's channels, or NULL for zeros */
    float *out;                           /* output channel cob·16's first position; positions are consecutive */
    int64_t out_stride;                   /* floats between two channels of `out` */
    int64_t nco;                          /* channels of the blocks that exist (≤ nb·16): only these are stored */
    int64_t cib_stride;                   /* floats between input channel blocks of a padded plane: Hp·Wp·L */
    int64_t row_stride;                   /* floats between rows of a padded plane: Wp·L */
    int64_t ncib, gw;                     /* input channel blocks; the group's width */
    float *part;                          /* partial sums between blocks of input channels: [rw][32] */
    const rm_conv_act *act;               /* applied to the outputs as they are stored (with `last`), or NULL */
    int first, last;                      /* start from the bias (else from part); end in out (else in part) */
    int k, kd, lanes, cob, nb, rw;        /* kernel: k² in-plane, kd deep; L; first output block, blocks, positions */
    int b0, b1;                           /* the height taps [b0, b1) that meet input rows (the rest read zeros) */
} rm_direct_row;

/* The kernels (row_kernel.inc, built once per instruction set): nb from 1 to RM_DIRECT_*_NB, and rw from 1 to
 * RM_DIRECT_*_RW1 for one block or RM_DIRECT_*_RW2 for two, so that the accumulators fill most of the registers
 * (32 zmm, 16 ymm) and hide the FMA latency. Measured here: 16 positions of one block beat 24 (which spills). */
enum {
    RM_DIRECT_AVX512_NB = 2,
    RM_DIRECT_AVX512_RW1 = 16,
    RM_DIRECT_AVX512_RW2 = 12,
    RM_DIRECT_AVX2_NB = 1,
    RM_DIRECT_AVX2_RW1 = 6
};
/* 5-tap kernels (the network's) keep the 5 width taps' weights in registers. Measured here over whole planes (a
 * call per tile, as a layer walks them): one block, 22 positions match 16-20 and 24 spills; two blocks, 9 positions
 * (29 registers) beat 10 by 13-16%: at 10, GCC spills accumulators to the stack inside the loop. */
enum { RM_DIRECT_AVX512_RW5_1 = 22, RM_DIRECT_AVX512_RW5_2 = 9, RM_DIRECT_AVX2_RW5_1 = 10 };
/* The one-input-channel kernels (pos_kernel.inc) take the same calls, with vectors over positions: up to this many
 * positions of one row per call. */
enum { RM_DIRECT_AVX512_POS_RW = 96, RM_DIRECT_AVX2_POS_RW = 16 };
/* The weight gradient's kernel: some output rows' contribution to the running sums of k width taps of `O` output
 * channels for one block of 16 input channels, at one depth and height tap; O is at most
 * rm_direct_wgrad_channels(isa, k), fewer when the layer has fewer output channels. */
#define RM_DIRECT_MAX_O 8
typedef struct rm_direct_wgrad_row {
    const float *x;                   /* the first row's padded, blocked input row read at position 0: [Wp][L] */
    const float *dy[RM_DIRECT_MAX_O]; /* each output channel's first row of dy (zeros for missing ones) */
    float *acc; /* [O][k][16] running sums: acc[o][c][l] += Σ_row Σ_p x[p + c][l]·dy[o][p]; with one input
                 * channel (the one-input-channel kernel), acc[o][c][l] += Σ_row Σ_{p mod 16 = l} x[p + c]·dy[o][p] */
    int64_t wo, rows;                 /* positions of a row; consecutive rows (short rows go several per call) */
    int64_t x_rows, dy_rows;          /* floats between consecutive rows of x and of dy */
    int k, o;                         /* kernel size; output channels, 1 to rm_direct_wgrad_channels(isa, k) */
    /* For a layer of one output channel (o = 1 on every instruction set), whose k sums alone would each wait on the
     * last FMA's latency: each call adds its even and its odd positions in two sets of sums, then adds those, as
     * (running + even) + odd. The one-input-channel kernel ignores it. */
    int split;
} rm_direct_wgrad_row;

/* Output channels per weight-gradient call: as many as keep O·k accumulators of 16 channels in registers. */
static inline int rm_direct_wgrad_channels(rm_isa isa, int k)
{
    const int registers = isa >= RM_ISA_AVX512 ? 24 : 12, per_channel = k * (isa >= RM_ISA_AVX512 ? 1 : 2);
    const int o = registers / per_channel;
    return o < 1 ? 1 : o > RM_DIRECT_MAX_O ? RM_DIRECT_MAX_O : o;
}

/* The few-output-channels kernel (reduce_kernel.inc): for one output channel of a kd×5×5 kernel over blocks of 16
 * input lanes, `rw` consecutive positions of one output row, each as 16 lane sums (lane l adds the products of input
 * channels l, l + 16, ... in the forward's order); the caller adds the lanes. */
typedef struct rm_direct_reduce_row {
    const float *planes[RM_DIRECT_MAX_K]; /* depth tap a's padded input plane at the row's first position, or NULL */
    const float *w;                       /* the output channel's weights, [cib][a][b][c][16] */
    float *lane_sums;                     /* [rw][16], out */
    int64_t cib_stride, row_stride, ncib; /* as rm_direct_row's; input channel blocks */
    int kd, rw, b0, b1;                   /* depth taps; positions; the height taps that meet input rows */
} rm_direct_reduce_row;
enum { RM_DIRECT_AVX512_REDUCE_RW = 24, RM_DIRECT_AVX2_REDUCE_RW = 10 };

/* dst[x·stride + l] = rows[l][x] for x < n (stride may be negative): 16 channel rows into n vectors of 16 lanes (the
 * input planes' conversion, the weights' packing), through 16×16 register transposes. */
#if RM_HAVE_DIRECT
void rm_direct_interleave16_avx512(const float *const rows[16], int64_t n, int64_t stride, float *dst);
/* Its inverse, for vectors anywhere: rows[l][x] = vecs[x][l] for x < n (the weight gradient's sums into dw). */
void rm_direct_deinterleave16_avx512(const float *const vecs[], int64_t n, float *const rows[16]);
void rm_direct_row_avx512(const rm_direct_row *r);
void rm_direct_row_avx2(const rm_direct_row *r);
void rm_direct_pos_row_avx512(const rm_direct_row *r);
void rm_direct_pos_row_avx2(const rm_direct_row *r);
void rm_direct_wgrad_row_avx512(const rm_direct_wgrad_row *r);
void rm_direct_wgrad_row_avx2(const rm_direct_wgrad_row *r);
void rm_direct_pos_wgrad_row_avx512(const rm_direct_wgrad_row *r);
void rm_direct_pos_wgrad_row_avx2(const rm_direct_wgrad_row *r);
void rm_direct_reduce_row_avx512(const rm_direct_reduce_row *r);
void rm_direct_reduce_row_avx2(const rm_direct_reduce_row *r);
#endif

/* Whether the direct convolution computes g's forward (and, with g transposed, its data gradient), and whether it
 * computes g's weight gradient, on this context (its instruction set, the shape). */
int rm_conv_direct_suits(const rm_ctx *ctx, const rm_conv_geom *g);
int rm_conv_direct_suits_reduce(const rm_ctx *ctx, const rm_conv_geom *g);
int rm_conv_direct_suits_weight(const rm_ctx *ctx, const rm_conv_geom *g);
/* y = conv(x, w) + b, b may be NULL; `mirrored`: w is stored as the adjoint's (ci, co, k, k, k) with its taps
 * reversed, as the data gradient's convolution has it. */
rm_status rm_conv_direct_forward(rm_ctx *ctx, const rm_conv_geom *g, const float *x, const float *w, int mirrored,
                                 const float *b, float *y);
/* The same for 1 to 15 output channels of a kd×5×5 kernel over at least 16 input channels (the network's last layer),
 * where rm_conv_direct_suits does not hold: the weights are packed per call (they are few). */
rm_status rm_conv_direct_forward_reduce(rm_ctx *ctx, const rm_conv_geom *g, const float *x, const float *w,
                                        int mirrored, const float *b, float *y);
/* The packed layout of g's weights (co, ci, kd, k, k), for a caller that keeps them packed (a deploy form): its float
 * count, packing, unpacking, and the forward on them. */
int64_t rm_conv_direct_packed_numel(const rm_conv_geom *g);
void rm_conv_direct_pack(const rm_conv_geom *g, int nth, const float *w, float *packed);
void rm_conv_direct_unpack(const rm_conv_geom *g, int nth, const float *packed, float *w);
rm_status rm_conv_direct_forward_packed(rm_ctx *ctx, const rm_conv_geom *g, const float *x, const float *packed,
                                        const float *b, const rm_conv_act *act, float *y);
/* dw = the gradient of conv(x, w) with respect to w, given dy (overwritten). */
rm_status rm_conv_direct_backward_weight(rm_ctx *ctx, const rm_conv_geom *g, const float *x, const float *dy,
                                         float *dw);

/* Tiling convolutions t (kernel = stride along every axis, no padding, the windows inside the input: the network's
 * 2³ stride-2 down-sampling; its transposed up-sampling runs them with the roles of forward and data gradient
 * swapped): the 1³ convolution of the input space-to-depth, on the same kernels. Whether they suit pass 0 (the
 * forward: at least 16 output channels) or 1 (the data gradient: at least 16 space-to-depth channels, ci·kd·k²).
 * Their weight gradient stays on im2col and SGEMM: the 1³ weight-gradient kernel over space-to-depth planes measured
 * 0.8-1.0× of it on the network's shapes. */
int rm_conv_direct_suits_tiling(const rm_ctx *ctx, const rm_conv_geom *t, int pass);
rm_status rm_conv_direct_tiling_forward(rm_ctx *ctx, const rm_conv_geom *t, const float *x, const float *w,
                                        const float *b, float *y);
rm_status rm_conv_direct_tiling_backward_data(rm_ctx *ctx, const rm_conv_geom *t, const float *w, const float *dy,
                                              float *dx);

#endif /* REPMODE_CONV_DIRECT_H */
