/* The intensity augmentations of one training sample (docs/network.md §5.4): pure functions of the sample's input,
 * the map of its voxels that lie inside the volume, and what was drawn for it. */
#ifndef REPMODE_AUGMENT_H
#define REPMODE_AUGMENT_H

#include <stdint.h>

#include "repmode/trainer.h"

/* The official code's augmentation: random flips along each axis. The "official" recipe, the trainer's official
 * options and a configuration without "augment" all take it from here. */
rm_augment rm_augment_official(void);

/* Blur, gamma, contrast, illumination and brightness of d, in that order, on the voxels of x (a Z × Y × X patch)
 * whose `inside` byte is 1; the others are left as they are. scratch holds 3·Y·X floats. */
void rm_augment_intensity(const rm_augment_draw *d, const int64_t patch[3], const uint8_t *inside, float *x,
                          float *scratch);

#endif /* REPMODE_AUGMENT_H */
