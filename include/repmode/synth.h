/* Synthetic samples with ground truth, for training and testing without a downloadable dataset.
 *
 * Two generators, both pure computation into arrays the library allocates (release them with the matching free
 * function):
 * - rm_synth_cells: a 3D field of cells as a transmitted-light (bright-field) microscope sees it, with
 *   fluorescence-style targets for four structures (nuclei, membranes, nucleoli, mitochondria), one per task.
 * - rm_synth_scroll: a papyrus surface volume as in the Vesuvius Challenge fragments (layers × H × W, 16-bit CT
 *   intensities), a 2D ink label and a 2D fragment mask.
 *
 * rm_synth_cells_imaged makes the cells under other imaging conditions (contrast, noise, blur, cell density, an
 * illumination gradient): a shifted imaging domain, e.g. to test how a model trained on one generalizes.
 *
 * Volumes are contiguous and row-major over (D, H, W) (W fastest), 2D maps over (H, W), like a one-sample,
 * one-channel rm_tensor. The output depends only on the arguments (seed, size, imaging): the same arguments give
 * bit-identical arrays on any number of threads (every random number is a hash of the seed and a counter, never a
 * stream consumed in thread order). Different seeds give unrelated samples.
 *
 * Sizes: every dimension at least RM_SYNTH_MIN_SIZE and the voxel count at most RM_SYNTH_MAX_VOXELS; otherwise
 * RM_ERR_ARGUMENT with a message naming the size, and nothing is allocated. Objects keep a fixed size in voxels
 * (a cell is about 30 voxels across at the default density, a letter 15–20 pixels tall), so a larger volume holds
 * more of them.
 */
#ifndef REPMODE_SYNTH_H
#define REPMODE_SYNTH_H

#include "repmode/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RM_SYNTH_MIN_SIZE 8
/* 64 Mi voxels, e.g. 64 × 1024 × 1024. Making a sample takes about 24 bytes a voxel (cells: the signal, four targets
 * and a scratch volume, float32) or 10 (scroll: the 16-bit volume and two float32 scratch volumes). */
#define RM_SYNTH_MAX_VOXELS (INT64_C(1) << 26)

/* Defaults for `repmode synth` when --size is not given: (Z, Y, X). */
#define RM_SYNTH_CELLS_DEFAULT_D 32
#define RM_SYNTH_CELLS_DEFAULT_H 128
#define RM_SYNTH_CELLS_DEFAULT_W 128
#define RM_SYNTH_SCROLL_DEFAULT_LAYERS 32
#define RM_SYNTH_SCROLL_DEFAULT_H 256
#define RM_SYNTH_SCROLL_DEFAULT_W 256

/* ---- cells ---------------------------------------------------------------------------------------------------- */

#define RM_SYNTH_CELLS_TARGETS 4

/* Target order in rm_synth_cells_result. */
enum {
    RM_SYNTH_NUCLEI = 0,
    RM_SYNTH_MEMBRANES = 1,
    RM_SYNTH_NUCLEOLI = 2,
    RM_SYNTH_MITOCHONDRIA = 3,
};

typedef struct rm_synth_cells_result {
    int64_t d, h, w;
    double spacing[3]; /* voxel size (Z, Y, X) in micrometres: 0.29, 0.108, 0.108 as in the Allen Cell images */
    /* Bright-field intensity (d·h·w), raw camera counts around 1000 (not normalized): weak phase contrast (a defocus
     * term, the in-plane Laplacian of the optical density), slight absorption, out-of-focus blur stronger along Z
     * than in-plane, uneven illumination, and shot and read noise. */
    float *signal;
    int n_targets; /* RM_SYNTH_CELLS_TARGETS */
    /* "nuclei", "membranes", "nucleoli", "mitochondria" (static strings, the task names). */
    const char *target_names[RM_SYNTH_CELLS_TARGETS];
    /* Fluorescence images (d·h·w each) in [0, 1]: the structure blurred by a small point-spread function, with a
     * faint background (~0.02) and a little noise. */
    float *targets[RM_SYNTH_CELLS_TARGETS];
} rm_synth_cells_result;

/* A sample of d × h × w voxels. *out is set only on success; the result and its arrays are the caller's, freed
 * with rm_synth_cells_free. RM_ERR_ARGUMENT: out NULL, or a size as above. RM_ERR_NOMEM. */
RM_API rm_status rm_synth_cells(rm_ctx *ctx, uint64_t seed, int64_t d, int64_t h, int64_t w,
                                rm_synth_cells_result **out);

