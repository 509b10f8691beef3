// repmode train --config C.json --data D.csv --out M: trains a new model on volumes in memory (docs/cli.md §3.4), or
// continues one with --resume CKPT.
//
// Everything the run needs is read and checked before the first step: the configuration (docs/cli.md §4.1, the
// `lite` defaults for missing fields), every row of the CSV files and every image they name. Inputs are normalized
// per volume with the configuration's "normalization" (docs/network.md §1.2): "zscore" (official, the default),
// "percentile" (p1-p99 clipped to [0, 1]) or {"method": "percentile", "low": L, "high": H}; the model file records it
// (repmode.normalization) for eval and predict. Regression targets are normalized with the same method, so a
// percentile model learns targets in [0, 1] as it sees its inputs; binary targets are used as 0/1 (> 0.5). A task
// with "output": "2d" takes 2D targets and masks of the signal's Y x X (docs/network.md §7). A run is reproducible bit
// for bit for a given seed whatever the thread count, and a resumed run ends with the same model as an uninterrupted
// one (the trainer's random draws are hashes of seed, step and sample).
//
// With --val every validation predicts each volume whole and measures it; the best score saves the model. With
// --tune-threshold each binary task's decision threshold is first set, at every validation, to the one that maximizes
// F0.5 over all its validation voxels together (rm_binary_best_threshold): a model trained with bucketed sampling
// over-predicts positives, and 0.5 costs it precision. The metrics and the score of that validation are measured at
// that threshold, and the model file saved as the best carries it (repmode.tasks), for eval and predict --labels.
#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <cjson/cJSON.h>

#include "cli.h"
#include "data_csv.h"
#include "image_io.h"
#include "interrupt.h"
#include "output_paths.h"
#include "provenance.h"
#include "text_file.h"
#include "volume_ops.h"

namespace repmode::cli {

namespace {

using Clock = std::chrono::steady_clock;

// ---- the configuration -------------------------------------------------------------------------------------------

using Config = std::unique_ptr<rm_train_config, void (*)(rm_train_config *)>;

// The configuration file, read and checked by the core (rm_train_config_parse); its messages name the field.
Config read_config(const Context &ctx, const std::string &path)
{
    Config c(new rm_train_config{}, [](rm_train_config *p) {
        rm_train_config_free(p);
        delete p;
    });
    ctx.check(rm_train_config_parse(ctx, read_text_file(path, "configuration").c_str(), c.get()), path);
    if (c->cfg.in_channels != 1 || c->cfg.out_channels != 1)
        throw Failure(path + ": 'in_channels' and 'out_channels' must be 1 (train reads single-channel volumes)",
                      kBadInput);
    return c;
}

// ---- the data ----------------------------------------------------------------------------------------------------

struct Sample {
    std::string signal_path;
    int task = 0;
    std::shared_ptr<const Volume> signal; // normalized; shared by the rows naming the same file
    Volume target;                        // normalized (regression) or 0/1 (binary); one layer for 2D labels
    std::shared_ptr<Volume> mask;         // or null; one layer for 2D labels
};

// Training data must be finite: a replaced voxel would be learned as if it had been measured.
const char *const kNonFiniteHint = "; training data must be finite: repair or mask the volume first";

// The rows of a data CSV, every image read, checked and normalized.
std::vector<Sample> read_data(const Context &ctx, const std::string &csv, const rm_train_config &c,
                              const Progress &progress)
{
    const std::vector<DataRow> rows = parse_data_csv(read_text_file(csv, "data CSV"), csv);
    std::map<std::string, std::shared_ptr<const Volume>> signals;
    std::vector<Sample> samples;
    for (const DataRow &row : rows) {
        const std::string where = csv + " line " + std::to_string(row.line);
        Sample s;
        s.task = -1;
        std::string known;
        for (int t = 0; t < c.cfg.n_tasks; t++) {
            if (row.task == c.cfg.tasks[t].name)
                s.task = t;
            known += std::string(t ? ", " : "") + c.cfg.tasks[t].name;
        }
        if (s.task < 0)
            throw Failure(where + ": the task '" + row.task + "' is not one of the configuration's tasks (" + known + ")",
                          kBadInput);
        if (row.signal.empty() || row.target.empty())
            throw Failure(where + ": the signal and the target must both be given", kBadInput);
        s.signal_path = row.signal;
        auto found = signals.find(s.signal_path);
        if (found == signals.end()) {
            progress.stage("reading " + s.signal_path);
            auto v = std::make_shared<Volume>(read_volume(s.signal_path));
            settle_non_finite(ctx, *v, s.signal_path, "refuse", kNonFiniteHint);
            normalize(ctx, c.normalization, v->voxels, s.signal_path);
            found = signals.emplace(s.signal_path, v).first;
        }
        s.signal = found->second;
        const Volume &signal = *s.signal;
        const std::string &target_path = row.target;
        progress.stage("reading " + target_path);
        s.target = read_volume(target_path);
        settle_non_finite(ctx, s.target, target_path, "refuse", kNonFiniteHint);
        auto check = [&](const Volume &v, const std::string &path) {
            try {
                check_label_size(signal, s.signal_path, v, path, c.cfg.tasks[s.task]);
            } catch (const Failure &f) {
                throw Failure(where + ": " + f.what(), f.code());
            }
        };
        check(s.target, target_path);
        if (c.cfg.tasks[s.task].kind == RM_TASK_BINARY)
            for (float &v : s.target.voxels)
                v = v > 0.5f ? 1.0f : 0.0f;
        else
            normalize(ctx, c.normalization, s.target.voxels, target_path);
        if (!row.mask.empty()) {
            const std::string &mask_path = row.mask;
            progress.stage("reading " + mask_path);
            s.mask = std::make_shared<Volume>(read_volume(mask_path));
            settle_non_finite(ctx, *s.mask, mask_path, "refuse", kNonFiniteHint);
            check(*s.mask, mask_path);
        }
        samples.push_back(std::move(s));
    }
    return samples;
}

// ---- progress and log --------------------------------------------------------------------------------------------

std::string duration(double seconds)
{
    if (!std::isfinite(seconds) || seconds < 0)
        return "?";
    const long long s = static_cast<long long>(seconds + 0.5);
    char buf[32];
    if (s >= 3600)
        std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, s / 60 % 60);
    else if (s >= 60)
        std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
    else
        std::snprintf(buf, sizeof buf, "%llds", s);
    return buf;
}

class Log {
  public:
    Log(const std::string &path, bool append)
    {
        if (path.empty())
            return;
        path_ = path;
        file_ = std::fopen(path.c_str(), append ? "a" : "w");
        if (!file_)
            throw Failure("cannot write the log " + path + ": " + std::strerror(errno), kBadInput);
    }
    ~Log()
    {
        if (file_)
            std::fclose(file_);
    }
    Log(const Log &) = delete;
    Log &operator=(const Log &) = delete;
    void write(cJSON *line)
    {
        if (!file_)
            return;
        std::unique_ptr<char, void (*)(void *)> text(cJSON_PrintUnformatted(line), cJSON_free);
        if (!text)
            throw std::bad_alloc();
        if (std::fprintf(file_, "%s\n", text.get()) < 0 || std::fflush(file_) != 0)
            throw Failure("cannot write the log " + path_ + ": " + std::strerror(errno), kBadInput);
    }

