// repmode predict --model M --task T[,T2...] --input IN --output OUT [--labels L] [--colors FILE]: the sliding-window
// prediction of one or more tasks, streamed: ITK reads the input and writes the output region by region through
// itk::RepModeImageFilter, so memory stays bounded as the volume grows (MetaImage and uncompressed NIfTI stream both
// ways, TIFF layers stream in; other formats are read or written whole).
//
// The input is normalized as the model was trained (repmode.normalization: z-score or percentile clipping) with the
// parameters of the whole volume, computed first in two streamed passes (itk::RepModeNormalization). One task writes a
// scalar image; several write one component per task. Tasks trained on 2D labels of a surface volume write the
// one-layer map (the mean over depth of the logits, as trained), streamed by rows. The label map is made from the written predictions, read
// back (so nothing is computed twice), one label value per task (itk::RepModeLabelMapFilter). With --mask, the
// predictions and labels are 0 where the mask is not above 0.5 (a papyrus fragment's mask: air that training never
// supervised would otherwise show stray ink). --segmentation writes the label map as a 3D Slicer segmentation too
// (segmentation.h).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include <itkBinaryGeneratorImageFilter.h>
#include <itkChangeInformationImageFilter.h>
#include <itkCommand.h>
#include <itkComposeImageFilter.h>
#include <itkImageFileReader.h>
#include <itkVectorImage.h>
#include <itkVectorIndexSelectionCastImageFilter.h>

#include "predict.h"

#include "cli.h"
#include "image_io.h"
#include "interrupt.h"
#include "itkRepModeImageFilter.h"
#include "itkRepModeLabelMapFilter.h"
#include "itkRepModeNonFiniteImageFilter.h"
#include "itkRepModeNormalization.h"
#include "segmentation.h"
#include "label_mesh.h"
#include "output_paths.h"
#include "provenance.h"
#include "volume_ops.h"

namespace repmode::cli {

namespace {

namespace fs = std::filesystem;

using Prediction = itk::RepModeImageFilter<FloatImage, FloatImage>;
using LabelImage = itk::Image<uint8_t, 3>;
using NonFinite = itk::RepModeNonFiniteImageFilter<FloatImage>;
using LabelMap = itk::RepModeLabelMapFilter<FloatImage, LabelImage>;
using Components = itk::VectorImage<float, 3>;

// Streamed pieces hold about this many voxels; with the core's blending sums and the input's halo, a piece costs
// about 40 bytes per voxel.
constexpr double kPieceVoxels = 8.0 * 1024 * 1024;

std::vector<std::string> split_list(const std::string &list)
{
    std::vector<std::string> items;
    std::stringstream in(list);
    for (std::string item; std::getline(in, item, ',');)
        items.push_back(item);
    return items;
}

// The model's task of each name, in the order given; unknown or repeated names are refused.
std::vector<rm_task> find_tasks(const rm_model_info &info, const std::string &model, const std::string &list)
{
    std::vector<rm_task> found;
    for (const std::string &name : split_list(list)) {
        const rm_task *t = nullptr;
        for (int i = 0; i < info.cfg.n_tasks && !t; i++)
            if (name == info.cfg.tasks[i].name)
                t = &info.cfg.tasks[i];
        if (!t) {
            std::string names;
            for (int i = 0; i < info.cfg.n_tasks; i++)
                names += std::string(i ? ", " : "") + info.cfg.tasks[i].name;
            throw Failure("the model " + model + " has no task '" + name + "' (its tasks: " + names + ")", kBadInput);
        }
        for (const rm_task &seen : found)
            if (name == seen.name)
                throw Failure("--task names '" + name + "' twice", kBadInput);
        found.push_back(*t);
    }
    if (found.empty())
        throw Failure("--task names no task", kBadInput);
    return found;
}

// --threshold: nothing (every task's default), one value for every task, or one per task.
std::vector<double> parse_thresholds(const std::string &spec, size_t tasks)
{
    std::vector<double> t;
    for (const std::string &item : split_list(spec)) {
        char *end = nullptr;
        const double v = std::strtod(item.c_str(), &end);
        if (item.empty() || *end != '\0' || !std::isfinite(v))
            throw Failure("--threshold: '" + item + "' is not a number", kBadInput);
        t.push_back(v);
    }
    if (t.size() == 1)
        t.assign(tasks, t[0]);
    if (!t.empty() && t.size() != tasks)
        throw Failure("--threshold gives " + std::to_string(t.size()) + " values for " + std::to_string(tasks) +
                          " tasks: give one, or one per task",
                      kBadInput);
    return t;
}

// Pieces of about kPieceVoxels of input along the axis the writer splits (Z, or Y for one-layer 2D maps), each at
// least two patches deep where the volume allows: windows that straddle a piece's border are computed for both.
unsigned stream_divisions(const FloatImage *image, bool maps, const std::array<int64_t, 3> &patch, unsigned requested)
{
    if (requested > 0)
        return requested;
    const auto size = image->GetLargestPossibleRegion().GetSize();
    const double voxels = static_cast<double>(size[0]) * size[1] * size[2];
    const double by_memory = std::ceil(voxels / kPieceVoxels);
    const double along = static_cast<double>(maps ? size[1] : size[2]), window = static_cast<double>(patch[maps ? 1 : 0]);
    const double by_depth = std::floor(along / (2.0 * window));
    return static_cast<unsigned>(std::max(1.0, std::min(by_memory, by_depth)));
}

// Tasks with 2D labels write one-layer maps, the others volumes: one output file holds one kind.
bool all_maps(const std::vector<rm_task> &tasks)
{
    for (const rm_task &t : tasks)
        if (t.output_2d != tasks.front().output_2d)
            throw Failure(std::string("'") + tasks.front().name + "' and '" + t.name + "' cannot share an output: " +
                              "one has 2D labels (a one-layer map), the other 3D; predict them in separate runs",
                          kBadInput);
    return tasks.front().output_2d != 0;
}

// Draws the progress of the prediction filters: each piece runs every task's filter in turn.
class PredictionProgress : public itk::Command {
  public:
    using Self = PredictionProgress;
    using Pointer = itk::SmartPointer<Self>;
    itkNewMacro(Self);

