// repmode batch --model M --manifest CSV --out DIR: predict's pipeline over every row of a manifest (docs/cli.md
// §3.11), several rows at once when there are cores to spare. Every row runs in a process of its own (this program
// again, with --row N): ITK's global singletons are not safe to create from two threads at once, and a row that
// crashes or runs out of memory then fails alone. Each row's outputs are committed together when the row succeeds,
// with their provenance records, so a batch that is stopped (even by SIGKILL, which takes the rows' processes with
// it) resumes where it was: a row whose outputs are all there with the record the row would write (the date aside)
// is skipped. A failing row is reported and the others go on. DIR/summary.csv and DIR/report.html (batch_report.h)
// say how every row ended.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "batch_report.h"
#include "cli.h"
#include "colors.h"
#include "csv_table.h"
#include "display.h"
#include "image_io.h"
#include "interrupt.h"
#include "predict.h"
#include "provenance.h"
#include "render.h"
#include "text_file.h"
#include "volume_ops.h"

namespace repmode::cli {

namespace {

namespace fs = std::filesystem;

// The metrics summary.csv has a column for, eval's names (docs/cli.md §3.6).
const char *const kMetrics[] = {"mse", "mae", "r2", "pearson", "ssim", "f05", "dice", "precision", "recall", "auc"};

// One row of the manifest: what to predict and the options predict takes for it.
struct Row {
    int index = 0, line = 0;
    std::string name, target;
    bool uncertainty = false;
    PredictRequest request; // model, input, tasks, mask and the options; the outputs are set when it runs
};

// How a row ended.
struct Outcome {
    std::string status = "failed", message;
    double seconds = 0.0;
    int64_t voxels = 0;
    std::vector<std::pair<std::string, double>> metrics;
    std::string picture;
};

struct Settings {
    std::string out, format;
    int picture_size = 256;
    int threads_per_row = 0;
};

// The file name an input gives its outputs: its name without the image extension (a folder of layers: its name).
std::string default_name(const std::string &input)
{
    std::string name = fs::path(input).filename().string();
    if (name.empty())
        name = fs::path(input).parent_path().filename().string();
    for (const char *ext : {".nii.gz", ".nrrd", ".nhdr", ".nii", ".mha", ".mhd", ".tiff", ".tif"}) {
        const std::string e = ext;
        if (name.size() > e.size() && name.compare(name.size() - e.size(), e.size(), e) == 0)
            return name.substr(0, name.size() - e.size());
    }
    return name;
}

double number(const std::string &text, const std::string &where)
{
    char *end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || !std::isfinite(v))
        throw Failure(where + ": '" + text + "' is not a number", kBadInput);
    return v;
}

unsigned long long whole(const std::string &text, const std::string &where)
{
    char *end = nullptr;
    const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || text[0] == '-')
        throw Failure(where + ": '" + text + "' is not a whole number >= 0", kBadInput);
    return v;
}

// A yes/no column: empty is no.
bool yes_or_no(const std::string &text, const std::string &where)
{
    if (text != "" && text != "yes" && text != "no")
        throw Failure(where + ": '" + text + "' is neither yes nor no", kBadInput);
    return text == "yes";
}

