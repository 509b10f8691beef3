// repmode reparam --model M --task T|all --out D: the deploy form of some or all tasks.
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cli.h"
#include "output_paths.h"

namespace repmode::cli {

namespace {

// "all", or a comma-separated list of task names, as task indices of the model.
std::vector<int> task_indices(const rm_model *model, const std::string &spec)
{
    std::vector<int> tasks;
    if (spec == "all") {
        for (int t = 0; t < rm_model_config(model)->n_tasks; t++)
            tasks.push_back(t);
        return tasks;
    }
    std::stringstream list(spec);
    for (std::string name; std::getline(list, name, ',');) {
        const int t = rm_model_task_index(model, name.c_str());
        if (t < 0) {
            std::string known;
            for (int k = 0; k < rm_model_config(model)->n_tasks; k++)
                known += std::string(k ? ", " : "") + rm_model_config(model)->tasks[k].name;
            throw Failure("the model has no task '" + name + "' (it has: " + known + ")", kBadInput);
        }
        tasks.push_back(t);
    }
    if (tasks.empty())
        throw Failure("--task names no task", kBadInput);
    return tasks;
}

} // namespace

int run_reparam(int argc, char **argv)
{
    CommandLine cmd("reparam", "Writes the deploy form of a training-form model: for each task, every MoDE layer's "
                               "experts merged into one 5x5x5 kernel and every BatchNorm folded into its convolution.");
    TCLAP::ValueArg<std::string> model("", "model", "training-form model file", true, "", "M", cmd);
    TCLAP::ValueArg<std::string> task("", "task", "task name, a comma-separated list, or 'all'", true, "", "T", cmd);
    TCLAP::ValueArg<std::string> out("", "out", "deploy-form model file to write", true, "", "D", cmd);
    cmd.parse_or_fail(argc, argv);

    check_output_path(out.getValue(), "--out");
    check_distinct({{out.getValue(), "--out"}}, {{model.getValue(), "--model"}});
    Context ctx(cmd.threads());
    rm_model_info info;
    ctx.check(rm_model_info_read(ctx, model.getValue().c_str(), &info));
    const bool deploy = info.deploy != 0;
    rm_model_info_free(&info);
    if (deploy) // the core's own message names its C function for the deploy form
        throw Failure(model.getValue() + " is a deploy-form model already: reparam takes a training-form model",
                      kBadInput);
    rm_model *raw = nullptr;
    ctx.check(rm_model_load(ctx, model.getValue().c_str(), &raw));
    std::unique_ptr<rm_model, void (*)(rm_model *)> m(raw, rm_model_free);
    const std::vector<int> tasks = task_indices(m.get(), task.getValue());
    ctx.check(rm_model_save_deploy(ctx, m.get(), tasks.data(), static_cast<int>(tasks.size()), out.getValue().c_str()));
    std::fprintf(stderr, "repmode: wrote the deploy form of %zu task%s to %s\n", tasks.size(),
                 tasks.size() == 1 ? "" : "s", out.getValue().c_str());
    return 0;
}

} // namespace repmode::cli