  private:
    std::string path_;
    std::FILE *file_ = nullptr;
};

using Json = std::unique_ptr<cJSON, void (*)(cJSON *)>;

Json object()
{
    Json o(cJSON_CreateObject(), cJSON_Delete);
    if (!o)
        throw std::bad_alloc();
    return o;
}

// ---- validation --------------------------------------------------------------------------------------------------

// Every validation volume predicted whole with the deploy form of its task: the logits, as the 2D map (the mean over
// depth) for a task with 2D labels, in the order of `val`.
std::vector<Volume> predict_all(const Context &ctx, rm_model *model, const std::vector<Sample> &val,
                                const int64_t patch[3])
{
    const rm_config *cfg = rm_model_config(model);
    std::vector<rm_deploy *> deploys(static_cast<size_t>(cfg->n_tasks), nullptr);
    struct Free {
        std::vector<rm_deploy *> &d;
        ~Free()
        {
            for (rm_deploy *x : d)
                rm_deploy_free(x);
        }
    } free_deploys{deploys};
    const rm_window_params params = rm_window_params_make(patch);
    std::vector<Volume> preds;
    for (const Sample &s : val) {
        rm_deploy *&d = deploys[static_cast<size_t>(s.task)];
        if (!d)
            ctx.check(rm_deploy_create(ctx, model, s.task, &d));
        Volume pred = s.signal->like<float>();
        const int64_t origin[3] = {0, 0, 0};
        ctx.check(rm_predict_region(ctx, d, &params, s.signal->size.data(), read_volume_region,
                                    const_cast<Volume *>(s.signal.get()), origin, s.signal->size.data(),
                                    pred.voxels.data(), nullptr, nullptr));
        if (cfg->tasks[s.task].output_2d) // 2D labels: measured on the 2D logit map
            pred = depth_mean(ctx, pred);
        preds.push_back(std::move(pred));
    }
    return preds;
}

// Sets every binary task's threshold to the one that maximizes F0.5 over all its validation voxels together (inside
// the masks), from the logits `preds` of predict_all. A task without a selected validation voxel keeps its threshold.
void tune_thresholds(const Context &ctx, rm_model *model, const std::vector<Sample> &val,
                     const std::vector<Volume> &preds)
{
    const rm_config *cfg = rm_model_config(model);
    for (int t = 0; t < cfg->n_tasks; t++) {
        if (cfg->tasks[t].kind != RM_TASK_BINARY)
            continue;
        std::vector<float> prob, target, mask;
        bool masked = false;
        for (size_t i = 0; i < val.size(); i++) {
            if (val[i].task != t)
                continue;
            for (float v : preds[i].voxels) // the probabilities add_metrics measures
                prob.push_back(probability(v));
            const std::vector<float> &g = val[i].target.voxels;
            target.insert(target.end(), g.begin(), g.end());
            if (val[i].mask)
                mask.insert(mask.end(), val[i].mask->voxels.begin(), val[i].mask->voxels.end());
            else
                mask.insert(mask.end(), g.size(), 1.0f);
            masked = masked || val[i].mask;
        }
        if (prob.empty())
            continue;
        const int64_t n = static_cast<int64_t>(prob.size());
        rm_tensor p = rm_tensor_5d(prob.data(), 1, 1, 1, 1, n);
        rm_tensor g = rm_tensor_5d(target.data(), 1, 1, 1, 1, n);
        rm_tensor m = rm_tensor_5d(mask.data(), 1, 1, 1, 1, n);
        rm_best_threshold best;
        ctx.check(rm_binary_best_threshold(ctx, &p, &g, masked ? &m : nullptr, &best));
        if (best.count > 0)
            ctx.check(rm_model_set_task_threshold(ctx, model, t, best.threshold));
    }
}

// Predicts every validation volume (predict_all); with `tune`, sets the binary tasks' thresholds (tune_thresholds);
// then adds the metrics of each volume to `line` (binary tasks at their threshold) and returns the score that selects
// the best model (lower is better): the mean over the volumes of the MSE (regression) or of 1 − F0.5 (binary).
double validate(const Context &ctx, rm_model *model, const std::vector<Sample> &val, const int64_t patch[3],
                bool tune, cJSON *line)
{
    std::vector<Volume> preds = predict_all(ctx, model, val, patch);
    if (tune)
        tune_thresholds(ctx, model, val, preds);
    const rm_config *cfg = rm_model_config(model);
    cJSON *list = cJSON_AddArrayToObject(line, "validation");
    if (!list)
        throw std::bad_alloc();
    double sum = 0.0;
    int n = 0;
    std::map<int, std::pair<double, int>> per_task;
    for (size_t i = 0; i < val.size(); i++) {
        const Sample &s = val[i];
        const rm_task &task = cfg->tasks[s.task];
        cJSON *item = cJSON_CreateObject();
        if (!item)
            throw std::bad_alloc();
        cJSON_AddItemToArray(list, item);
        cJSON_AddStringToObject(item, "signal", s.signal_path.c_str());
        cJSON_AddStringToObject(item, "task", task.name);
        const double main = add_metrics(ctx, item, task, preds[i], s.target, s.mask.get());
        const double score = task.kind == RM_TASK_BINARY ? 1.0 - main : main;
        sum += score;
        n++;
        per_task[s.task].first += main;
        per_task[s.task].second++;
    }
    cJSON *means = cJSON_AddObjectToObject(line, "mean");
    for (const auto &[t, acc] : per_task) {
        cJSON *m = cJSON_AddObjectToObject(means, cfg->tasks[t].name);
        add_number(m, cfg->tasks[t].kind == RM_TASK_BINARY ? "f05" : "mse", acc.first / acc.second);
    }
    const double score = n ? sum / n : NAN;
    add_number(line, "score", score);
    return score;
}

// ---- the run: parse, build, train -------------------------------------------------------------------------------

// The augmentation options of the command line: each one given replaces the configuration's value (after --augment,
// which replaces the configuration's whole recipe).
struct AugmentOverrides {
    std::optional<rm_augment> recipe;
    bool rotations = false;
    std::optional<float> jitter, blur, gamma, contrast, illumination, brightness, noise;
    std::optional<int64_t> depth_shift;