/* How the cells are imaged, relative to rm_synth_cells (rm_synth_cells_imaging_default: every factor 1,
 * illumination 0). `density` changes the cells, so the targets too; the other fields change only the signal: with
 * the same seed, size and density the targets are bit-identical whatever they are. */
typedef struct rm_synth_cells_imaging {
    /* Factor on the absorption and the phase contrast: on the signal's deviation from the light that falls on the
     * camera. In (0, 10]. */
    double contrast;
    /* Factor on the standard deviation of the shot and read noise. In [0, 10]; 0: noise-free. */
    double noise;
    /* Factor on the out-of-focus blur's standard deviations (1.5 Z steps, 1 voxel in-plane). In [0, 5] (the widest,
     * 7.5 Z steps, is still within the blur's reach of 24 voxels at 3 sigma); 0: in focus. */
    double blur;
    /* Factor on the number of cells per area (the cells are columns from the glass up: per volume too). In
     * [0.25, 4]. The colony stays confluent, so cells and nuclei are 1/√density as wide. */
    double density;
    /* Strength g of a linear illumination gradient: the light is multiplied by 1 + g·r, where r runs linearly from
     * -1 to 1 across the field (corner to corner, or edge to edge) along an in-plane direction drawn from the seed,
     * on top of the smooth uneven illumination (±6%) of rm_synth_cells. In [0, 1); 0: no gradient. */
    double illumination;
} rm_synth_cells_imaging;

/* Today's imaging: rm_synth_cells_imaged with it makes rm_synth_cells's sample, bit for bit. */
RM_API rm_synth_cells_imaging rm_synth_cells_imaging_default(void);
/* Checks every field (finite and in its range above); the message names the field. RM_ERR_ARGUMENT (imaging NULL
 * too) is the only failure. */
RM_API rm_status rm_synth_cells_imaging_validate(rm_ctx *ctx, const rm_synth_cells_imaging *imaging);
/* rm_synth_cells under the given imaging. RM_ERR_ARGUMENT as rm_synth_cells, or as rm_synth_cells_imaging_validate
 * (nothing is allocated). RM_ERR_NOMEM. */
RM_API rm_status rm_synth_cells_imaged(rm_ctx *ctx, uint64_t seed, int64_t d, int64_t h, int64_t w,
                                       const rm_synth_cells_imaging *imaging, rm_synth_cells_result **out);
/* Frees the result and its arrays; NULL is allowed. */
RM_API void rm_synth_cells_free(rm_synth_cells_result *result);

/* ---- scroll (papyrus surface volume) -------------------------------------------------------------------------- */

typedef struct rm_synth_scroll_result {
    int64_t layers, h, w;
    double spacing[3]; /* voxel size (Z, Y, X) in micrometres: 3.24 isotropic as in the scanned fragments */
    /* The surface volume (layers·h·w), 16-bit CT intensities: air about 9000, papyrus about 26000, white noise of
     * standard deviation noise_std. The recto surface (where the ink is) lies near the middle layer; the sheet
     * (recto fibres along X over verso fibres along Y) lies below it, air above and below. */
    uint16_t *volume;
    uint8_t *ink;  /* h·w, 1 where a stroke of ink is (only inside the fragment), else 0 */
    uint8_t *mask; /* h·w, 1 inside the fragment (one 4-connected region without holes), else 0 */
    double noise_std; /* standard deviation of the per-voxel noise, in intensity units */
    /* The ink layers, first .. last inclusive: those within one standard deviation of the ink's depth profile
     * (Gaussian, one layer) of the surface somewhere in the fragment. Ink changes the density there most; a window
     * of layers for training should include them. */
    int64_t ink_layer_first;
    int64_t ink_layer_last;
} rm_synth_scroll_result;

/* A surface volume of layers × h × w voxels with its (h, w) labels. *out is set only on success; the result and
 * its arrays are the caller's, freed with rm_synth_scroll_free. RM_ERR_ARGUMENT: out NULL, or a size as above.
 * RM_ERR_NOMEM. */
RM_API rm_status rm_synth_scroll(rm_ctx *ctx, uint64_t seed, int64_t layers, int64_t h, int64_t w,
                                 rm_synth_scroll_result **out);
/* Frees the result and its arrays; NULL is allowed. */
RM_API void rm_synth_scroll_free(rm_synth_scroll_result *result);

#ifdef __cplusplus
}
#endif

#endif /* REPMODE_SYNTH_H */
