// Streaming benchmark: `repmode predict` as users run it, on volumes of 1×, 4× and 16× a base size (grown along Z)
// for `lite` (base 128×64×64) and `official` (base 64×128×128), MetaImage in and out, the output streamed in pieces
// of the base size. Prints the throughput (voxels per second) and the peak memory of each run beside the 1× run of
// the same network, and, as the reference for what streaming saves, the 16× volume written in one piece.
// Target: 16× the volume in at most 1.25× the memory of 1×, time growing about linearly.
//
// Each run is a child process (fork + exec of build/bin/repmode), so its peak memory (ru_maxrss) is its own.
// Models are random (the work does not depend on the weights), saved in the deploy form of their one task.
//
// usage: repmode-bench-predict [--threads N (2)] [--quick]   (--quick: 1× and 4× only)
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <itkImage.h>
#include <itkImageFileWriter.h>
#include <itkMetaImageIOFactory.h>

#include "repmode/repmode.h"

namespace {

namespace fs = std::filesystem;

constexpr double kMemoryTarget = 1.25; // peak at 16× over peak at 1×

struct Network {
    const char *name;
    int64_t base[3]; // Z, Y, X: the 1× volume and the streamed piece
};

struct Run {
    double seconds = 0.0;
    double peak_mib = 0.0;
};

void check(rm_ctx *ctx, rm_status s, const char *what)
{
    if (s != RM_OK) {
        std::fprintf(stderr, "bench-predict: %s: %s\n", what, rm_ctx_error(ctx));
        std::exit(2);
    }
}

// A random model of the network, saved in the deploy form of its one task, whose name it returns.
std::string write_model(const Network &net, const fs::path &path)
{
    rm_ctx *ctx = rm_ctx_create(2);
    std::vector<rm_task> tasks(12);
    rm_config cfg;
    if (std::strcmp(net.name, "official") == 0) {
        cfg = rm_config_official(tasks.data());
        cfg.n_tasks = 1; // the work of one task is the same whatever the others
    } else {
        tasks[0] = rm_task_make("dna", RM_TASK_REGRESSION);
        cfg = rm_config_lite(tasks.data(), 1);
    }
    rm_model *model = nullptr;
    check(ctx, rm_model_create(ctx, &cfg, 1, &model), "creating the model");
    const int task = 0;
    check(ctx, rm_model_save_deploy(ctx, model, &task, 1, path.c_str()), "saving the model");
    const std::string name = tasks[0].name;
    rm_model_free(model);
    rm_ctx_free(ctx);
    return name;
}

// A random volume of z × y × x voxels (CT-like values), written as MetaImage.
void write_volume(const fs::path &path, int64_t z, int64_t y, int64_t x)
{
    using Image = itk::Image<float, 3>;
    auto image = Image::New();
    Image::RegionType region;
    region.SetSize({{static_cast<itk::SizeValueType>(x), static_cast<itk::SizeValueType>(y),
                     static_cast<itk::SizeValueType>(z)}});
    image->SetRegions(region);
    image->Allocate();
    std::mt19937 rng(7);
    std::normal_distribution<float> noise(1000.0f, 200.0f);
    float *p = image->GetBufferPointer();
    for (size_t i = 0, n = region.GetNumberOfPixels(); i < n; i++)
        p[i] = noise(rng);
    auto writer = itk::ImageFileWriter<Image>::New();
    writer->SetInput(image);
    writer->SetFileName(path.string());
    writer->Update();
}

// Runs `repmode predict` in a child and measures its wall time and peak resident memory.
Run predict(const fs::path &model, const std::string &task, const fs::path &in, const fs::path &out, unsigned divisions,
            int threads)
{
    const std::string div = std::to_string(divisions), thr = std::to_string(threads);
    std::vector<std::string> args = {BENCH_REPMODE, "predict", "--model", model.string(), "--task", task,
                                     "--input", in.string(), "--output", out.string(), "--divisions", div,
                                     "--threads", thr};
    std::vector<char *> argv;
    for (std::string &a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    const auto start = std::chrono::steady_clock::now();
    const pid_t pid = fork();
    if (pid == 0) {
        const int null = ::open("/dev/null", O_WRONLY);
        dup2(null, STDERR_FILENO);
        execv(argv[0], argv.data());
        _exit(127);
    }
    int status = 0;
    struct rusage usage{};
    wait4(pid, &status, 0, &usage);
    Run r;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    r.peak_mib = static_cast<double>(usage.ru_maxrss) / 1024.0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::fprintf(stderr, "bench-predict: repmode predict failed (status %d)\n", status);
        std::exit(2);
    }
    return r;
}

} // namespace

