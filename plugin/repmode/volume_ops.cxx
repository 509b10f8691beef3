#include "volume_ops.h"

#include <cmath>
#include <cstring>
#include <sstream>

namespace repmode::cli {

void normalize(const Context &ctx, const rm_normalization &method, std::vector<float> &v, const std::string &path)
{
    rm_norm_params p;
    if (rm_normalization_compute(ctx, &method, v.data(), static_cast<int64_t>(v.size()), &p) != RM_OK)
        throw Failure(path + ": " + rm_ctx_error(ctx), kBadInput);
    rm_normalize(&p, v.data(), v.data(), static_cast<int64_t>(v.size()));
}

rm_nonfinite_policy non_finite_policy(const Context &ctx, const std::string &name)
{
    rm_nonfinite_policy policy;
    if (rm_nonfinite_policy_parse(ctx, name.c_str(), &policy) != RM_OK)
        throw Failure(rm_ctx_error(ctx), kBadInput);
    return policy;
}

float non_finite_value(const Context &ctx, const rm_nonfinite_census &census, rm_nonfinite_policy policy,
                       const int64_t size[3], const std::string &path, const std::string &hint)
{
    float value = 0.0f;
    if (rm_nonfinite_resolve(ctx, &census, policy, size, &value) != RM_OK)
        throw Failure(path + ": " + rm_ctx_error(ctx) + hint, kBadInput);
    return value;
}

void settle_non_finite(const Context &ctx, Volume &v, const std::string &path, const std::string &policy,
                       const std::string &hint)
{
    const rm_nonfinite_policy chosen = non_finite_policy(ctx, policy);
    rm_nonfinite_census census = rm_nonfinite_census_init();
    const int64_t n = static_cast<int64_t>(v.voxels.size());
    rm_nonfinite_census_add(&census, v.voxels.data(), n);
    rm_nonfinite_replace(v.voxels.data(), n, non_finite_value(ctx, census, chosen, v.size.data(), path, hint));
}

std::string describe(const rm_normalization &method)
{
    if (method.method == RM_NORM_ZSCORE)
        return "z-score";
    std::ostringstream s;
    s << "percentile p" << method.low << "-p" << method.high << " clipped to [0, 1]";
    return s.str();
}

void check_same_size(const Volume &a, const std::string &a_path, const Volume &b, const std::string &b_path)
{
    if (a.size != b.size)
        throw Failure(b_path + " is " + size_string(b.size) + " voxels (Z x Y x X) but " + a_path + " is " +
                          size_string(a.size) + ": they must have the same size",
                      kBadInput);
}

namespace {

// "Y x X" of a volume's layers, for messages.
std::string plane_string(const std::array<int64_t, 3> &size)
{
    return std::to_string(size[1]) + " x " + std::to_string(size[2]);
}

} // namespace

void check_label_size(const Volume &signal, const std::string &signal_path, const Volume &label,
                      const std::string &label_path, const rm_task &task)
{
    const std::string layers = plane_string(signal.size);
    const bool one_layer = label.size[0] == 1, same_plane = label.size[1] == signal.size[1] &&
                                                              label.size[2] == signal.size[2];
    if (task.output_2d) {
        if (!one_layer)
            throw Failure(label_path + " is a volume of " + size_string(label.size) + " voxels, but task '" + task.name +
                              "' has 2D labels (\"output\": \"2d\"): it needs a 2D image of the layers of " +
                              signal_path + ", " + layers + " (Y x X)",
                          kBadInput);
        if (!same_plane)
            throw Failure(label_path + " is a 2D image of " + plane_string(label.size) + " (Y x X) but the "
                              "layers of " + signal_path + " are " + layers + ": a 2D label must cover them exactly",
                          kBadInput);
        return;
    }
    if (one_layer && signal.size[0] > 1 && same_plane)
        throw Failure(label_path + " is a 2D image of " + layers + " for the layers of " + signal_path + " (" +
                          size_string(signal.size) + "), but task '" + task.name + "' has 3D labels: 2D labels of a "
                          "surface volume need a task with \"output\": \"2d\" in the configuration",
                      kBadInput);
    check_same_size(signal, signal_path, label, label_path);
}

Volume depth_mean(const Context &ctx, const Volume &v)
{
    Volume map;
    map.size = {1, v.size[1], v.size[2]};
    map.spacing = v.spacing;
    map.origin = v.origin;
    map.direction = v.direction;
    map.voxels.assign(static_cast<size_t>(map.count()), 0.0f);
    rm_tensor x = rm_tensor_5d(const_cast<float *>(v.voxels.data()), 1, 1, v.size[0], v.size[1], v.size[2]);
    rm_tensor y = rm_tensor_5d(map.voxels.data(), 1, 1, 1, v.size[1], v.size[2]);
    ctx.check(rm_depth_mean_forward(ctx, &x, &y));
    return map;
}

int read_volume_region(void *user, const int64_t start[3], const int64_t size[3], float *buf)
{
    const Volume &v = *static_cast<const Volume *>(user);
    for (int64_t z = 0; z < size[0]; z++)
        for (int64_t y = 0; y < size[1]; y++) {
            const float *src = v.voxels.data() + ((start[0] + z) * v.size[1] + (start[1] + y)) * v.size[2] + start[2];
            std::memcpy(buf + (z * size[1] + y) * size[2], src, static_cast<size_t>(size[2]) * sizeof(float));
        }
    return 0;
}

void add_number(cJSON *o, const char *name, double value)
{
    if (std::isfinite(value))
        cJSON_AddNumberToObject(o, name, value);
    else
        cJSON_AddNullToObject(o, name);
}

double add_metrics(const Context &ctx, cJSON *o, const rm_task &task, Volume &pred, const Volume &target,
                   const Volume *mask, bool probabilities)
{
    const int64_t z = pred.size[0], y = pred.size[1], x = pred.size[2];
    rm_tensor p = rm_tensor_5d(pred.voxels.data(), 1, 1, z, y, x);
    rm_tensor g = rm_tensor_5d(const_cast<float *>(target.voxels.data()), 1, 1, z, y, x);
    rm_tensor mt = rm_tensor_5d(mask ? const_cast<float *>(mask->voxels.data()) : nullptr, 1, 1, z, y, x);
    const rm_tensor *mp = mask ? &mt : nullptr;
    if (task.kind == RM_TASK_BINARY) {
        if (!probabilities)
            for (float &v : pred.voxels)
                v = probability(v);
        const float threshold = std::isnan(task.threshold) ? RM_BINARY_THRESHOLD : task.threshold;
        rm_binary_metrics bm;
        ctx.check(rm_binary_metrics_compute(ctx, &p, &g, mp, threshold, &bm));
        cJSON_AddStringToObject(o, "kind", "binary");
        add_number(o, "f05", bm.f05);
        add_number(o, "dice", bm.dice);
        add_number(o, "precision", bm.precision);
        add_number(o, "recall", bm.recall);
        add_number(o, "auc", bm.auc);
        add_number(o, "threshold", threshold);
        cJSON_AddNumberToObject(o, "voxels", static_cast<double>(bm.count));
        return bm.f05;
    }
    rm_regression_metrics rm;
    ctx.check(rm_regression_metrics_compute(ctx, &p, &g, mp, &rm));
    cJSON_AddStringToObject(o, "kind", "regression");
    add_number(o, "mse", rm.mse);
    add_number(o, "mae", rm.mae);
    add_number(o, "r2", rm.r2);
    add_number(o, "pearson", rm.pearson);
    add_number(o, "ssim", rm.ssim);
    add_number(o, "ssim_range", rm.ssim_range);
    cJSON_AddNumberToObject(o, "voxels", static_cast<double>(rm.count));
    return rm.mse;
}

} // namespace repmode::cli