// The manifest's rows (docs/cli.md §3.11), its syntax and options checked before any work; its files are checked
// when their row runs, so that one missing file fails one row.
std::vector<Row> read_manifest(const std::string &csv, const std::string &model)
{
    const std::vector<CsvRecord> records = read_csv_records(read_text_file(csv, "the manifest"), csv);
    if (records.empty())
        throw Failure(csv + " is empty: it needs a header with the columns input,task and at least one row",
                      kBadInput);
    static const std::vector<std::string> known = {
        "input", "task",  "target",    "mask",      "model",    "name",       "patch",      "overlap",
        "blend", "threshold", "non_finite", "mc_samples", "seed", "mc_dropout", "gate_noise", "uncertainty", "tta"};
    const std::vector<std::string> &header = records[0].fields;
    std::map<std::string, size_t> column;
    for (size_t i = 0; i < header.size(); i++) {
        if (std::find(known.begin(), known.end(), header[i]) == known.end())
            throw Failure(csv + ": unknown column '" + header[i] + "' (input,task and optionally target, mask, "
                                "model, name, patch, overlap, blend, threshold, non_finite, mc_samples, seed, "
                                "mc_dropout, gate_noise, uncertainty, tta)",
                          kBadInput);
        if (!column.emplace(header[i], i).second)
            throw Failure(csv + ": the column '" + header[i] + "' is named twice", kBadInput);
    }
    if (!column.count("input") || !column.count("task"))
        throw Failure(csv + ": the header must name the columns input and task", kBadInput);

    std::vector<Row> rows;
    std::map<std::string, int> names;
    for (size_t r = 1; r < records.size(); r++) {
        const CsvRecord &rec = records[r];
        const std::string where = csv + " line " + std::to_string(rec.line);
        if (rec.fields.size() != header.size())
            throw Failure(where + " has " + std::to_string(rec.fields.size()) + " fields, the header " +
                              std::to_string(header.size()),
                          kBadInput);
        const auto field = [&](const char *name) {
            const auto c = column.find(name);
            return c == column.end() ? std::string() : rec.fields[c->second];
        };
        const auto option = [&](const char *name) { return where + ", " + name; };
        Row row;
        row.index = static_cast<int>(rows.size()) + 1;
        row.line = rec.line;
        PredictRequest &q = row.request;
        q.via = "repmode batch";
        q.input = resolve_csv_path(csv, field("input"));
        q.tasks = field("task");
        q.mask = resolve_csv_path(csv, field("mask"));
        q.model = field("model").empty() ? model : resolve_csv_path(csv, field("model"));
        row.target = resolve_csv_path(csv, field("target"));
        if (q.input.empty() || q.tasks.empty())
            throw Failure(where + ": every row needs an input and a task", kBadInput);
        if (q.model.empty())
            throw Failure(where + " names no model: give --model, or a model column", kBadInput);
        if (!row.target.empty() && q.tasks.find(',') != std::string::npos)
            throw Failure(where + ": a target is measured against one task, not '" + q.tasks + "'", kBadInput);
        row.name = field("name").empty() ? default_name(q.input) : field("name");
        if (row.name.empty() || row.name[0] == '.' || row.name.find('/') != std::string::npos)
            throw Failure(where + ": '" + row.name + "' cannot name files in the output folder", kBadInput);
        if (!names.emplace(row.name, rec.line).second)
            throw Failure(where + " and line " + std::to_string(names[row.name]) + " would both write '" + row.name +
                              "': give one of them another name in a name column",
                          kBadInput);
        if (!field("patch").empty())
            q.patch = field("patch");
        if (!field("overlap").empty())
            q.overlap = number(field("overlap"), option("overlap"));
        if (!(q.overlap >= 0.0 && q.overlap < 1.0))
            throw Failure(option("overlap") + " must be in [0, 1)", kBadInput);
        if (!field("blend").empty())
            q.blend = field("blend");
        if (q.blend != "gaussian" && q.blend != "constant")
            throw Failure(option("blend") + ": '" + q.blend + "' is neither gaussian nor constant", kBadInput);
        q.thresholds = field("threshold");
        if (!field("non_finite").empty())
            q.non_finite = field("non_finite");
        if (q.non_finite != "refuse" && q.non_finite != "zero" && q.non_finite != "mean")
            throw Failure(option("non_finite") + ": '" + q.non_finite + "' is not refuse, zero or mean", kBadInput);
        row.uncertainty = yes_or_no(field("uncertainty"), option("uncertainty"));
        q.tta = yes_or_no(field("tta"), option("tta"));
        q.mc_samples = row.uncertainty ? 10u : 0u;
        if (!field("mc_samples").empty())
            q.mc_samples = static_cast<unsigned>(whole(field("mc_samples"), option("mc_samples")));
        if (!field("seed").empty())
            q.seed = whole(field("seed"), option("seed"));
        if (!field("mc_dropout").empty())
            q.mc_dropout = number(field("mc_dropout"), option("mc_dropout"));
        if (!field("gate_noise").empty())
            q.gate_noise = number(field("gate_noise"), option("gate_noise"));
        rows.push_back(std::move(row));
    }
    if (rows.empty())
        throw Failure(csv + " has no rows", kBadInput);
    return rows;
}

// A row's progress, in its own process: stage lines named after the row, and its bar as "progress F" lines on
// stdout for the batch's process to draw.
class RowProgress : public Progress {
  public:
    explicit RowProgress(const std::string &name) : Progress("batch: " + name) {}
    void bar(double fraction, const std::string &) const override
    {
        std::printf("progress %.4f\n", fraction);
        std::fflush(stdout);
    }
};

