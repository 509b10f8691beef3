// repmode info MODEL [--json]: what a model file holds, after checking every tensor.
#include <cstdio>
#include <memory>
#include <string>

#include <cjson/cJSON.h>

#include "cli.h"

namespace repmode::cli {

namespace {

const char *activation_name(rm_activation a)
{
    switch (a) {
    case RM_ACT_RELU: return "relu";
    case RM_ACT_FRELU: return "frelu";
    case RM_ACT_MISH: return "mish";
    }
    return "?";
}

// Multiply-adds of one forward pass per voxel of the model's patch (rm_config_forward_macs).
double macs_per_voxel(const Context &ctx, const rm_config &c)
{
    double macs = 0.0;
    ctx.check(rm_config_forward_macs(ctx, &c, c.patch, &macs));
    return macs / static_cast<double>(c.patch[0] * c.patch[1] * c.patch[2]);
}

void print_text(const Context &ctx, const std::string &path, const rm_model_info &info)
{
    const rm_config &c = info.cfg;
    std::printf("model:       %s\n", path.c_str());
    std::printf("form:        %s\n", info.deploy ? "deploy (experts merged, BatchNorm folded)" : "training");
    std::printf("parameters:  %lld%s\n", static_cast<long long>(info.parameters),
                info.deploy ? " per task" : " trainable");
    std::printf("network:     base %lld channels, %d levels, %lld -> %lld channels, %s, dropout %g\n",
                static_cast<long long>(c.base_channels), c.levels, static_cast<long long>(c.in_channels),
                static_cast<long long>(c.out_channels), activation_name(c.activation), static_cast<double>(c.dropout));
    std::printf("patch:       %lld x %lld x %lld (Z x Y x X)\n", static_cast<long long>(c.patch[0]),
                static_cast<long long>(c.patch[1]), static_cast<long long>(c.patch[2]));
    std::printf("cost:        %.4g k multiply-adds per voxel (one forward pass of the patch)\n",
                macs_per_voxel(ctx, c) / 1e3);
    if (c.block != RM_BLOCK_MODE)
        std::printf("layers:      %s (single task, no gates: the comparison network of docs/network.md section 9)\n",
                    c.block == RM_BLOCK_PLAIN ? "plain 3x3x3 convolutions" : "Inception blocks");
    if (c.decoder_2d)
        std::printf("decoder:     2d (the skips and the bottleneck averaged over depth, 2D layers, one 2D map)\n");
    if (c.added_expert_kernel)
        std::printf("experts:     conv5, conv3, conv1, avg3, avg5, and an added conv%d used from task %d (%s) on\n",
                    c.added_expert_kernel, c.added_expert_task, c.tasks[c.added_expert_task].name);
    const std::string heading = "tasks (" + std::to_string(c.n_tasks) + "):";
    for (int t = 0; t < c.n_tasks; t++)
        std::printf("%-13s%2d %s (%s%s)\n", t ? "" : heading.c_str(), t, c.tasks[t].name,
                    c.tasks[t].kind == RM_TASK_BINARY ? "binary" : "regression",
                    c.tasks[t].output_2d ? ", 2D labels: mean over depth" : "");
}

void print_json(const Context &ctx, const std::string &path, const rm_model_info &info)
{
    std::unique_ptr<char, void (*)(void *)> config(rm_config_json(&info.cfg), rm_free);
    std::unique_ptr<char, void (*)(void *)> tasks(rm_tasks_json(&info.cfg), rm_free);
    std::unique_ptr<cJSON, void (*)(cJSON *)> root(cJSON_CreateObject(), cJSON_Delete);
    if (!config || !tasks || !root)
        throw std::bad_alloc();
    cJSON_AddStringToObject(root.get(), "file", path.c_str());
    cJSON_AddStringToObject(root.get(), "form", info.deploy ? "deploy" : "training");
    cJSON_AddNumberToObject(root.get(), "parameters", static_cast<double>(info.parameters));
    cJSON_AddNumberToObject(root.get(), "macs_per_voxel", macs_per_voxel(ctx, info.cfg));
    cJSON_AddItemToObject(root.get(), "config", cJSON_CreateRaw(config.get()));
    cJSON_AddItemToObject(root.get(), "tasks", cJSON_CreateRaw(tasks.get()));
    std::unique_ptr<char, void (*)(void *)> text(cJSON_Print(root.get()), cJSON_free);
    if (!text)
        throw std::bad_alloc();
    std::printf("%s\n", text.get());
}

} // namespace

int run_info(int argc, char **argv)
{
    CommandLine cmd("info", "Describes a repmode model file (either form) after checking every tensor in it.");
    TCLAP::UnlabeledValueArg<std::string> model("model", "model file (.safetensors)", true, "", "MODEL", cmd);
    TCLAP::SwitchArg json("", "json", "print one JSON object instead of text", cmd);
    cmd.parse_or_fail(argc, argv);

    Context ctx(cmd.threads());
    rm_model_info info;
    ctx.check(rm_model_info_read(ctx, model.getValue().c_str(), &info));
    std::unique_ptr<rm_model_info, void (*)(rm_model_info *)> owned(&info, rm_model_info_free);
    if (json.getValue())
        print_json(ctx, model.getValue(), info);
    else
        print_text(ctx, model.getValue(), info);
    return 0;
}

} // namespace repmode::cli