    rm_augment applied_to(rm_augment a) const
    {
        a = recipe.value_or(a);
        a.rotations = a.rotations || rotations;
        const std::pair<const std::optional<float> &, float &> numbers[] = {
            {jitter, a.jitter},         {blur, a.blur},             {gamma, a.gamma},           {contrast, a.contrast},
            {illumination, a.illumination}, {brightness, a.brightness}, {noise, a.noise}};
        for (const auto &[given, field] : numbers)
            field = given.value_or(field);
        a.depth_shift = depth_shift.value_or(a.depth_shift);
        return a;
    }
};

// What the command line asks for, checked as far as it can be without the configuration.
struct TrainArgs {
    int threads = 0;
    std::string config, data, out, val, log, checkpoint, resume; // checkpoint: --checkpoint or <out>.ckpt
    int64_t steps = 0, val_every = 0, checkpoint_every = 0;
    bool tune_threshold = false;
    std::optional<std::array<int64_t, 3>> patch; // --patch, else the configuration's
    rm_train_options opt{};                      // all but the patch and augment, which build_training sets
    AugmentOverrides augment;
    // add-task: the trained model, the task it learns, and the kernel of the expert it adds (0: none).
    std::string base_model;
    std::optional<rm_task> new_task;
    int added_kernel = 0;
    // train --init: the trained model the run starts from, its encoder frozen or stepped at encoder_lr times the rate.
    std::string init;
    bool freeze_encoder = false;
    double encoder_lr = 1.0;
};

// The options `train` and `add-task` share: how to train, validate and checkpoint. Registered on a command line, read
// into TrainArgs once it is parsed.
struct TrainingOptions {
    TCLAP::ValueArg<std::string> data{"", "data", "training CSV: signal,target,task[,mask]", true, "", "D.csv"};
    TCLAP::ValueArg<std::string> out{"", "out", "model file to write (the best on --val if given, else the last)",
                                     true, "", "M"};
    TCLAP::ValueArg<long long> steps{"", "steps", "total optimizer steps (default 100; 0: the model is written as it "
                                                  "starts)",
                                     false, 100, "N"};
    TCLAP::ValueArg<int> batch{"", "batch", "samples per step (default 4)", false, 4, "B"};
    TCLAP::ValueArg<double> lr{"", "lr", "base learning rate (default: the optimizer's, 1e-3 AdamW, 1e-4 Adam)", false,
                               0.0, "F"};
    TCLAP::ValueArg<std::string> optimizer{"", "optimizer", "adamw (default) or adam (official)", false, "adamw",
                                           "adam|adamw"};
    TCLAP::ValueArg<std::string> schedule{"", "schedule", "cosine (default): after the warm-up, a cosine decay to "
                                                          "0.1 lr at the last step, so that a short run ends at a low "
                                                          "rate; constant: lr throughout (official)",
                                          false, "cosine", "cosine|constant"};
    TCLAP::ValueArg<long long> warmup{"", "warmup", "cosine schedule: a linear warm-up over the first W steps "
                                                    "(default 0)",
                                      false, 0, "W"};
    TCLAP::ValueArg<unsigned long long> seed{"", "seed", "seed of the initialization and of every random draw "
                                                         "(default 0)",
                                             false, 0, "S"};
    TCLAP::ValueArg<std::string> patch{"", "patch", "training patch Z,Y,X (default: the configuration's)", false, "",
                                       "Z,Y,X"};
    TCLAP::ValueArg<std::string> augment{"", "augment", "augmentation recipe, replacing the configuration's "
                                                        "\"augment\": none, official (flips, the default), label-free "
                                                        "or ink; the options below change single values",
                                         false, "", "NAME"};
    TCLAP::SwitchArg rotations{"", "rotations", "augment with random in-plane 90-degree rotations (square patch)"};
    TCLAP::ValueArg<double> jitter{"", "jitter", "augment the input's intensity: scaled by 1 +- J and shifted by +- J "
                                                 "(normalized units; 0: off)",
                                   false, 0.0, "J"};
    TCLAP::ValueArg<double> blur{"", "blur", "augment with an in-plane Gaussian blur of sigma up to S voxels (0: off)",
                                 false, 0.0, "S"};
    TCLAP::ValueArg<double> gamma{"", "gamma", "augment with a gamma of (1 + G)^u, u in [-1, 1], over each sample's "
                                               "range (0: off)",
                                  false, 0.0, "G"};
    TCLAP::ValueArg<double> contrast{"", "contrast", "augment the contrast around each sample's mean by a factor in "
                                                     "[1 - C, 1 + C] (0: off)",
                                     false, 0.0, "C"};
    TCLAP::ValueArg<double> illumination{"", "illumination", "augment with an in-plane ramp of up to +- A across the "
                                                             "patch in a random direction (normalized units; 0: off)",
                                         false, 0.0, "A"};
    TCLAP::ValueArg<double> brightness{"", "brightness", "augment the brightness by up to +- B (normalized units; 0: "
                                                         "off)",
                                       false, 0.0, "B"};
    TCLAP::ValueArg<double> noise{"", "noise", "augment the input with Gaussian noise of this standard deviation "
                                               "(normalized units; 0: off)",
                                  false, 0.0, "S"};
    TCLAP::ValueArg<long long> depth_shift{"", "depth-shift", "augment volumes with 2D labels by reading them up to "
                                                              "+- L layers deeper (0: off)",
                                           false, 0, "L"};
    TCLAP::ValueArg<double> ema{"", "ema", "keep an exponential moving average of the weights with this decay, in "
                                           "(0, 1) (e.g. 0.99), and validate and save it instead of the last weights",
                                false, 0.0, "D"};
    TCLAP::ValueArg<std::string> sampling{"", "sampling", "where crops are taken: random (default, official) or "
                                                          "buckets: crops of binary tasks drawn evenly from those "
                                                          "without positives, with a few (up to 10%) and with many",
                                          false, "random", "random|buckets"};
    TCLAP::ValueArg<std::string> log{"", "log", "JSON lines: one per step, one per validation", false, "",
                                     "LOG.jsonl"};
    TCLAP::ValueArg<std::string> val{"", "val", "validation CSV, same columns as --data", false, "", "D2.csv"};
    TCLAP::ValueArg<long long> val_every{"", "val-every", "validate every K steps (default 0: at the end only)", false,
                                         0, "K"};
    TCLAP::SwitchArg tune_threshold{"", "tune-threshold", "at every validation (needs --val), set each binary task's "
                                                          "threshold to the one that maximizes F0.5 over all its "
                                                          "validation voxels, measure the validation at it and save "
                                                          "it in the model file"};
    TCLAP::ValueArg<std::string> checkpoint{"", "checkpoint", "checkpoint file (default: <out>.ckpt)", false, "",
                                            "CKPT"};
    TCLAP::ValueArg<long long> checkpoint_every{"", "checkpoint-every",
                                                "write the checkpoint every K steps (default 50; 0: at the end only)",
                                                false, 50, "K"};
    TCLAP::ValueArg<std::string> resume{"", "resume", "continue the run saved in this checkpoint (same config, data "
                                                      "and seed) up to --steps",
                                        false, "", "CKPT"};