// The facts of a model file a row needs besides predict: its provenance, patch and tasks.
struct ModelFacts {
    std::string provenance;
    std::array<int64_t, 3> patch{};
    std::vector<rm_task> tasks;
};

ModelFacts model_facts(const std::string &path)
{
    Context ctx(1);
    rm_model_info info;
    ctx.check(rm_model_info_read(ctx, path.c_str(), &info));
    std::unique_ptr<rm_model_info, void (*)(rm_model_info *)> owned(&info, rm_model_info_free);
    ModelFacts facts;
    facts.provenance = info.provenance ? info.provenance : "";
    facts.patch = {info.cfg.patch[0], info.cfg.patch[1], info.cfg.patch[2]};
    facts.tasks.assign(info.cfg.tasks, info.cfg.tasks + info.cfg.n_tasks);
    return facts;
}

// The files a row writes in the output folder.
struct RowFiles {
    std::string prediction, labels, uncertainty, picture;
};

RowFiles row_files(const Row &row, const Settings &s)
{
    const auto at = [&](const std::string &suffix) { return (fs::path(s.out) / (row.name + suffix)).string(); };
    RowFiles f;
    f.prediction = at("." + s.format);
    f.labels = at("-labels." + s.format);
    if (row.uncertainty)
        f.uncertainty = at("-uncertainty." + s.format);
    if (s.picture_size > 0)
        f.picture = at(".png");
    return f;
}

// Whether every output of the row is there with the record this request would write (the date aside).
bool already_done(const RowFiles &files, const cJSON *expected)
{
    std::error_code ec;
    for (const std::string &f : {files.prediction, files.labels, files.uncertainty, files.picture}) {
        if (f.empty())
            continue;
        if (!fs::exists(f, ec))
            return false;
        if (f == files.picture)
            continue;
        const std::string text = read_provenance(f);
        if (text.empty())
            return false;
        const Json recorded = parse_record(text, f);
        if (!first_difference(request_part(recorded.get()).get(), expected).empty())
            return false;
    }
    return true;
}

// The model's normalization as a prediction's record names it, for a regression task's target.
rm_normalization recorded_method(const std::string &prediction)
{
    const Json record = parse_record(read_provenance(prediction), prediction);
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(record.get(), "normalization");
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(n, "method");
    if (!cJSON_IsString(method))
        throw Failure(prediction + ": its provenance names no normalization", kBadInput);
    if (std::string(method->valuestring) == "percentile")
        return rm_normalization_percentile(cJSON_GetObjectItemCaseSensitive(n, "low")->valuedouble,
                                           cJSON_GetObjectItemCaseSensitive(n, "high")->valuedouble);
    return rm_normalization_zscore();
}

// eval's metrics (docs/cli.md §3.6) of the written prediction against the row's target.
std::vector<std::pair<std::string, double>> measure(const Row &row, const rm_task &task, const std::string &prediction)
{
    Context ctx(1);
    Volume pred = read_volume(prediction);
    Volume target = read_volume(row.target);
    settle_non_finite(ctx, target, row.target, "refuse", "; a target must be finite");
    check_same_size(pred, prediction, target, row.target);
    Volume mask;
    if (!row.request.mask.empty()) {
        mask = read_volume(row.request.mask);
        check_same_size(pred, prediction, mask, row.request.mask);
    }
    rm_task measured = task;
    if (!row.request.thresholds.empty())
        measured.threshold = static_cast<float>(number(row.request.thresholds, "threshold"));
    if (task.kind != RM_TASK_BINARY)
        normalize(ctx, recorded_method(prediction), target.voxels, row.target);
    Json o(cJSON_CreateObject(), cJSON_Delete);
    add_metrics(ctx, o.get(), measured, pred, target, mask.voxels.empty() ? nullptr : &mask, true);
    std::vector<std::pair<std::string, double>> metrics;
    for (const char *name : kMetrics) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o.get(), name);
        if (v)
            metrics.emplace_back(name, cJSON_IsNumber(v) ? v->valuedouble : NAN);
    }
    return metrics;
}

