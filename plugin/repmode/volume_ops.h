// Volume helpers shared by the subcommands that predict and measure (eval, train): the official normalization,
// size checks, the sliding-window read callback over a volume in memory, and the metrics of a task as JSON.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <cjson/cJSON.h>

#include "cli.h"
#include "image_io.h"

namespace repmode::cli {

// Official normalization: (x - mean) / std over the whole volume (population std, in double). A constant volume is
// only centred (std taken as 1).
void zscore(std::vector<float> &v);

// A Failure naming both files and their sizes unless a and b have the same size.
void check_same_size(const Volume &a, const std::string &a_path, const Volume &b, const std::string &b_path);

// rm_read_fn over a Volume in memory: pass a `const Volume *` as the user pointer.
int read_volume_region(void *user, const int64_t start[3], const int64_t size[3], float *buf);

// A number, or null when it is not finite (JSON has no NaN).
void add_number(cJSON *o, const char *name, double value);

// Adds "kind" and the metrics of the task's kind of `pred` against `target` (same size; `mask` NULL or the same
// size) to `o`: regression mse, mae, r2, pearson, voxels; binary f05, dice, precision, recall, auc, threshold,
// voxels (pred holds logits and is turned into probabilities in place). Returns the main metric: the MSE for
// regression tasks (lower is better), F0.5 for binary ones (higher is better).
double add_metrics(const Context &ctx, cJSON *o, const rm_task &task, Volume &pred, const Volume &target,
                   const Volume *mask);

} // namespace repmode::cli
