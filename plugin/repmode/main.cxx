// repmode: one executable, subcommands as in docs/cli.md §3.
#include <cstdio>
#include <cstring>

#include "cli.h"

namespace {

struct Subcommand {
    const char *name;
    int (*run)(int, char **);
    const char *summary;
};

const Subcommand kSubcommands[] = {
    {"info", repmode::cli::run_info, "describe a model file: configuration, tasks, parameters, form"},
    {"reparam", repmode::cli::run_reparam, "write the deploy form (experts merged, BatchNorm folded)"},
    {"synth", repmode::cli::run_synth, "write a synthetic sample (cells or scroll) with its ground truth and data.csv"},
    {"train", repmode::cli::run_train, "train a model on a CSV of volumes (signal,target,task[,mask])"},
    {"add-task", repmode::cli::run_add_task, "teach a trained model one more task, its old tasks unchanged bit for bit"},
    {"predict", repmode::cli::run_predict, "predict one task over a volume: prediction, label map, colour table"},
    {"verify", repmode::cli::run_verify, "predict again what an output's provenance records and compare the bytes"},
    {"batch", repmode::cli::run_batch, "predict every row of a manifest, resumably; summary.csv and report.html"},
    {"eval", repmode::cli::run_eval, "predict an image and print metrics against its target as JSON"},
    {"render", repmode::cli::run_render, "draw a volume as a PNG: orthogonal slices, label overlay, 3D view"},
    {"surfaces", repmode::cli::run_surfaces, "write a surface mesh (.vtp, .stl, .obj) of every label of a label map"},
};

void print_usage(std::FILE *to)
{
    std::fprintf(to, "usage: repmode <subcommand> [options]   (repmode <subcommand> --help for its options)\n\n");
    for (const Subcommand &s : kSubcommands)
        std::fprintf(to, "  %-10s %s\n", s.name, s.summary);
}

} // namespace

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return repmode::cli::kBadInput;
    }
    if (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
        print_usage(stdout);
        return 0;
    }
    if (std::strcmp(argv[1], "--version") == 0) {
        std::printf("repmode %s\n", REPMODE_VERSION);
        rm_ctx *ctx = rm_ctx_create(1);
        if (ctx)
            std::printf("engine: %s (this processor offers %s; REPMODE_ISA lowers it)\n", rm_isa_name(rm_ctx_isa(ctx)),
                        rm_isa_name(rm_isa_available()));
        rm_ctx_free(ctx);
        return 0;
    }
    for (const Subcommand &s : kSubcommands) {
        if (std::strcmp(argv[1], s.name) != 0)
            continue;
        return repmode::cli::run_reporting_failures("repmode", s.run, argc - 1, argv + 1);
    }
    std::fprintf(stderr, "repmode: unknown subcommand '%s'\n", argv[1]);
    print_usage(stderr);
    return repmode::cli::kBadInput;
}
