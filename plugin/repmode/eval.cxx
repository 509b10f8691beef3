// repmode eval --model M --task T --input IN --target GT [--mask MASK]: predicts IN whole with the sliding window
// and prints one JSON object of metrics against GT (docs/cli.md §3.6). With 2D labels ("output": "2d", docs/network.md
// §7) GT and MASK are 2D images of the input's layers and the metrics are those of the prediction's mean over depth.
//
// Normalization is the model's (repmode.normalization, repmode/normalize.h), over the whole volume: z-score
// (official, docs/network.md §1.2, population std; a constant volume is only centred) or percentile clipping to
// [0, 1] (p1-p99 by default). For regression tasks the target is normalized the same way, as train does, so the
// metrics are in normalized units as the official get_metric_stats reports them.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <cjson/cJSON.h>

#include "cli.h"
#include "image_io.h"
#include "volume_ops.h"

namespace repmode::cli {

int run_eval(int argc, char **argv)
{
    CommandLine cmd("eval", "Predicts an image whole with the sliding window and prints one JSON object of metrics "
                            "against a target: regression tasks mse, mae, r2, pearson, ssim (3D, 11-voxel Gaussian "
                            "window, the target's range as data range; input and target normalized "
                            "over the whole volume with the model's method, z-score as the official code or "
                            "percentile clipping); binary tasks f05, dice, precision, "
                            "recall, auc (sigmoid of the prediction against target > 0.5). A task with 2D labels "
                            "(\"output\": \"2d\") is measured on the mean over depth of the prediction against a 2D "
                            "target.");
    TCLAP::ValueArg<std::string> model("", "model", "model file, either form", true, "", "M", cmd);
    TCLAP::ValueArg<std::string> task("", "task", "task name", true, "", "T", cmd);
    TCLAP::ValueArg<std::string> input("", "input", "input image, or a folder of 2D TIFF layers", true, "", "IN", cmd);
    TCLAP::ValueArg<std::string> target("", "target", "ground-truth image of the same size (for a task with 2D labels, "
                                                      "a 2D image of the layers' Y x X)",
                                        true, "", "GT", cmd);
    TCLAP::ValueArg<std::string> mask("", "mask", "only voxels (pixels) where MASK > 0.5 count; sized as GT", false, "",
                                      "MASK", cmd);
    TCLAP::ValueArg<std::string> patch_arg("", "patch", "window size Z,Y,X (default: the model's patch)", false, "",
                                           "Z,Y,X", cmd);
    NonFiniteOption non_finite(cmd);
    TCLAP::ValueArg<double> overlap("", "overlap", "fraction of the window shared by neighbours, in [0, 1)", false,
                                    0.5, "F", cmd);
    cmd.parse_or_fail(argc, argv);
    if (!(overlap.getValue() >= 0.0 && overlap.getValue() < 1.0))
        throw Failure("--overlap must be in [0, 1)", kBadInput);
    std::array<int64_t, 3> patch{};
    if (patch_arg.isSet())
        patch = parse_sizes(patch_arg.getValue(), "--patch");

    Progress progress("eval");
    Context ctx(cmd.threads());
    progress.stage("loading task '" + task.getValue() + "' of " + model.getValue());
    rm_deploy *raw = nullptr;
    ctx.check(rm_deploy_load(ctx, model.getValue().c_str(), task.getValue().c_str(), &raw));
    std::unique_ptr<rm_deploy, void (*)(rm_deploy *)> deploy(raw, rm_deploy_free);
    rm_normalization method;
    ctx.check(rm_deploy_normalization(ctx, deploy.get(), &method));
    rm_model_info info;
    ctx.check(rm_model_info_read(ctx, model.getValue().c_str(), &info));
    std::unique_ptr<rm_model_info, void (*)(rm_model_info *)> owned(&info, rm_model_info_free);
    const rm_task *t = nullptr;
    for (int k = 0; k < info.cfg.n_tasks; k++)
        if (task.getValue() == info.cfg.tasks[k].name)
            t = &info.cfg.tasks[k];
    if (!t)
        throw Failure("the model has no task '" + task.getValue() + "'", kBadInput);
    if (info.cfg.in_channels != 1 || info.cfg.out_channels != 1)
        throw Failure("eval needs a model of one input and one output channel (this one has " +
                          std::to_string(info.cfg.in_channels) + " and " + std::to_string(info.cfg.out_channels) + ")",
                      kBadInput);
    if (!patch_arg.isSet())
        for (size_t a = 0; a < 3; a++)
            patch[a] = info.cfg.patch[a];
    const bool binary = t->kind == RM_TASK_BINARY;

    progress.stage("reading " + input.getValue());
    Volume in = read_volume(input.getValue());
    settle_non_finite(ctx, in, input.getValue(), non_finite.value(), kNonFiniteChoice);
    progress.stage("reading " + target.getValue());
    Volume gt = read_volume(target.getValue());
    settle_non_finite(ctx, gt, target.getValue(), "refuse", "; a target must be finite");
    check_label_size(in, input.getValue(), gt, target.getValue(), *t);
    Volume m;
    if (mask.isSet()) {
        progress.stage("reading " + mask.getValue());
        m = read_volume(mask.getValue());
        settle_non_finite(ctx, m, mask.getValue(), "refuse", "; a mask must be finite");
        check_label_size(in, input.getValue(), m, mask.getValue(), *t);
    }

    progress.stage("normalizing (" + describe(method) + ")");
    normalize(ctx, method, in.voxels, input.getValue());
    if (!binary)
        normalize(ctx, method, gt.voxels, target.getValue());

    progress.stage("predicting " + size_string(in.size) + " voxels with windows of " + size_string(patch));
    rm_window_params params = rm_window_params_make(patch.data());
    params.overlap = overlap.getValue();
    params.blend = RM_BLEND_GAUSSIAN;
    Volume pred = in.like<float>();
    const int64_t origin[3] = {0, 0, 0};
    ctx.check(rm_predict_region(ctx, deploy.get(), &params, in.size.data(), read_volume_region, &in, origin,
                                in.size.data(), pred.voxels.data(), Progress::report, &progress));
    deploy.reset();
    if (t->output_2d) // 2D labels: the metrics of the 2D logit map
        pred = depth_mean(ctx, pred);

    progress.stage("computing the metrics");
    std::unique_ptr<cJSON, void (*)(cJSON *)> root(cJSON_CreateObject(), cJSON_Delete);
    if (!root)
        throw std::bad_alloc();
    cJSON_AddStringToObject(root.get(), "task", t->name);
    add_metrics(ctx, root.get(), *t, pred, gt, mask.isSet() ? &m : nullptr);
    std::unique_ptr<char, void (*)(void *)> text(cJSON_PrintUnformatted(root.get()), cJSON_free);
    if (!text)
        throw std::bad_alloc();
    std::printf("%s\n", text.get());
    return 0;
}

} // namespace repmode::cli