    explicit TrainingOptions(TCLAP::CmdLine &cmd)
    {
        for (TCLAP::Arg *a : std::initializer_list<TCLAP::Arg *>{
                 &data, &out, &steps, &batch, &lr, &optimizer, &schedule, &warmup, &seed, &patch, &augment, &rotations,
                 &jitter, &blur, &gamma, &contrast, &illumination, &brightness, &noise, &depth_shift, &ema, &sampling,
                 &log, &val, &val_every, &tune_threshold, &checkpoint, &checkpoint_every, &resume})
            cmd.add(a);
    }

    // Every option checked on its own (usage errors: a Failure with exit code 1) and the output paths before
    // anything is read; `inputs` are the files the run reads besides the data.
    TrainArgs read(int threads, const std::vector<NamedPath> &inputs) const
    {
        if (steps.getValue() < 0)
            throw Failure("--steps must be 0 or more", kBadInput);
        if (batch.getValue() < 1)
            throw Failure("--batch must be 1 or more", kBadInput);
        if (lr.isSet() && !(std::isfinite(lr.getValue()) && lr.getValue() > 0))
            throw Failure("--lr must be a positive number", kBadInput);
        if (optimizer.getValue() != "adam" && optimizer.getValue() != "adamw")
            throw Failure("--optimizer must be adam or adamw, not '" + optimizer.getValue() + "'", kBadInput);
        if (schedule.getValue() != "cosine" && schedule.getValue() != "constant")
            throw Failure("--schedule must be cosine or constant, not '" + schedule.getValue() + "'", kBadInput);
        if (warmup.getValue() < 0)
            throw Failure("--warmup must be 0 or more", kBadInput);
        if (warmup.getValue() > 0 && schedule.getValue() == "constant")
            throw Failure("--warmup needs the cosine schedule, not --schedule constant", kBadInput);
        if (warmup.getValue() > 0 && steps.getValue() < warmup.getValue() + 1)
            throw Failure("--warmup " + std::to_string(warmup.getValue()) + " needs --steps of at least " +
                              std::to_string(warmup.getValue() + 1),
                          kBadInput);
        if (val_every.getValue() < 0)
            throw Failure("--val-every must be 0 or more", kBadInput);
        if (val_every.isSet() && !val.isSet())
            throw Failure("--val-every needs --val", kBadInput);
        if (tune_threshold.getValue() && !val.isSet())
            throw Failure("--tune-threshold needs --val (the thresholds are tuned on the validation data)", kBadInput);
        if (!(ema.getValue() == 0.0 || (ema.getValue() > 0.0 && ema.getValue() < 1.0)))
            throw Failure("--ema must be in (0, 1), such as 0.99", kBadInput);
        if (checkpoint_every.getValue() < 0)
            throw Failure("--checkpoint-every must be 0 or more", kBadInput);
        if (sampling.getValue() != "random" && sampling.getValue() != "buckets")
            throw Failure("--sampling must be random or buckets, not '" + sampling.getValue() + "'", kBadInput);

        TrainArgs args;
        args.threads = threads;
        args.data = data.getValue();
        args.out = out.getValue();
        args.val = val.getValue();
        args.log = log.getValue();
        args.checkpoint = checkpoint.isSet() ? checkpoint.getValue() : out.getValue() + ".ckpt";
        args.resume = resume.getValue();
        args.steps = steps.getValue();
        args.val_every = val_every.getValue();
        args.checkpoint_every = checkpoint_every.getValue();
        args.tune_threshold = tune_threshold.getValue();
        if (patch.isSet())
            args.patch = parse_sizes(patch.getValue(), "--patch");
        // The files a run writes, checked before it reads anything: a bad --out used to fail after the last step.
        check_output_path(args.out, "--out");
        check_output_path(args.checkpoint, "--checkpoint");
        if (!args.log.empty())
            check_output_path(args.log, "--log");
        std::vector<NamedPath> read = inputs;
        read.insert(read.end(), {{args.data, "--data"}, {args.val, "--val"}});
        check_distinct({{args.out, "--out"}, {args.checkpoint, "--checkpoint"}, {args.log, "--log"}}, read);
        const int64_t no_patch[3] = {0, 0, 0}; // the configuration's or --patch: build_training sets it
        rm_train_options &opt = args.opt;
        opt = rm_train_options_official(no_patch);
        opt.batch = batch.getValue();
        opt.seed = seed.getValue();
        opt.optim = optimizer.getValue() == "adam" ? rm_optim_adam_official() : rm_optim_adamw_default();
        if (lr.isSet())
            opt.optim.lr = static_cast<float>(lr.getValue());
        opt.ema = static_cast<float>(ema.getValue());
        args.augment = augment_overrides();
        opt.sampling = sampling.getValue() == "buckets" ? RM_SAMPLING_BUCKETS : RM_SAMPLING_RANDOM;
        // A run of one step (or none) has no decay: its one rate is lr.
        opt.schedule = schedule.getValue() == "cosine" && steps.getValue() >= 2
                           ? rm_schedule_warmup_cosine(warmup.getValue(), steps.getValue(), 0.1f)
                           : rm_schedule_constant();
        return args;
    }

