// repmode info FILE [--json]: what a model file holds, after checking every tensor; or, for an image repmode wrote,
// how it was made (its provenance record, docs/cli.md §1.6).
#include <cstdio>
#include <memory>
#include <string>

#include <cjson/cJSON.h>

#include "cli.h"
#include "image_io.h"
#include "provenance.h"

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
    if (info.provenance)
        std::printf("provenance:  %s\n", info.provenance);
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
    cJSON *own = info.provenance ? cJSON_Parse(info.provenance) : nullptr;
    cJSON_AddItemToObject(root.get(), "provenance", own ? own : cJSON_CreateNull());
    std::unique_ptr<char, void (*)(void *)> text(cJSON_Print(root.get()), cJSON_free);
    if (!text)
        throw std::bad_alloc();
    std::printf("%s\n", text.get());
}

// One "name: value" line per field of a record, nested objects' names dotted ("parameters.overlap: 0.5").
void print_fields(const cJSON *o, const std::string &prefix)
{
    for (const cJSON *f = o->child; f; f = f->next) {
        const std::string name = prefix + f->string;
        if (cJSON_IsObject(f) && f->child) {
            print_fields(f, name + ".");
            continue;
        }
        std::unique_ptr<char, void (*)(void *)> value(cJSON_IsString(f) ? nullptr : cJSON_PrintUnformatted(f),
                                                      cJSON_free);
        std::printf("%s: %s\n", name.c_str(), cJSON_IsString(f) ? f->valuestring : value ? value.get() : "?");
    }
}

// The provenance record of an image repmode wrote, as text or as the JSON object.
void print_image_provenance(const std::string &path, bool json)
{
    const std::string text = read_provenance(path);
    if (text.empty())
        throw Failure(path + " is an image without a repmode provenance record (docs/cli.md section 1.6)",
                      kBadInput);
    const Json record = parse_record(text, path);
    if (json) {
        std::unique_ptr<char, void (*)(void *)> pretty(cJSON_Print(record.get()), cJSON_free);
        std::printf("%s\n", pretty.get());
        return;
    }
    std::printf("image: %s\n", path.c_str());
    print_fields(record.get(), "");
}

} // namespace

int run_info(int argc, char **argv)
{
    CommandLine cmd("info", "Describes a repmode model file (either form) after checking every tensor in it; or "
                            "prints how an image repmode wrote was made: its provenance record.");
    TCLAP::UnlabeledValueArg<std::string> model("model-or-output", "model file (.safetensors), or an image repmode "
                                                "wrote", true, "", "FILE", cmd);
    TCLAP::SwitchArg json("", "json", "print one JSON object instead of text", cmd);
    cmd.parse_or_fail(argc, argv);
    if (is_image_file(model.getValue())) {
        print_image_provenance(model.getValue(), json.getValue());
        return 0;
    }

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