    void watch(const std::vector<Prediction::Pointer> &filters, unsigned pieces, const Progress *progress)
    {
        pieces_ = pieces;
        filters_.clear();
        for (const auto &f : filters) {
            filters_.push_back(f.GetPointer());
            f->AddObserver(itk::ProgressEvent(), this);
        }
        filters.front()->AddObserver(itk::StartEvent(), this);
        progress_ = progress;
    }
    void Execute(itk::Object *caller, const itk::EventObject &event) override
    {
        Execute(static_cast<const itk::Object *>(caller), event);
    }
    void Execute(const itk::Object *caller, const itk::EventObject &event) override
    {
        if (itk::StartEvent().CheckEvent(&event)) {
            piece_++;
            return;
        }
        if (interrupted()) // the filters cancel the core at its next window; the writer then removes its file
            for (const Prediction *f : filters_)
                const_cast<Prediction *>(f)->AbortGenerateDataOn();
        for (size_t i = 0; i < filters_.size(); i++)
            if (filters_[i] == caller) {
                // The fraction of the whole run, not of the piece, so that it only grows (Slicer's progress bar);
                // formats written whole run one piece, and the final bar(1) covers the rest.
                const double in_piece = (static_cast<double>(i) + filters_[i]->GetProgress()) / filters_.size();
                const double f = (std::max(piece_ - 1, 0) + in_piece) / std::max(pieces_, 1u);
                progress_->bar(std::min(f, 1.0), "piece " + std::to_string(piece_));
            }
    }