int main(int argc, char **argv)
{
    int threads = 2;
    bool quick = false;
    for (int i = 1; i < argc; i++) {
        if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = std::atoi(argv[++i]);
        else if (std::strcmp(argv[i], "--quick") == 0)
            quick = true;
        else {
            std::fprintf(stderr, "usage: %s [--threads N] [--quick]\n", argv[0]);
            return 1;
        }
    }
    itk::MetaImageIOFactory::RegisterOneFactory();
    const fs::path dir = fs::temp_directory_path() / ("repmode-bench-predict-" + std::to_string(getpid()));
    fs::create_directories(dir);

    std::printf("repmode predict, streamed (MetaImage in and out), %d threads; memory is the process's peak RSS\n",
                threads);
    std::printf("%-9s %5s %16s %6s %9s %12s %9s %10s %10s\n", "network", "size", "volume (ZxYxX)", "pieces",
                "seconds", "voxels/s", "peak MiB", "time/1x", "memory/1x");
    // Bases two patches deep: a piece recomputes the windows that straddle its borders, so thin pieces cost more.
    const Network nets[] = {{"lite", {128, 64, 64}}, {"official", {64, 128, 128}}};
    bool met = true;
    for (const Network &net : nets) {
        const fs::path model = dir / (std::string(net.name) + ".safetensors");
        const std::string task = write_model(net, model);
        Run one;
        std::vector<unsigned> scales = quick ? std::vector<unsigned>{1, 4} : std::vector<unsigned>{1, 4, 16};
        for (unsigned scale : scales)
            for (bool streamed : {true, false}) {
                if (!streamed && scale != scales.back())
                    continue; // the unstreamed reference: the largest volume only
                const int64_t z = net.base[0] * scale;
                const fs::path in = dir / ("in" + std::to_string(scale) + ".mha"), out = dir / "out.mha";
                if (streamed)
                    write_volume(in, z, net.base[1], net.base[2]);
                const unsigned pieces = streamed ? scale : 1;
                const Run r = predict(model, task, in, out, pieces, threads);
                if (scale == 1)
                    one = r;
                const double voxels = static_cast<double>(z * net.base[1] * net.base[2]);
                char size[32];
                std::snprintf(size, sizeof size, "%lldx%lldx%lld", static_cast<long long>(z),
                              static_cast<long long>(net.base[1]), static_cast<long long>(net.base[2]));
                std::printf("%-9s %4ux %16s %6u %9.2f %12.0f %9.0f %9.2fx %9.2fx%s\n", net.name, scale, size, pieces,
                            r.seconds, voxels / r.seconds, r.peak_mib, r.seconds / one.seconds,
                            r.peak_mib / one.peak_mib, streamed ? "" : "  (reference: one piece)");
                if (streamed && scale == 16)
                    met = met && r.peak_mib <= kMemoryTarget * one.peak_mib;
                if (!streamed || scale != scales.back())
                    fs::remove(in);
            }
        fs::remove(model);
    }
    fs::remove_all(dir);
    if (!quick)
        std::printf("target: 16x the volume in at most %.2fx the memory of 1x: %s\n", kMemoryTarget,
                    met ? "met" : "MISSED");
    return 0;
}