    // Each augmentation option is checked as it is read, on an empty recipe with the options read before it (which
    // passed), so that only it can fail and its name can lead the core's message ("--noise: augment: 'noise' ...").
    static void check_alone(const Context &ctx, const TCLAP::Arg &arg, const AugmentOverrides &o)
    {
        AugmentOverrides only = o;
        only.recipe.reset();
        const rm_augment alone = only.applied_to(rm_augment_none());
        if (rm_augment_validate(ctx, &alone) != RM_OK)
            throw Failure("--" + arg.getName() + ": " + rm_ctx_error(ctx), kBadInput);
    }

    // The augmentation options given, each checked (rm_augment_validate) under the option's name.
    AugmentOverrides augment_overrides() const
    {
        Context ctx(1);
        AugmentOverrides o;
        if (augment.isSet()) {
            o.recipe.emplace();
            if (rm_augment_preset(ctx, augment.getValue().c_str(), &*o.recipe) != RM_OK)
                throw Failure("--augment must be none, official, label-free or ink, not '" + augment.getValue() + "'",
                              kBadInput);
        }
        o.rotations = rotations.getValue();
        const std::pair<const TCLAP::ValueArg<double> &, std::optional<float> &> numbers[] = {
            {jitter, o.jitter},         {blur, o.blur},             {gamma, o.gamma}, {contrast, o.contrast},
            {illumination, o.illumination}, {brightness, o.brightness}, {noise, o.noise}};
        for (const auto &[arg, field] : numbers)
            if (arg.isSet()) {
                field = static_cast<float>(arg.getValue());
                check_alone(ctx, arg, o);
            }
        if (depth_shift.isSet()) {
            o.depth_shift = depth_shift.getValue();
            check_alone(ctx, depth_shift, o);
        }
        return o;
    }
};

// The command line of `repmode train`.
TrainArgs parse_train_args(int argc, char **argv)
{
    CommandLine cmd("train", "Trains a RepMode model on volumes listed in a CSV (signal,target,task[,mask], paths "
                             "relative to the CSV), held in memory: random patches in mixed-task batches, random "
                             "flips (optionally rotations, intensity jitter and noise), the loss of each task's kind "
                             "(regression MSE, binary BCE + Dice). Inputs and regression targets are normalized per "
                             "volume with the configuration's \"normalization\" (\"zscore\", the default, or "
                             "\"percentile\": p1-p99 clipped to [0, 1]), which the model file records; binary "
                             "targets are target > 0.5. A task with \"output\": \"2d\" trains on 2D "
                             "labels (and masks) of a surface volume's layers: its loss and validation take the mean "
                             "over depth of the 3D prediction. With --val the model of the best validation is saved; "
                             "--tune-threshold also sets each binary task's threshold to the one that maximizes F0.5 "
                             "on the validation data, which the model file records. --init starts from a trained "
                             "model's weights instead of random ones (fine-tuning, docs/network.md section 5.6).");
    TCLAP::ValueArg<std::string> config("", "config", "configuration JSON (docs/cli.md section 4.1; missing fields "
                                                      "take the lite defaults; tasks: [{\"name\", \"kind\"}], "
                                                      "\"output\": \"2d\" for 2D labels of a surface volume; "
                                                      "\"normalization\": \"zscore\" or \"percentile\" or "
                                                      "{\"method\", \"low\", \"high\"}); required without --init",
                                        false, "", "C.json", cmd);
    TCLAP::ValueArg<std::string> init("", "init", "start from this trained model (training form): its weights, "
                                                  "BatchNorm statistics and normalization; with --config, whose "
                                                  "network must be the model's, its tasks are mapped by name (a new "
                                                  "one starts with gate columns of 0)",
                                      false, "", "M0", cmd);
    TCLAP::ValueArg<std::string> freeze("", "freeze", "encoder: the encoder's weights, gates and BatchNorm statistics "
                                                      "stay as --init has them (needs --init)",
                                        false, "", "encoder", cmd);
    TCLAP::ValueArg<double> encoder_lr("", "encoder-lr", "the encoder's learning rate as a fraction F of --lr, "
                                                         "0 < F <= 1 (default 1; needs --init, not with --freeze)",
                                       false, 1.0, "F", cmd);
    const TrainingOptions options(cmd);
    cmd.parse_or_fail(argc, argv);
    if (!config.isSet() && !init.isSet())
        throw Failure("--config C.json is required (or --init M0 to fine-tune a trained model)", kBadInput);
    if (freeze.isSet() && freeze.getValue() != "encoder")
        throw Failure("--freeze must be encoder, not '" + freeze.getValue() + "'", kBadInput);
    if (!(encoder_lr.getValue() > 0.0 && encoder_lr.getValue() <= 1.0))
        throw Failure("--encoder-lr must be in (0, 1]", kBadInput);
    if ((freeze.isSet() || encoder_lr.isSet()) && !init.isSet())
        throw Failure(std::string(freeze.isSet() ? "--freeze" : "--encoder-lr") + " needs --init", kBadInput);
    if (freeze.isSet() && encoder_lr.isSet())
        throw Failure("--freeze encoder and --encoder-lr exclude each other: a frozen encoder has no learning rate",
                      kBadInput);
    TrainArgs args =
        options.read(cmd.threads(), {{config.getValue(), "--config"}, {init.getValue(), "--init"}});
    args.config = config.getValue();
    args.init = init.getValue();
    args.freeze_encoder = freeze.isSet();
    args.encoder_lr = encoder_lr.getValue();
    return args;
}

// The command line of `repmode add-task`.
TrainArgs parse_add_task_args(int argc, char **argv)
{
    CommandLine cmd("add-task", "Teaches a trained model one more task without changing any of its tasks "
                                "(task-incremental learning, docs/network.md section 5.5): every MoDE gate gains a "
                                "column for the new task, and with --new-expert every MoDE layer gains one more "
                                "expert that only the new task uses. Only those train (the network's weights, the "
                                "gate biases and BatchNorm stay frozen, BatchNorm in inference mode), so the old "
                                "tasks predict the same bytes as before. The data CSV (signal,target,task[,mask]) "
                                "lists volumes of the new task; they are normalized as the model's own.");
    TCLAP::ValueArg<std::string> model("", "model", "trained model (training form)", true, "", "M", cmd);
    TCLAP::ValueArg<std::string> task("", "task", "name of the new task (letters, digits, '_', '-')", true, "", "NAME",
                                      cmd);
    TCLAP::ValueArg<std::string> kind("", "kind", "regression (default) or binary", false, "regression",
                                      "regression|binary", cmd);
    TCLAP::ValueArg<std::string> output("", "output",
                                        "3d (volume labels, default) or 2d (2D labels of a surface "
                                        "volume)",
                                        false, "3d", "3d|2d", cmd);
    TCLAP::SwitchArg new_expert("", "new-expert", "add one more expert to every MoDE layer, for the new task only",
                                cmd);
    TCLAP::ValueArg<int> expert_kernel("", "expert-kernel", "kernel of the new expert: 1, 3 (default) or 5", false, 3,
                                       "K", cmd);
    const TrainingOptions options(cmd);
    cmd.parse_or_fail(argc, argv);
    if (kind.getValue() != "regression" && kind.getValue() != "binary")
        throw Failure("--kind must be regression or binary, not '" + kind.getValue() + "'", kBadInput);
    if (output.getValue() != "3d" && output.getValue() != "2d")
        throw Failure("--output must be 3d or 2d, not '" + output.getValue() + "'", kBadInput);
    const int k = expert_kernel.getValue();
    if (k != 1 && k != 3 && k != 5)
        throw Failure("--expert-kernel must be 1, 3 or 5, not " + std::to_string(k), kBadInput);
    if (expert_kernel.isSet() && !new_expert.getValue())
        throw Failure("--expert-kernel needs --new-expert", kBadInput);
    TrainArgs args = options.read(cmd.threads(), {{model.getValue(), "--model"}});
    args.base_model = model.getValue();
    rm_task t =
        rm_task_make(task.getValue().c_str(), kind.getValue() == "binary" ? RM_TASK_BINARY : RM_TASK_REGRESSION);
    if (task.getValue().size() >= RM_NAME_MAX)
        throw Failure("--task: the name is longer than " + std::to_string(RM_NAME_MAX - 1) + " characters", kBadInput);
    t.output_2d = output.getValue() == "2d";
    args.new_task = t;
    args.added_kernel = new_expert.getValue() ? k : 0;
    return args;
}

using Model = std::unique_ptr<rm_model, void (*)(rm_model *)>;
using Trainer = std::unique_ptr<rm_trainer, void (*)(rm_trainer *)>;

// Everything a run needs, read and checked before its first step.
struct Training {
    Config config;               // train: the configuration file; add-task: null (the model is the configuration)
    std::vector<Sample> samples, val_samples;
    rm_train_options opt;
    Model model;
    Trainer trainer;             // trains `model`, which outlives it (members are destroyed in reverse order)
    std::string base_provenance; // add-task and --init: the provenance of the model the run starts from
    std::string init_sha256;     // --init: the SHA-256 of its file
};

// A trained model file (training form; a deploy-form file is refused), read whole; messages start with `option`
// (the core's name the file).
Model load_model(const Context &ctx, const std::string &path, const std::string &option, const Progress &progress)
{
    progress.stage("reading " + path);
    rm_model *raw = nullptr;
    ctx.check(rm_model_load(ctx, path.c_str(), &raw), option);
    return Model(raw, rm_model_free);
}

// The configuration and normalization the data of a run that starts from `model` is read with: views into the
// model, which must outlive them.
rm_train_config setup_of(const Context &ctx, const rm_model *model, const std::string &path)
{
    rm_train_config setup{};
    setup.cfg = *rm_model_config(model);
    setup.tasks = setup.cfg.tasks;
    ctx.check(rm_model_normalization(ctx, model, &setup.normalization), path);
    return setup;
}

// add-task: the trained model with the new task added, training only it, and the configuration and normalization
// the data is read with (views into the model, which must outlive them).
Model add_task_model(const Context &ctx, const TrainArgs &args, rm_train_config &setup, const Progress &progress)
{
    Model base = load_model(ctx, args.base_model, "--model", progress);
    rm_model *raw = nullptr;
    const rm_config *old = rm_model_config(base.get());
    if (rm_model_task_index(base.get(), args.new_task->name) >= 0) {
        std::string known;
        for (int t = 0; t < old->n_tasks; t++)
            known += std::string(t ? ", " : "") + old->tasks[t].name;
        throw Failure("--task " + std::string(args.new_task->name) + ": " + args.base_model +
                          " has this task already (its tasks: " + known + ")",
                      kBadInput);
    }
    ctx.check(rm_model_add_task(ctx, base.get(), &*args.new_task, args.added_kernel, args.opt.seed, &raw), "--task");
    Model model(raw, rm_model_free);
    ctx.check(rm_model_train_only_task(ctx, model.get(), old->n_tasks));
    setup = setup_of(ctx, model.get(), args.base_model);
    return model;
}

// Whether a configuration file names a normalization (else a model of --init keeps its own).
bool names_normalization(const std::string &path)
{
    Json root(cJSON_Parse(read_text_file(path, "configuration").c_str()), cJSON_Delete);
    return cJSON_GetObjectItemCaseSensitive(root.get(), "normalization") != nullptr;
}

// train --init: the model the run starts from, the file's weights as they are, or with --config (`config`) the
// configuration's tasks mapped by name onto them (rm_model_init_from) and its normalization if it names one; the
// encoder frozen or its learning rate scaled. `setup` as add_task_model's.
Model init_model(const Context &ctx, const TrainArgs &args, const rm_train_config *config, rm_train_config &setup,
                 const Progress &progress)
{
    Model model = load_model(ctx, args.init, "--init", progress);
    if (config) {
        rm_model *raw = nullptr;
        ctx.check(rm_model_init_from(ctx, model.get(), &config->cfg, &raw),
                  args.config + " (--init " + args.init + ")");
        model.reset(raw);
        if (names_normalization(args.config))
            ctx.check(rm_model_set_normalization(ctx, model.get(), &config->normalization), args.config);
    }
    if (args.freeze_encoder)
        ctx.check(rm_model_freeze_encoder(ctx, model.get()));
    ctx.check(rm_model_set_encoder_lr_scale(ctx, model.get(), static_cast<float>(args.encoder_lr)), "--encoder-lr");
    setup = setup_of(ctx, model.get(), args.init);
    return model;
}

// Reads the configuration (or the model add-task extends, or the model of --init) and the data, and makes the model
// and its trainer (restored from --resume if given).
Training build_training(const Context &ctx, const TrainArgs &args, const Progress &progress)
{
    Config config(nullptr, [](rm_train_config *) {});
    Model model(nullptr, rm_model_free);
    rm_train_config of_model{}; // add-task and --init: the model's configuration and normalization
    if (args.new_task) {
        model = add_task_model(ctx, args, of_model, progress);
    } else if (!args.config.empty()) {
        progress.stage("reading " + args.config);
        config = read_config(ctx, args.config);
    }
    std::string init_sha256;
    if (!args.init.empty()) {
        model = init_model(ctx, args, config.get(), of_model, progress);
        init_sha256 = sha256_of(args.init);
    }
    const rm_train_config &setup = model ? of_model : *config;
    const rm_config &cfg = setup.cfg;
    const std::string &source = !args.config.empty() ? args.config : args.new_task ? args.base_model : args.init;
    if (args.tune_threshold &&
        std::none_of(cfg.tasks, cfg.tasks + cfg.n_tasks, [](const rm_task &t) { return t.kind == RM_TASK_BINARY; }))
        throw Failure("--tune-threshold needs a binary task; " + source + " has none", kBadInput);
    rm_train_options opt = args.opt;
    const std::array<int64_t, 3> patch = args.patch.value_or(std::array<int64_t, 3>{cfg.patch[0], cfg.patch[1],
                                                                                     cfg.patch[2]});
    const int64_t multiple = int64_t{1} << cfg.levels;
    for (size_t a = 0; a < 3; a++) {
        if (patch[a] % multiple != 0)
            throw Failure("the patch " + size_string(patch) + " must be a multiple of 2^levels = " +
                              std::to_string(multiple) + " on each axis",
                          kBadInput);
        opt.patch[a] = patch[a];
    }
    // add-task, and --init without --config: the official recipe; else the configuration's.
    opt.augment = args.augment.applied_to(config ? config->augment : rm_train_options_official(opt.patch).augment);
    if (opt.augment.rotations && patch[1] != patch[2])
        throw Failure("--rotations needs a square patch in Y and X, not " + size_string(patch), kBadInput);

    std::vector<Sample> samples = read_data(ctx, args.data, setup, progress);
    std::vector<Sample> val_samples;
    if (!args.val.empty())
        val_samples = read_data(ctx, args.val, setup, progress);

    if (!model) {
        rm_model *raw_model = nullptr;
        ctx.check(rm_model_create(ctx, &cfg, opt.seed, &raw_model));
        model.reset(raw_model);
        ctx.check(rm_model_set_normalization(ctx, model.get(), &setup.normalization));
    }
    std::vector<rm_train_volume> volumes; // the trainer keeps a copy
    for (const Sample &s : samples) {
        rm_train_volume v{};
        v.signal = s.signal->voxels.data();
        v.target = s.target.voxels.data();
        v.mask = s.mask ? s.mask->voxels.data() : nullptr;
        for (size_t a = 0; a < 3; a++)
            v.size[a] = s.signal->size[a];
        v.task = s.task;
        v.target_2d = cfg.tasks[s.task].output_2d;
        volumes.push_back(v);
    }
    rm_trainer *raw_trainer = nullptr;
    ctx.check(rm_trainer_create(ctx, model.get(), &opt, volumes.data(), static_cast<int>(volumes.size()),
                                &raw_trainer));
    Trainer trainer(raw_trainer, rm_trainer_free);
    if (!args.resume.empty()) {
        progress.stage("resuming from " + args.resume);
        ctx.check(rm_trainer_load_checkpoint(ctx, trainer.get(), args.resume.c_str()));
        if (rm_trainer_steps_done(trainer.get()) > args.steps)
            throw Failure(args.resume + " is at step " + std::to_string(rm_trainer_steps_done(trainer.get())) +
                              ", past --steps " + std::to_string(args.steps),
                          kBadInput);
    }
    std::string base_provenance = args.new_task || !args.init.empty() ? rm_model_provenance(model.get()) : "";
    return Training{std::move(config), std::move(samples), std::move(val_samples), opt, std::move(model),
                    std::move(trainer), std::move(base_provenance), std::move(init_sha256)};
}

// The model file, with how it was made: software, training data, steps, seed and the training options; for add-task
// also the task added, the model it extends and that model's own provenance; for --init the model it started from
// (file name, SHA-256, its own provenance) and how its encoder trained.
void save_model(const Context &ctx, const TrainArgs &args, const Training &t, int64_t done)
{
    rm_model *model = t.model.get();
    Json provenance = object();
    cJSON_AddStringToObject(provenance.get(), "software", "repmode " REPMODE_VERSION);
    cJSON_AddStringToObject(provenance.get(), "data", args.data.substr(args.data.rfind('/') + 1).c_str());
    cJSON_AddNumberToObject(provenance.get(), "steps", static_cast<double>(done));
    cJSON_AddNumberToObject(provenance.get(), "seed", static_cast<double>(args.opt.seed));
    std::unique_ptr<char, void (*)(void *)> recipe(rm_train_options_json(&t.opt), rm_free);
    cJSON *training = recipe ? cJSON_Parse(recipe.get()) : nullptr;
    if (!training)
        throw std::bad_alloc();
    cJSON_AddItemToObject(provenance.get(), "training", training);
    if (args.new_task) {
        cJSON_AddStringToObject(provenance.get(), "added_task", args.new_task->name);
        cJSON_AddStringToObject(provenance.get(), "base_model",
                                args.base_model.substr(args.base_model.rfind('/') + 1).c_str());
        cJSON *base = cJSON_Parse(t.base_provenance.c_str());
        if (base)
            cJSON_AddItemToObject(provenance.get(), "base_provenance", base);
    }
    if (!args.init.empty()) {
        cJSON *init = cJSON_AddObjectToObject(provenance.get(), "init");
        cJSON_AddStringToObject(init, "file", args.init.substr(args.init.rfind('/') + 1).c_str());
        cJSON_AddStringToObject(init, "sha256", t.init_sha256.c_str());
        cJSON *base = cJSON_Parse(t.base_provenance.c_str());
        if (base)
            cJSON_AddItemToObject(init, "provenance", base);
        if (args.freeze_encoder)
            cJSON_AddStringToObject(provenance.get(), "freeze", "encoder");
        else
            cJSON_AddNumberToObject(provenance.get(), "encoder_lr", args.encoder_lr);
    }
    std::unique_ptr<char, void (*)(void *)> text(cJSON_PrintUnformatted(provenance.get()), cJSON_free);
    if (!text)
        throw std::bad_alloc();
    ctx.check(rm_model_set_provenance(ctx, model, text.get()));
    ctx.check(rm_model_save(ctx, model, args.out.c_str()));
}

// With --ema, the trainer's weight average stands in the model for as long as this lives: validations and saved
// models are the average's, training goes on from the trained weights.
class AverageInModel {
  public:
    AverageInModel(const Context &ctx, const Training &t)
        : ctx_(ctx), trainer_(t.opt.ema > 0.0f ? t.trainer.get() : nullptr)
    {
        if (trainer_)
            ctx.check(rm_trainer_swap_average(ctx, trainer_));
    }
    ~AverageInModel()
    {
        if (trainer_)
            rm_trainer_swap_average(ctx_, trainer_); // cannot fail: the first exchange succeeded
    }
    AverageInModel(const AverageInModel &) = delete;
    AverageInModel &operator=(const AverageInModel &) = delete;