  private:
    std::vector<const Prediction *> filters_;
    const Progress *progress_ = nullptr;
    int piece_ = 0;
    unsigned pieces_ = 1;
};

// Runs a prediction filter over its whole output; its problems (the input's, an interruption) are Failures, as a
// writer's are.
void update_or_fail(Prediction *filter)
{
    try {
        filter->Update();
    } catch (const itk::ExceptionObject &e) {
        throw Failure(describe(e), kBadInput);
    }
}

// The predictions written to `path` (one component per task), read back as one scalar image per task.
std::vector<FloatImage::Pointer> read_predictions(const std::string &path, size_t tasks,
                                                  std::vector<itk::ProcessObject::Pointer> &pipeline)
{
    std::vector<FloatImage::Pointer> images;
    if (tasks == 1) {
        auto reader = itk::ImageFileReader<FloatImage>::New();
        reader->SetFileName(path);
        pipeline.push_back(reader.GetPointer());
        images.push_back(reader->GetOutput());
        return images;
    }
    auto reader = itk::ImageFileReader<Components>::New();
    reader->SetFileName(path);
    pipeline.push_back(reader.GetPointer());
    for (size_t i = 0; i < tasks; i++) {
        auto pick = itk::VectorIndexSelectionCastImageFilter<Components, FloatImage>::New();
        pick->SetInput(reader->GetOutput());
        pick->SetIndex(static_cast<unsigned>(i));
        pipeline.push_back(pick.GetPointer());
        images.push_back(pick->GetOutput());
    }
    return images;
}

// "Z x Y x X" of an ITK size (x, y, z).
std::string zyx(const itk::Size<3> &s)
{
    return size_string({static_cast<int64_t>(s[2]), static_cast<int64_t>(s[1]), static_cast<int64_t>(s[0])});
}

// The mask of --mask on the grid of `output`: the same size (the input's, or one layer for tasks with 2D labels), its
// own geometry replaced by the output's, as eval compares masks by size (a mask drawn on a map often has no origin).
FloatImage::Pointer mask_on(const VolumeSource &mask, FloatImage *output,
                            std::vector<itk::ProcessObject::Pointer> &pipeline)
{
    const auto want = output->GetLargestPossibleRegion().GetSize();
    const auto got = mask.image()->GetLargestPossibleRegion().GetSize();
    if (got != want)
        throw Failure(mask.path() + ": the mask is " + zyx(got) + " voxels, the prediction " + zyx(want) +
                          " (the input's size, or one layer for tasks with 2D labels)",
                      kBadInput);
    auto place = itk::ChangeInformationImageFilter<FloatImage>::New();
    place->SetInput(mask.image());
    place->SetReferenceImage(output);
    place->UseReferenceImageOn();
    place->ChangeSpacingOn();
    place->ChangeOriginOn();
    place->ChangeDirectionOn();
    pipeline.push_back(place.GetPointer());
    return place->GetOutput();
}

// `image` with 0 where `mask` is not above 0.5 (what eval's --mask leaves out).
template <typename TImage>
typename TImage::Pointer masked(TImage *image, FloatImage *mask, std::vector<itk::ProcessObject::Pointer> &pipeline)
{
    using Pixel = typename TImage::PixelType;
    auto apply = itk::BinaryGeneratorImageFilter<TImage, FloatImage, TImage>::New();
    apply->SetInput1(image);
    apply->SetInput2(mask);
    apply->SetFunctor([](const Pixel &v, const float &m) { return m > 0.5f ? v : Pixel(0); });
    pipeline.push_back(apply.GetPointer());
    return apply->GetOutput();
}

// Non-finite input voxels, counted over the whole input in one streamed pass before any other work: refused with
// their count and the first's position, or replaced by the policy's value (docs/cli.md §3.5). Returns the filter
// to read the input through, or null when every voxel is finite.
NonFinite::Pointer replace_non_finite(FloatImage *image, const PredictRequest &request, unsigned pieces,
                                      Context &ctx, const Progress &progress)
{
    const rm_nonfinite_policy policy = non_finite_policy(ctx, request.non_finite);
    rm_nonfinite_census census;
    try {
        census = NonFinite::CensusStreamed(image, pieces);
    } catch (const itk::ExceptionObject &e) {
        throw Failure(request.input + ": " + describe(e), kBadInput);
    }
    if (census.nonfinite == 0)
        return nullptr;
    const auto whole = image->GetLargestPossibleRegion().GetSize();
    const int64_t size[3] = {static_cast<int64_t>(whole[2]), static_cast<int64_t>(whole[1]),
                             static_cast<int64_t>(whole[0])};
    const float value = non_finite_value(ctx, census, policy, size, request.input, kNonFiniteChoice);
    std::ostringstream what;
    what << "replacing " << census.nonfinite << " non-finite voxel(s) of " << request.input << " by " << value
         << " (--non-finite " << request.non_finite << ")";
    progress.stage(what.str());
    auto filter = NonFinite::New();
    filter->SetInput(image);
    filter->SetPolicy(policy);
    filter->SetCensus(census);
    return filter;
}

// One mesh per task of the label map (label i + 1 for task i), named after the task; a task that labelled nothing
// gets an empty mesh, so the files are the same whatever the thresholds.
void write_task_surfaces(LabelImage *map, const std::vector<rm_task> &tasks, const std::string &dir,
                         const std::vector<std::string> &formats, const Progress &progress, OutputFiles &outputs)
{
    try {
        map->UpdateOutputInformation();
        map->SetRequestedRegionToLargestPossibleRegion(); // the writer streamed it piece by piece
        map->Update();
    } catch (const itk::ExceptionObject &e) {
        throw Failure("cannot make the label map of --surfaces: " + describe(e), kBadInput);
    }
    const LabelMesher mesher(from_itk(map));
    std::vector<NamedSurface> surfaces;
    for (size_t i = 0; i < tasks.size(); i++) {
        progress.stage(std::string("meshing ") + tasks[i].name);
        surfaces.push_back({tasks[i].name, mesher.mesh(static_cast<long>(i + 1), Frame::physical)});
    }
    write_surfaces(surfaces, dir, formats, outputs);
}

// ", the label map L, ..." for the outputs beside the prediction, for the closing line.
std::string written_too(const PredictRequest &r)
{
    std::string also;
    for (const auto &[path, what] : {std::pair{r.labels, "the label map "}, {r.segmentation, "the segmentation "},
                                     {r.colors, "the colour table "}, {r.surfaces, "the surfaces in "}})
        if (!path.empty())
            also += ", " + std::string(what) + path;
    return also;
}

} // namespace

int run_predict(int argc, char **argv)
{
    CommandLine cmd("predict", "Predicts tasks over a whole volume with the sliding window (input normalized "
                               "with the model's method, z-score or percentile clipping; Gaussian-blended "
                               "windows), streamed region by region: binary tasks as probabilities, regression "
                               "tasks as normalized intensities, with the input's spacing, origin and direction. "
                               "Several tasks: one output component per task, and one label value per task in the "
                               "label map.");
    TCLAP::ValueArg<std::string> model("", "model", "model file, either form", true, "", "M", cmd);
    TCLAP::ValueArg<std::string> task("", "task", "task name, or several separated by commas", true, "", "T[,T2...]",
                                      cmd);
    TCLAP::ValueArg<std::string> input("", "input", "input image, or a folder of 2D TIFF layers", true, "", "IN", cmd);
    TCLAP::ValueArg<std::string> output("", "output", "prediction image (float; one component per task)", true, "",
                                        "OUT", cmd);
    TCLAP::ValueArg<std::string> labels("", "labels", "label map: label i where task i passes its threshold (8-bit)",
                                        false, "", "L", cmd);
    TCLAP::ValueArg<std::string> colors("", "colors", "colour table of the label map (Slicer's text format)", false,
                                        "", "FILE", cmd);
    TCLAP::ValueArg<std::string> segmentation("", "segmentation", "the label map as a 3D Slicer segmentation (.seg.nrrd): "
                                                                  "one segment per task, named and coloured",
                                              false, "", "S", cmd);
    TCLAP::ValueArg<std::string> threshold("", "threshold", "label thresholds, one for all tasks or one per task "
                                                            "(default: the task's, else 0.5 on probabilities or "
                                                            "Otsu's on intensities)",
                                           false, "", "F[,F2...]", cmd);
    TCLAP::ValueArg<std::string> patch_arg("", "patch", "window size Z,Y,X (default: the model's patch)", false, "",
                                           "Z,Y,X", cmd);
    TCLAP::ValueArg<double> overlap("", "overlap", "fraction of the window shared by neighbours, in [0, 1)", false,
                                    0.5, "F", cmd);
    std::vector<std::string> blends{"gaussian", "constant"};
    TCLAP::ValuesConstraint<std::string> blend_values(blends);
    TCLAP::ValueArg<std::string> blend("", "blend", "window blending", false, "gaussian", &blend_values, cmd);
    TCLAP::SwitchArg tta("", "tta", "test-time augmentation: every window the mean of the network over the 8 "
                                    "in-plane flips and rotations of its input (8 times the work)",
                         cmd);
    TCLAP::ValueArg<unsigned> divisions("", "divisions", "stream the output in N pieces along Z (default: pieces "
                                                         "of about 8 M voxels)",
                                        false, 0, "N", cmd);
    TCLAP::ValueArg<std::string> surfaces("", "surfaces", "folder for one surface mesh per task, <task>.vtp, in "
                                                          "physical (LPS) coordinates, of the label map's labels",
                                          false, "", "DIR", cmd);
    TCLAP::ValueArg<std::string> surface_format("", "surface-format", "mesh formats of --surfaces, comma-separated: "
                                                                      "vtp, stl, obj",
                                                false, "vtp", "F[,F2...]", cmd);
    NonFiniteOption non_finite(cmd);
    TCLAP::ValueArg<std::string> mask("", "mask", "predictions and labels are 0 where MASK is not above 0.5 (e.g. a "
                                                  "fragment mask); sized as the prediction",
                                      false, "", "MASK", cmd);
    TCLAP::ValueArg<std::string> uncertainty("", "uncertainty", "Monte Carlo dropout: the passes' per-voxel standard "
                                                                "deviation (float; one component per task); OUT is "
                                                                "then their mean",
                                             false, "", "U", cmd);
    TCLAP::ValueArg<unsigned> mc_samples("", "mc-samples", "Monte Carlo passes (default 10 with --uncertainty, else "
                                                           "0: one plain pass)",
                                         false, 0, "N", cmd);
    TCLAP::ValueArg<unsigned long long> seed("", "seed", "seed of the passes' dropout and gate noise: same seed, same "
                                                         "bytes",
                                             false, 0, "S", cmd);
    TCLAP::ValueArg<double> mc_dropout("", "mc-dropout", "dropout probability on the input of every MoDE block "
                                                         "during the passes, in [0, 1)",
                                       false, 0.1, "P", cmd);
    TCLAP::ValueArg<double> gate_noise("", "gate-noise", "standard deviation of the Gaussian noise on the gate logits "
                                                         "during the passes (a training-form model; 0 for a deploy "
                                                         "form)",
                                       false, 0.1, "SIGMA", cmd);
    cmd.parse_or_fail(argc, argv);

    PredictRequest request;
    request.model = model.getValue();
    request.tasks = task.getValue();
    request.input = input.getValue();
    request.output = output.getValue();
    request.labels = labels.getValue();
    request.colors = colors.getValue();
    request.segmentation = segmentation.getValue();
    request.thresholds = threshold.getValue();
    request.patch = patch_arg.getValue();
    request.overlap = overlap.getValue();
    request.blend = blend.getValue();
    request.tta = tta.getValue();
    request.divisions = divisions.getValue();
    request.mask = mask.getValue();
    request.non_finite = non_finite.value();
    request.uncertainty = uncertainty.getValue();
    request.mc_samples = mc_samples.isSet() ? mc_samples.getValue() : (uncertainty.isSet() ? 10u : 0u);
    request.seed = seed.getValue();
    request.mc_dropout = mc_dropout.getValue();
    request.gate_noise = gate_noise.getValue();
    const bool mc_options = seed.isSet() || mc_dropout.isSet() || gate_noise.isSet();
    if (mc_options && request.mc_samples == 0)
        throw Failure("--seed, --mc-dropout and --gate-noise shape Monte Carlo passes: give --mc-samples N or "
                      "--uncertainty U too", kBadInput);
    if (surface_format.isSet() && !surfaces.isSet())
        throw Failure("--surface-format names the formats of --surfaces: give --surfaces too", kBadInput);
    request.surfaces = surfaces.getValue();
    request.surface_formats = surface_format.getValue();
    request.threads = cmd.threads();
    Progress progress("predict");
    OutputFiles outputs;
    predict(request, progress, outputs);
    outputs.commit();
    progress.stage("wrote " + request.output + written_too(request));
    return 0;
}

void predict(const PredictRequest &request, const Progress &progress, OutputFiles &outputs)
{
    if (!(request.overlap >= 0.0 && request.overlap < 1.0))
        throw Failure("--overlap must be in [0, 1)", kBadInput);
    if (request.blend != "gaussian" && request.blend != "constant")
        throw Failure("--blend must be gaussian or constant, not '" + request.blend + "'", kBadInput);
    check_image_output(request.output, "--output");
    if (!request.labels.empty())
        check_image_output(request.labels, "--labels");
    if (!request.uncertainty.empty())
        check_image_output(request.uncertainty, "--uncertainty");
    if (!request.uncertainty.empty() && request.mc_samples == 0)
        throw Failure("--uncertainty needs at least one Monte Carlo pass: --mc-samples 0 gives none", kBadInput);
    if (!(request.mc_dropout >= 0.0 && request.mc_dropout < 1.0))
        throw Failure("--mc-dropout must be in [0, 1)", kBadInput);
    if (!(request.gate_noise >= 0.0) || !std::isfinite(request.gate_noise))
        throw Failure("--gate-noise must be a finite number >= 0", kBadInput);
    if (!request.colors.empty())
        check_output_path(request.colors, "--colors");
    if (!request.segmentation.empty()) {
        check_segmentation_name(request.segmentation, "--segmentation");
        check_image_output(request.segmentation, "--segmentation");
    }
    check_distinct({{request.output, "--output"}, {request.labels, "--labels"}, {request.colors, "--colors"},
                    {request.segmentation, "--segmentation"}, {request.uncertainty, "--uncertainty"}},
                   {{request.model, "--model"}, {request.input, "--input"}, {request.mask, "--mask"}});
    std::vector<std::string> surface_formats;
    if (!request.surfaces.empty()) {
        surface_formats = parse_surface_formats(request.surface_formats, "--surface-format");
        check_surface_folder(request.surfaces, "--surfaces");
    }

    Context ctx(request.threads);
    rm_model_info info;
    ctx.check(rm_model_info_read(ctx, request.model.c_str(), &info));
    std::unique_ptr<rm_model_info, void (*)(rm_model_info *)> owned_info(&info, rm_model_info_free);
    const std::vector<rm_task> tasks = find_tasks(info, request.model, request.tasks);
    const std::vector<double> thresholds = parse_thresholds(request.thresholds, tasks.size());
    const std::array<int64_t, 3> patch = !request.patch.empty() ? parse_sizes(request.patch, "--patch")
                                                           : std::array<int64_t, 3>{info.cfg.patch[0], info.cfg.patch[1],
                                                                                    info.cfg.patch[2]};

    VolumeSource source(request.input);
    FloatImage *image = source.image();
    const unsigned pieces = stream_divisions(image, all_maps(tasks), patch, request.divisions);
    const NonFinite::Pointer replacing = replace_non_finite(image, request, pieces, ctx, progress);
    if (replacing)
        image = replacing->GetOutput();
    std::vector<Prediction::Pointer> filters;
    for (const rm_task &t : tasks) {
        auto f = Prediction::New();
        f->SetInput(image);
        f->SetModelFileName(request.model);
        f->SetTask(t.name);
        f->SetPatchSize({{static_cast<itk::SizeValueType>(patch[2]), static_cast<itk::SizeValueType>(patch[1]),
                          static_cast<itk::SizeValueType>(patch[0])}});
        f->SetOverlap(request.overlap);
        f->SetBlending(request.blend == "constant" ? Prediction::BlendingEnum::Constant
                                                      : Prediction::BlendingEnum::Gaussian);
        f->SetTestTimeAugmentation(request.tta);
        f->SetNumberOfThreads(request.threads);
        f->SetMonteCarloSamples(request.mc_samples);
        f->SetMonteCarloSeed(request.seed);
        f->SetMonteCarloDropout(request.mc_dropout);
        f->SetGateNoise(request.gate_noise);
        try {
            f->UpdateOutputInformation(); // loads the task's network and checks the windows before any work
        } catch (const itk::ExceptionObject &e) {
            throw Failure(describe(e), kBadInput);
        }
        filters.push_back(f);
    }
    std::vector<itk::ProcessObject::Pointer> masking; // the mask's pipeline, alive while the outputs are written
    std::unique_ptr<VolumeSource> mask_source;
    FloatImage::Pointer mask_image;
    if (!request.mask.empty()) {
        mask_source = std::make_unique<VolumeSource>(request.mask);
        mask_image = mask_on(*mask_source, filters.front()->GetOutput(), masking);
    }
    // A task's output as written: the prediction (or its uncertainty), masked when asked.
    const auto written = [&](size_t i, bool uncertainty = false) -> FloatImage::Pointer {
        FloatImage *out = uncertainty ? filters[i]->GetUncertaintyOutput() : filters[i]->GetOutput();
        return mask_image ? masked<FloatImage>(out, mask_image, masking) : FloatImage::Pointer(out);
    };
    PredictionRecord record(request, info.provenance ? info.provenance : "", patch, rm_isa_name(rm_ctx_isa(ctx)));
    // Writes every task's image (one component per task) to `path`.
    const auto write_tasks = [&](const std::string &path, bool uncertainty) {
        const std::string provenance = record.text(uncertainty ? "uncertainty" : "prediction");
        if (filters.size() == 1) {
            write_image(written(0, uncertainty).GetPointer(), path, outputs, pieces, provenance);
            return;
        }
        auto compose = itk::ComposeImageFilter<FloatImage, Components>::New();
        for (size_t i = 0; i < filters.size(); i++)
            compose->SetInput(static_cast<unsigned>(i), written(i, uncertainty));
        write_image(compose->GetOutput(), path, outputs, pieces, provenance);
    };

    // Every task of a model shares its normalization: computed once, streamed, then given to every filter so that
    // they stream their input too.
    const rm_normalization &method = filters.front()->GetNormalization();
    progress.stage("normalizing " + request.input + " (" + zyx(image->GetLargestPossibleRegion().GetSize()) +
                   " voxels, Z x Y x X; " + describe(method) + ")");
    rm_norm_params normalization;
    try {
        normalization = itk::RepModeNormalization<FloatImage>::ComputeStreamed(image, pieces, method);
    } catch (const itk::ExceptionObject &e) { // a read error, or voxels the method cannot take
        throw Failure(request.input + ": " + describe(e), kBadInput);
    }
    for (const auto &f : filters)
        f->SetInputNormalization(normalization);
    record.set_normalization(method, normalization);
    auto drawing = PredictionProgress::New();
    drawing->watch(filters, pieces, &progress);

    std::string names;
    for (const rm_task &t : tasks)
        names += std::string(names.empty() ? "" : ", ") + t.name + (t.kind == RM_TASK_BINARY ? " (binary)" : "");
    if (request.mc_samples > 0)
        names += " (" + std::to_string(request.mc_samples) + " Monte Carlo passes, seed " +
                 std::to_string(request.seed) + ")";
    if (!request.uncertainty.empty()) {
        // Both images come from the same passes: computed once, whole, then written from memory.
        progress.stage("predicting " + names + " in one piece (the mean and the uncertainty of the same passes)");
        for (const auto &f : filters)
            update_or_fail(f);
    } else {
        progress.stage("predicting " + names + " in " + std::to_string(pieces) + " piece(s)");
    }
    write_tasks(request.output, false);
    if (!request.uncertainty.empty())
        write_tasks(request.uncertainty, true);
    progress.bar(1.0, "done");

    auto label_map = LabelMap::New();
    label_map->SetTasks(tasks);
    label_map->SetThresholds(thresholds);
    if (!request.labels.empty() || !request.segmentation.empty() || !request.surfaces.empty()) {
        std::vector<itk::ProcessObject::Pointer> pipeline;
        const std::vector<FloatImage::Pointer> predictions = read_predictions(outputs.staged(request.output), tasks.size(), pipeline);
        for (size_t i = 0; i < predictions.size(); i++)
            label_map->SetPrediction(static_cast<unsigned>(i), predictions[i]);
        // Masked too: a threshold at or below 0 (a regression task's) would label the zeros outside the mask.
        LabelImage::Pointer map = label_map->GetOutput();
        if (mask_image)
            map = masked<LabelImage>(map, mask_image, pipeline);
        if (!request.labels.empty())
            write_image(map.GetPointer(), request.labels, outputs, pieces, record.text("labels"));
        if (!request.segmentation.empty()) {
            std::vector<Segment> segments;
            for (size_t i = 0; i < tasks.size(); i++)
                segments.push_back({tasks[i].name, label_map->GetLabelColor(static_cast<unsigned>(i + 1)),
                                    tasks[i].has_color != 0});
            write_segmentation(map.GetPointer(), segments, request.segmentation, outputs,
                               record.text("segmentation"));
        }
        if (!request.surfaces.empty())
            write_task_surfaces(map, tasks, request.surfaces, surface_formats, progress, outputs);
        // The thresholds are known once one of the outputs above has run the label map.
        std::string used;
        for (size_t i = 0; i < tasks.size(); i++) {
            std::ostringstream t;
            t << tasks[i].name << " > " << label_map->GetThresholdsUsed()[i];
            used += std::string(used.empty() ? "" : ", ") + t.str();
        }
        progress.stage("labelled " + used);
    }
    if (!request.colors.empty()) {
        try {
            label_map->WriteColorTable(outputs.stage(request.colors));
        } catch (const itk::ExceptionObject &) {
            throw Failure("cannot write the colour table " + request.colors, kBadInput);
        }
    }
}

} // namespace repmode::cli