// Runs one row: skipped when its outputs are there with a matching record, else predicted, labelled and drawn, its
// outputs committed together.
Outcome run_row(Row row, const Settings &s)
{
    Outcome out;
    const auto began = std::chrono::steady_clock::now();
    try {
        const RowFiles files = row_files(row, s);
        PredictRequest &q = row.request;
        q.threads = s.threads_per_row;
        const ModelFacts model = model_facts(q.model);
        const std::array<int64_t, 3> patch = q.patch.empty() ? model.patch : parse_sizes(q.patch, "patch");
        const auto size = VolumeSource(q.input).image()->GetLargestPossibleRegion().GetSize();
        out.voxels = static_cast<int64_t>(size[0] * size[1] * size[2]);
        const Context ctx(1);
        const PredictionRecord expected(q, model.provenance, patch, rm_isa_name(rm_ctx_isa(ctx)));

        if (already_done(files, expected.request_part().get())) {
            out.status = "skipped";
            out.message = "its outputs are there, with this row's provenance";
        } else {
            q.output = files.prediction;
            q.labels = files.labels;
            q.uncertainty = files.uncertainty;
            OutputFiles outputs;
            RowProgress progress(row.name);
            predict(q, progress, outputs);
            if (!files.picture.empty()) {
                progress.stage("drawing " + files.picture);
                const Volume labels = read_volume(outputs.staged(files.labels));
                Volume image = read_volume(q.input);
                if (image.size != labels.size) // 2D labels: the input's mean over depth under them
                    image = depth_mean(ctx, image);
                std::unique_ptr<XDisplay> display; // the batch's, named by DISPLAY
                if (has_3d_view(image.size))
                    display = std::make_unique<XDisplay>("batch's pictures (--picture-size 0 draws none)");
                render_picture(image, &labels, ColorTable(), s.picture_size, display ? display->id() : nullptr,
                               outputs.stage(files.picture));
            }
            outputs.commit();
            out.status = "done";
        }
        if (!row.target.empty()) {
            const auto t = std::find_if(model.tasks.begin(), model.tasks.end(),
                                        [&](const rm_task &k) { return q.tasks == k.name; });
            if (t == model.tasks.end())
                throw Failure("the model " + q.model + " has no task '" + q.tasks + "'", kBadInput);
            out.metrics = measure(row, *t, files.prediction);
        }
        out.picture = files.picture;
    } catch (const Failure &e) {
        out.status = "failed";
        out.message = e.what();
    } catch (const std::bad_alloc &) {
        out.status = "failed";
        out.message = "out of memory";
    } catch (const std::exception &e) {
        out.status = "failed";
        out.message = std::string("internal error: ") + e.what();
    }
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
    return out;
}

// An outcome as the row's process reports it: one line of JSON after "outcome ".
std::string outcome_line(const Outcome &o)
{
    Json j(cJSON_CreateObject(), cJSON_Delete);
    cJSON_AddStringToObject(j.get(), "status", o.status.c_str());
    cJSON_AddStringToObject(j.get(), "message", o.message.c_str());
    cJSON_AddNumberToObject(j.get(), "seconds", o.seconds);
    cJSON_AddNumberToObject(j.get(), "voxels", static_cast<double>(o.voxels));
    cJSON_AddStringToObject(j.get(), "picture", o.picture.c_str());
    cJSON *metrics = cJSON_AddArrayToObject(j.get(), "metrics");
    for (const auto &[name, value] : o.metrics) {
        cJSON *m = cJSON_CreateArray();
        cJSON_AddItemToArray(m, cJSON_CreateString(name.c_str()));
        cJSON_AddItemToArray(m, std::isfinite(value) ? cJSON_CreateNumber(value) : cJSON_CreateNull());
        cJSON_AddItemToArray(metrics, m);
    }
    std::unique_ptr<char, void (*)(void *)> text(cJSON_PrintUnformatted(j.get()), cJSON_free);
    return "outcome " + std::string(text.get()) + "\n";
}