  private:
    const Context &ctx_;
    rm_trainer *trainer_;
};

// Validates at step `done` (a line in the log), and saves the model when its score is the best so far (lower is
// better; `best` is updated).
void validate_and_keep_best(const Context &ctx, const TrainArgs &args, Training &t, Log &log, const Progress &progress,
                            int64_t done, double &best)
{
    const AverageInModel average(ctx, t);
    Json line = object();
    cJSON_AddNumberToObject(line.get(), "step", static_cast<double>(done));
    const double score = validate(ctx, t.model.get(), t.val_samples, t.opt.patch, args.tune_threshold, line.get());
    const bool better = std::isfinite(score) && score < best;
    cJSON_AddBoolToObject(line.get(), "best", better);
    log.write(line.get());
    std::string tuned;
    const rm_config *cfg = rm_model_config(t.model.get());
    for (int k = 0; args.tune_threshold && k < cfg->n_tasks; k++) {
        const rm_task &task = cfg->tasks[k];
        if (task.kind == RM_TASK_BINARY && !std::isnan(task.threshold))
            tuned += std::string(tuned.empty() ? ", threshold " : ", ") + task.name + " " +
                     std::to_string(task.threshold);
    }
    progress.stage("validation at step " + std::to_string(done) + ": score " + std::to_string(score) + tuned +
                   (better ? " (best so far, saved to " + args.out + ")" : ""));
    if (better) {
        best = score;
        rm_trainer_set_best_score(t.trainer.get(), best);
        save_model(ctx, args, t, done);
    }
}

// The steps from the trainer's up to --steps: a log line and the progress bar each, validations, checkpoints, and
// the model file (the last one unless a validation saved a better one).
void run_training(const Context &ctx, const TrainArgs &args, Training &t, const Progress &progress)
{
    Log log(args.log, !args.resume.empty());
    const int64_t total = args.steps, first = rm_trainer_steps_done(t.trainer.get());
    progress.stage("training " + std::to_string(total - first) + " steps on " + std::to_string(t.samples.size()) +
                   " volumes, patch " + size_string({t.opt.patch[0], t.opt.patch[1], t.opt.patch[2]}) + ", batch " +
                   std::to_string(t.opt.batch));
    const auto start = Clock::now();
    // The best score travels in the checkpoint: a resumed run keeps the model that an earlier part saved to --out
    // unless it validates better.
    const double kept = rm_trainer_best_score(t.trainer.get());
    double best = std::isnan(kept) ? INFINITY : kept;
    for (int64_t s = first; s < total; s++) {
        stop_if_interrupted(); // between steps: the last checkpoint written stays whole and loadable
        const float rate = rm_schedule_lr(&t.opt.schedule, t.opt.optim.lr, s);
        float loss = 0.0f;
        ctx.check(rm_trainer_step(ctx, t.trainer.get(), &loss));
        const int64_t done = s + 1;
        if (!std::isfinite(loss))
            throw Failure("the loss is not finite at step " + std::to_string(done) + " (try a lower --lr)",
                          kBadInput);
        const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
        const double per_second = seconds > 0 ? static_cast<double>(done - first) / seconds : 0.0;
        Json line = object();
        cJSON_AddNumberToObject(line.get(), "step", static_cast<double>(done));
        cJSON_AddNumberToObject(line.get(), "loss", loss);
        cJSON_AddNumberToObject(line.get(), "lr", rate);
        cJSON_AddNumberToObject(line.get(), "seconds", seconds);
        cJSON_AddNumberToObject(line.get(), "steps_per_second", per_second);
        log.write(line.get());
        char status[160];
        std::snprintf(status, sizeof status, "step %lld/%lld loss %.4g lr %.3g %.2f steps/s %s left",
                      static_cast<long long>(done), static_cast<long long>(total), static_cast<double>(loss),
                      static_cast<double>(rate), per_second,
                      duration(per_second > 0 ? static_cast<double>(total - done) / per_second : NAN).c_str());
        progress.bar(static_cast<double>(done) / static_cast<double>(total), status);
        if (done % 10 == 0 || done == total)
            progress.stage(status);

        if (!t.val_samples.empty() && (done == total || (args.val_every > 0 && done % args.val_every == 0)))
            validate_and_keep_best(ctx, args, t, log, progress, done, best);
        if (done == total || (args.checkpoint_every > 0 && done % args.checkpoint_every == 0))
            ctx.check(rm_trainer_save_checkpoint(ctx, t.trainer.get(), args.checkpoint.c_str()));
    }
    if (first == total)
        ctx.check(rm_trainer_save_checkpoint(ctx, t.trainer.get(), args.checkpoint.c_str()));
    if (!std::isfinite(best)) {
        const AverageInModel average(ctx, t);
        save_model(ctx, args, t, total);
        progress.stage("wrote " + args.out);
    }
}

} // namespace

namespace {

int train_with(const TrainArgs &args, const char *command)
{
    Context ctx(args.threads);
    const Progress progress(command);
    Training training = build_training(ctx, args, progress);
    run_training(ctx, args, training, progress);
    return 0;
}

} // namespace

int run_train(int argc, char **argv) { return train_with(parse_train_args(argc, argv), "train"); }

int run_add_task(int argc, char **argv) { return train_with(parse_add_task_args(argc, argv), "add-task"); }

} // namespace repmode::cli
