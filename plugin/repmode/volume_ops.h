// Volume helpers shared by the subcommands that predict and measure (eval, train): the model's normalization,
// size checks, the sliding-window read callback over a volume in memory, the 2D map of a 3D prediction, and the
// metrics of a task as JSON.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <cjson/cJSON.h>

#include "cli.h"
#include "image_io.h"

namespace repmode::cli {

// Normalizes a whole volume in place with `method` (repmode/normalize.h): z-score (official; a constant volume is
// only centred) or percentile clipping to [0, 1]. A Failure naming `path` when the core refuses the voxels.
void normalize(const Context &ctx, const rm_normalization &method, std::vector<float> &v, const std::string &path);

// Non-finite voxels (NaN, infinity; repmode/nonfinite.h). The policy named `name` ("refuse", "zero" or "mean"),
// or a Failure naming the three.
rm_nonfinite_policy non_finite_policy(const Context &ctx, const std::string &name);

// The value `policy` puts in place of the non-finite voxels `census` counted in `path`, a volume of `size` (Z, Y, X);
// a Failure naming `path`, their count and the first's (x, y, z), ending with `hint`, when the policy refuses them.
float non_finite_value(const Context &ctx, const rm_nonfinite_census &census, rm_nonfinite_policy policy,
                       const int64_t size[3], const std::string &path, const std::string &hint);

// The end of a refusal where the user may choose a policy.
inline const char *const kNonFiniteChoice = "; --non-finite zero or mean puts a value in their place";

// The non-finite voxels of a volume read whole, by the policy named `policy`: refused (non_finite_value) or
// replaced in place.
void settle_non_finite(const Context &ctx, Volume &v, const std::string &path, const std::string &policy,
                       const std::string &hint);

// "z-score" or "percentile p1-p99 clipped to [0, 1]", for messages.
std::string describe(const rm_normalization &method);

// A Failure naming both files and their sizes unless a and b have the same size.
void check_same_size(const Volume &a, const std::string &a_path, const Volume &b, const std::string &b_path);

// A Failure unless `label` (a target or a mask) fits `signal` for `task`: the signal's size for 3D labels; for a
// task with 2D labels (output_2d, docs/network.md §7) one layer of the signal's Y x X. The message names both files,
// their sizes and what the task wants.
void check_label_size(const Volume &signal, const std::string &signal_path, const Volume &label,
                      const std::string &label_path, const rm_task &task);

// The mean over depth of `v` (rm_depth_mean_forward): a one-layer volume with v's spacing, origin and direction, the
// 2D logit map of a 3D prediction for a task with 2D labels.
Volume depth_mean(const Context &ctx, const Volume &v);

// rm_read_fn over a Volume in memory: pass a `const Volume *` as the user pointer.
int read_volume_region(void *user, const int64_t start[3], const int64_t size[3], float *buf);

// The probability of a logit, as every binary task's output and metric takes it.
inline float probability(float logit)
{
    return static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(logit))));
}

// A number, or null when it is not finite (JSON has no NaN).
void add_number(cJSON *o, const char *name, double value);

// Adds "kind" and the metrics of the task's kind of `pred` against `target` (same size; `mask` NULL or the same
// size) to `o`: regression mse, mae, r2, pearson, voxels; binary f05, dice, precision, recall, auc, threshold,
// voxels (a binary task's `pred` holds logits, turned into probabilities in place, unless `probabilities` says it
// holds them already, as predict writes them). Returns the main metric: the MSE for regression tasks (lower is
// better), F0.5 for binary ones (higher is better).
double add_metrics(const Context &ctx, cJSON *o, const rm_task &task, Volume &pred, const Volume &target,
                   const Volume *mask, bool probabilities = false);

} // namespace repmode::cli