Outcome parse_outcome(const std::string &json)
{
    Outcome o;
    const Json j = parse_record(json, "a row's outcome");
    const auto text = [&](const char *name) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j.get(), name);
        return cJSON_IsString(v) ? std::string(v->valuestring) : std::string();
    };
    o.status = text("status");
    o.message = text("message");
    o.picture = text("picture");
    o.seconds = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(j.get(), "seconds"));
    o.voxels = static_cast<int64_t>(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(j.get(), "voxels")));
    const cJSON *metrics = cJSON_GetObjectItemCaseSensitive(j.get(), "metrics");
    for (const cJSON *m = metrics ? metrics->child : nullptr; m; m = m->next) {
        const cJSON *value = cJSON_GetArrayItem(m, 1);
        o.metrics.emplace_back(cJSON_GetArrayItem(m, 0)->valuestring, cJSON_IsNumber(value) ? value->valuedouble : NAN);
    }
    return o;
}

// A row running in its own process: this program with the batch's options and --row.
struct Child {
    size_t row = 0;
    pid_t pid = -1;
    int out = -1; // its stdout: progress and outcome lines
    std::string pending;
    bool reported = false;
};

Child spawn(size_t row, const std::vector<std::string> &args)
{
    int fds[2];
    if (pipe(fds) != 0)
        throw Failure("cannot start a row's process: " + std::string(std::strerror(errno)), kInternal);
    std::vector<std::string> mine = args;
    mine.push_back("--row");
    mine.push_back(std::to_string(row + 1));
    std::vector<char *> argv;
    for (std::string &a : mine)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); // a batch killed outright takes its rows with it
        close(fds[0]);
        dup2(fds[1], STDOUT_FILENO);
        close(fds[1]);
        execv("/proc/self/exe", argv.data());
        _exit(127);
    }
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        throw Failure("cannot start a row's process: " + std::string(std::strerror(errno)), kInternal);
    }
    return Child{row, pid, fds[0], "", false};
}

// Draws the bar over rows and voxels: each row counts its input's voxels (1 before they are known).
class BatchProgress {
  public:
    explicit BatchProgress(size_t rows) : fractions_(rows, 0.0), voxels_(rows, 1), progress_("batch") {}
    void set(size_t row, double fraction, int64_t voxels = 0)
    {
        fractions_[row] = fraction;
        if (voxels > 0)
            voxels_[row] = voxels;
        double done = 0.0, total = 0.0;
        size_t finished = 0;
        for (size_t i = 0; i < fractions_.size(); i++) {
            done += fractions_[i] * static_cast<double>(voxels_[i]);
            total += static_cast<double>(voxels_[i]);
            finished += fractions_[i] >= 1.0;
        }
        progress_.bar(finished == fractions_.size() ? 1.0 : std::min(done / total, 0.999),
                      std::to_string(finished) + "/" + std::to_string(fractions_.size()) + " volumes");
    }
    const Progress &progress() const { return progress_; }

  private:
    std::vector<double> fractions_;
    std::vector<int64_t> voxels_;
    Progress progress_;
};

// Reads what a row's process wrote; returns false at its end.
bool read_child(Child &c, BatchProgress &bar, std::vector<Outcome> &outcomes)
{
    char buffer[4096];
    const ssize_t n = read(c.out, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR)
        return true;
    if (n > 0) {
        c.pending.append(buffer, static_cast<size_t>(n));
        for (size_t eol; (eol = c.pending.find('\n')) != std::string::npos;) {
            const std::string line = c.pending.substr(0, eol);
            c.pending.erase(0, eol + 1);
            if (line.rfind("progress ", 0) == 0) {
                bar.set(c.row, std::strtod(line.c_str() + 9, nullptr));
            } else if (line.rfind("outcome ", 0) == 0) {
                outcomes[c.row] = parse_outcome(line.substr(8));
                c.reported = true;
            }
        }
        return true;
    }
    return false;
}

// Waits for a row's process to end; a process that ended without its outcome (a crash, the memory killer) fails
// its row with the reason.
void reap(Child &c, Outcome &outcome)
{
    close(c.out);
    int status = 0;
    while (waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (c.reported)
        return;
    outcome = Outcome();
    if (WIFSIGNALED(status))
        outcome.message = "the row's process was ended by signal " + std::to_string(WTERMSIG(status)) + " (" +
                          strsignal(WTERMSIG(status)) + ")";
    else
        outcome.message = "the row's process ended with exit code " + std::to_string(WEXITSTATUS(status)) +
                          " without a result";
}

// Runs every row, `workers` at once, each in its own process; `args` runs this batch's command line.
std::vector<Outcome> run_rows(size_t rows, unsigned workers, const std::vector<std::string> &args)
{
    std::vector<Outcome> outcomes(rows);
    BatchProgress bar(rows);
    std::vector<Child> running;
    size_t next = 0;
    bool stopping = false;
    while (next < rows || !running.empty()) {
        if (interrupted() && !stopping) { // a signal sent to the batch alone (SIGTERM) stops its rows too
            stopping = true;
            for (const Child &c : running)
                kill(c.pid, interrupted());
        }
        while (!stopping && next < rows && running.size() < workers)
            running.push_back(spawn(next++, args));
        std::vector<pollfd> fds;
        for (const Child &c : running)
            fds.push_back({c.out, POLLIN, 0});
        if (poll(fds.data(), fds.size(), 200) < 0 && errno != EINTR)
            throw Failure("cannot watch the rows' processes: " + std::string(std::strerror(errno)), kInternal);
        for (size_t i = running.size(); i-- > 0;) {
            if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)) || read_child(running[i], bar, outcomes))
                continue;
            reap(running[i], outcomes[running[i].row]);
            bar.set(running[i].row, 1.0, outcomes[running[i].row].voxels);
            const Outcome &o = outcomes[running[i].row];
            bar.progress().stage("row " + std::to_string(running[i].row + 1) + ": " + o.status +
                                 (o.message.empty() ? "" : " (" + o.message + ")"));
            running.erase(running.begin() + static_cast<std::ptrdiff_t>(i));
        }
    }
    return outcomes;
}

// A path as the summary shows it: "./data/a.mha" as "data/a.mha".
std::string shown(const std::string &path) { return fs::path(path).lexically_normal().string(); }

// A CSV field: quoted when it holds a comma, a quote or a line break.
std::string csv_field(const std::string &v)
{
    if (v.find_first_of(",\"\r\n") == std::string::npos)
        return v;
    std::string q = "\"";
    for (char c : v)
        q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
}

std::string summary_csv(const std::vector<Row> &rows, const std::vector<Outcome> &outcomes)
{
    std::ostringstream csv;
    csv << "row,name,input,task,status,message,seconds,voxels";
    for (const char *m : kMetrics)
        csv << ',' << m;
    csv << '\n';
    for (size_t i = 0; i < rows.size(); i++) {
        const Outcome &o = outcomes[i];
        char seconds[32];
        std::snprintf(seconds, sizeof seconds, "%.3f", o.seconds);
        csv << rows[i].index << ',' << csv_field(rows[i].name) << ',' << csv_field(shown(rows[i].request.input)) << ','
            << csv_field(rows[i].request.tasks) << ',' << o.status << ',' << csv_field(o.message) << ',' << seconds
            << ',' << o.voxels;
        for (const char *m : kMetrics) {
            csv << ',';
            for (const auto &[name, value] : o.metrics)
                if (name == m) {
                    char v[40];
                    std::snprintf(v, sizeof v, "%.9g", value);
                    csv << (std::isfinite(value) ? v : "nan");
                }
        }
        csv << '\n';
    }
    return csv.str();
}

} // namespace

int run_batch(int argc, char **argv)
{
    CommandLine cmd("batch", "Predicts every row of a manifest (columns input,task and optionally target, mask, "
                             "model, name and predict's options) into DIR: <name>.nrrd, <name>-labels.nrrd, "
                             "<name>.png, with their provenance; rows whose outputs are already there with the same "
                             "provenance are skipped, so an interrupted batch resumes. Writes DIR/summary.csv and "
                             "DIR/report.html. Exit 0 when every row succeeded, 1 when one failed.");
    TCLAP::ValueArg<std::string> model("", "model", "model file for the rows without a model column", false, "", "M",
                                       cmd);
    TCLAP::ValueArg<std::string> manifest("", "manifest", "the manifest (CSV; paths relative to its folder)", true, "",
                                          "CSV", cmd);
    TCLAP::ValueArg<std::string> out("", "out", "output folder (made if missing)", true, "", "DIR", cmd);
    TCLAP::ValueArg<unsigned> jobs("", "jobs", "rows predicted at once (default: one per 4 cores, at least one)",
                                   false, 0, "N", cmd);
    std::vector<std::string> formats{"nrrd", "mha", "nii", "nii.gz"};
    TCLAP::ValuesConstraint<std::string> format_values(formats);
    TCLAP::ValueArg<std::string> format("", "format", "image format of the outputs", false, "nrrd", &format_values,
                                        cmd);
    TCLAP::ValueArg<int> picture_size("", "picture-size", "pixels of each row's picture (render's --size), 0 for "
                                                          "none",
                                      false, 256, "N", cmd);
    TCLAP::ValueArg<size_t> row("", "row", "internal: run row N alone and report it on stdout (what the batch starts "
                                           "for each row)",
                                 false, 0, "N", cmd);
    cmd.parse_or_fail(argc, argv);
    if (picture_size.getValue() != 0 && (picture_size.getValue() < 16 || picture_size.getValue() > 4096))
        throw Failure("--picture-size must be 0 (no pictures) or 16 to 4096 pixels", kBadInput);

    std::vector<Row> rows = read_manifest(manifest.getValue(), model.getValue());
    OutputFiles made;
    std::error_code ec;
    if (!fs::is_directory(out.getValue(), ec))
        made.make_folder(out.getValue());
    Settings settings;
    settings.out = out.getValue();
    settings.format = format.getValue();
    settings.picture_size = picture_size.getValue();
    settings.threads_per_row = cmd.threads();
    if (row.isSet()) { // one row, in the process the batch started for it
        if (row.getValue() < 1 || row.getValue() > rows.size())
            throw Failure("--row " + std::to_string(row.getValue()) + " is not a row of " + manifest.getValue(),
                          kBadInput);
        std::fputs(outcome_line(run_row(rows[row.getValue() - 1], settings)).c_str(), stdout);
        return 0;
    }
    // The pictures' 3D views need a display: had once, before any work, so that a machine without one fails at once,
    // and named to the rows' processes.
    std::unique_ptr<XDisplay> display;
    if (settings.picture_size > 0) {
        display = std::make_unique<XDisplay>("batch's pictures (--picture-size 0 draws none)");
        setenv("DISPLAY", display->name().c_str(), 1);
    }
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    const unsigned threads = cmd.threads() > 0 ? static_cast<unsigned>(cmd.threads()) : cores;
    const unsigned workers = std::min<unsigned>(static_cast<unsigned>(rows.size()),
                                                jobs.getValue() > 0 ? jobs.getValue() : std::max(1u, cores / 4));
    const unsigned per_row = std::max(1u, threads / workers);
    const std::vector<std::string> args = {"repmode", "batch", "--manifest", manifest.getValue(), "--out",
                                           settings.out, "--model", model.getValue(), "--format", settings.format,
                                           "--picture-size", std::to_string(settings.picture_size), "--threads",
                                           std::to_string(per_row)};
    Progress progress("batch");
    progress.stage(std::to_string(rows.size()) + " row(s) of " + manifest.getValue() + " into " + settings.out +
                   ", " + std::to_string(workers) + " at once with " + std::to_string(per_row) + " thread(s) each");
    const std::vector<Outcome> outcomes = run_rows(rows.size(), workers, args);
    stop_if_interrupted(); // the rows done so far are committed: the next run resumes after them

    std::vector<ReportRow> report;
    size_t failed = 0;
    for (size_t i = 0; i < rows.size(); i++) {
        const Outcome &o = outcomes[i];
        failed += o.status == "failed";
        report.push_back({rows[i].index, rows[i].name, shown(rows[i].request.input), rows[i].request.tasks, o.status,
                          o.message, o.seconds, o.voxels, o.metrics, o.status == "failed" ? "" : o.picture});
    }
    const Context ctx(1);
    ReportRun run{model.getValue(), manifest.getValue(), settings.out, REPMODE_VERSION, rm_isa_name(rm_ctx_isa(ctx)),
                  record_date()};
    const std::string summary = (fs::path(settings.out) / "summary.csv").string();
    const std::string page = (fs::path(settings.out) / "report.html").string();
    write_text(summary, summary_csv(rows, outcomes), made);
    try {
        write_text(page, report_html(run, report), made);
    } catch (const std::runtime_error &e) {
        throw Failure(std::string("cannot write the report: ") + e.what(), kBadInput);
    }
    made.commit();
    progress.stage("wrote " + summary + " and " + page);
    if (failed > 0)
        throw Failure(std::to_string(failed) + " of " + std::to_string(rows.size()) + " row(s) failed (see " +
                          summary + ")",
                      kBadInput);
    return 0;
}

} // namespace repmode::cli
