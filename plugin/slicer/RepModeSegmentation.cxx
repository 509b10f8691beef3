// RepModeSegmentation: a 3D Slicer command-line module (Slicer Execution Model) over repmode predict's pipeline
// (docs/cli.md §5). Slicer runs `RepModeSegmentation --xml` to learn the parameters (RepModeSegmentation.xml), then
// runs it with the flags of that description and the images, as temporary files, at their positional indices.
// Progress goes to stdout in Slicer's <filter-...> lines; errors to stderr with a non-zero exit code, and no output
// is left half-written (predict writes to temporary names renamed into place).
//
// Several tasks (--task a,b): the label map and the segmentation hold every task, the prediction only the first's.
// Slicer shows a multi-component scalar volume as its first component anyway, and a description's outputs are fixed,
// so one volume per task cannot be offered; predict's components go to a hidden file that is removed afterwards.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>


#include <itkImageFileReader.h>
#include <itkVectorImage.h>
#include <itkVectorIndexSelectionCastImageFilter.h>
#include <tclap/CmdLine.h>

#include "RepModeSegmentationXML.h"
#include "cli.h"
#include "image_io.h"
#include "predict.h"
#include "provenance.h"

namespace {

using repmode::cli::Failure;
using repmode::cli::kBadInput;

constexpr const char *kName = "RepModeSegmentation";

// `text` with XML's special characters escaped (file names go into <filter-comment>).
std::string xml_escaped(const std::string &text)
{
    std::string out;
    for (const char c : text) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        default: out += c;
        }
    }
    return out;
}

// Slicer's progress protocol: each line is parsed as it arrives, so each is flushed. Fractions only grow (Slicer's
// bar would jump back otherwise).
class SlicerProgress : public repmode::cli::Progress {
  public:
    SlicerProgress() : Progress(kName) {}
    void start(const std::string &comment) const
    {
        std::printf("<filter-start>\n<filter-name>%s</filter-name>\n<filter-comment>%s</filter-comment>\n"
                    "</filter-start>\n",
                    kName, xml_escaped(comment).c_str());
        std::fflush(stdout);
    }
    void end(double seconds) const
    {
        std::printf("<filter-end>\n<filter-name>%s</filter-name>\n<filter-time>%.3f</filter-time>\n</filter-end>\n",
                    kName, seconds);
        std::fflush(stdout);
    }
    // Stages are plain lines: Slicer shows them in the module's output log.
    void stage(const std::string &what) const override
    {
        std::printf("%s: %s\n", kName, what.c_str());
        std::fflush(stdout);
    }
    void bar(double fraction, const std::string &) const override
    {
        if (fraction <= last_)
            return;
        last_ = fraction;
        std::printf("<filter-progress>%.4f</filter-progress>\n", fraction);
        std::fflush(stdout);
    }

  private:
    mutable double last_ = -1.0;
};

bool has_flag(int argc, char **argv, const char *flag)
{
    for (int i = 1; i < argc; i++)
        if (std::strcmp(argv[i], flag) == 0)
            return true;
    return false;
}

// Slicer's return-parameter file: one "name = value" line per output parameter.
std::string return_parameters(const std::string &output, const std::string &labels, const std::string &segmentation,
                              const std::string &uncertainty)
{
    return "outputVolume = " + output + "\nlabelMap = " + labels + "\nsegmentation = " + segmentation +
           "\nuncertaintyVolume = " + uncertainty + "\n";
}

// The first component of the predictions in `components` (one per task), written as the output `path` with their
// provenance, its role marked as the first task's.
void write_first_task(const std::string &components, const std::string &path, repmode::cli::OutputFiles &outputs)
{
    const repmode::cli::Json record = repmode::cli::parse_record(repmode::cli::read_provenance(components), path);
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(record.get(), "output");
    cJSON_ReplaceItemInObjectCaseSensitive(
        record.get(), "output", cJSON_CreateString((std::string(role->valuestring) + " (first task)").c_str()));
    std::unique_ptr<char, void (*)(void *)> text(cJSON_PrintUnformatted(record.get()), cJSON_free);
    using Components = itk::VectorImage<float, 3>;
    auto reader = itk::ImageFileReader<Components>::New();
    reader->SetFileName(components);
    auto first = itk::VectorIndexSelectionCastImageFilter<Components, repmode::cli::FloatImage>::New();
    first->SetInput(reader->GetOutput());
    first->SetIndex(0);
    repmode::cli::write_image(first->GetOutput(), path, outputs, 1, text.get());
}

int run(int argc, char **argv)
{
    // As Slicer's generated parsers: --xml answers before the required arguments are looked for.
    if (has_flag(argc, argv, "--xml")) {
        std::fputs(repmode::slicer::kModuleDescription, stdout);
        return 0;
    }
    // The flags and indices of RepModeSegmentation.xml; the help texts are its descriptions, shortened.
    TCLAP::CmdLine cmd("Predicts tasks of a RepMode model over a volume and thresholds them into a label map and a "
                       "segmentation (3D Slicer command-line module; --xml prints its description).",
                       ' ', REPMODE_VERSION);
    cmd.setExceptionHandling(false);
    TCLAP::SwitchArg xml("", "xml", "print the module description (Slicer Execution Model XML) and exit", cmd);
    TCLAP::SwitchArg echo("", "echo", "print the parameters' values before running", cmd);
    TCLAP::ValueArg<std::string> return_file("", "returnparameterfile", "file to write the output parameters to",
                                             false, "", "FILE", cmd);
    TCLAP::ValueArg<std::string> address("", "processinformationaddress", "Slicer's process information (ignored)",
                                         false, "", "ADDR", cmd);
    TCLAP::ValueArg<std::string> task("", "task", "task name, or several separated by commas", false, "nuclei",
                                      "string", cmd);
    TCLAP::ValueArg<std::string> threshold("", "threshold", "label thresholds, one for all tasks or one per task "
                                                            "(default: the task's)",
                                           false, "", "string", cmd);
    TCLAP::ValueArg<std::string> patch("", "patch", "window size Z,Y,X (default: the model's patch)", false, "",
                                       "Z,Y,X", cmd);
    TCLAP::ValueArg<double> overlap("", "overlap", "fraction of a window shared by neighbours, in [0, 1)", false, 0.5,
                                    "double", cmd);
    TCLAP::ValueArg<std::string> blend("", "blend", "window blending: gaussian or constant", false, "gaussian",
                                       "string", cmd);
    TCLAP::SwitchArg tta("", "tta", "test-time augmentation: the 8 in-plane flips and rotations of every window",
                         cmd);
    TCLAP::ValueArg<int> divisions("", "divisions", "stream in N pieces along Z (0: about 8 M voxels each)", false,
                                   0, "int", cmd);
    TCLAP::ValueArg<int> threads("", "threads", "worker threads (0: all cores)", false, 0, "int", cmd);
    TCLAP::ValueArg<std::string> non_finite("", "non-finite", "non-finite input voxels: refuse, zero or mean", false,
                                            "refuse", "string", cmd);
    TCLAP::ValueArg<int> mc_samples("", "mc-samples", "Monte Carlo passes, with an uncertainty volume", false, 10,
                                    "int", cmd);
    TCLAP::ValueArg<long long> seed("", "seed", "seed of the passes", false, 0, "int", cmd);
    TCLAP::ValueArg<double> mc_dropout("", "mc-dropout", "dropout probability during the passes, in [0, 1)", false,
                                       0.1, "double", cmd);
    TCLAP::ValueArg<double> gate_noise("", "gate-noise", "gate-logit noise during the passes, >= 0", false, 0.1,
                                       "double", cmd);
    // Positional arguments in the order of their <index>; TCLAP orders them by declaration.
    TCLAP::UnlabeledValueArg<std::string> model("modelFile", "model file (.safetensors)", true, "", "modelFile", cmd);
    TCLAP::UnlabeledValueArg<std::string> input("inputVolume", "input volume", true, "", "inputVolume", cmd);
    TCLAP::UnlabeledValueArg<std::string> output("outputVolume", "prediction", true, "", "outputVolume", cmd);
    TCLAP::UnlabeledValueArg<std::string> labels("labelMap", "label map", true, "", "labelMap", cmd);
    TCLAP::UnlabeledValueArg<std::string> segmentation("segmentation", "segmentation (.seg.nrrd)", true, "",
                                                       "segmentation", cmd);
    // The last positional argument, left out when no volume is chosen for it.
    TCLAP::UnlabeledValueArg<std::string> uncertainty("uncertaintyVolume", "uncertainty volume: the Monte Carlo "
                                                      "passes' standard deviation (none: one plain prediction)",
                                                      false, "", "uncertaintyVolume", cmd);
    try {
        cmd.parse(argc, argv);
    } catch (const TCLAP::ArgException &e) {
        throw Failure(e.error(), kBadInput);
    }
    if (divisions.getValue() < 0 || threads.getValue() < 0)
        throw Failure("--divisions and --threads must be 0 or more", kBadInput);
    if (mc_samples.getValue() < 1 || seed.getValue() < 0)
        throw Failure("--mc-samples must be 1 or more and --seed 0 or more", kBadInput);

    if (echo.getValue()) {
        std::printf("modelFile: %s\ninputVolume: %s\noutputVolume: %s\nlabelMap: %s\nsegmentation: %s\ntask: %s\n"
                    "threshold: %s\npatch: %s\noverlap: %g\nblend: %s\ntta: %s\ndivisions: %d\nthreads: %d\n",
                    model.getValue().c_str(), input.getValue().c_str(), output.getValue().c_str(),
                    labels.getValue().c_str(), segmentation.getValue().c_str(), task.getValue().c_str(),
                    threshold.getValue().c_str(),
                    patch.getValue().c_str(), overlap.getValue(), blend.getValue().c_str(),
                    tta.getValue() ? "true" : "false", divisions.getValue(),
                    threads.getValue());
        std::fflush(stdout);
    }

    repmode::cli::PredictRequest request;
    request.model = model.getValue();
    request.tasks = task.getValue();
    request.input = input.getValue();
    request.output = output.getValue();
    request.labels = labels.getValue();
    request.segmentation = segmentation.getValue();
    request.thresholds = threshold.getValue();
    request.patch = patch.getValue();
    request.overlap = overlap.getValue();
    request.via = kName;
    request.blend = blend.getValue();
    request.tta = tta.getValue();
    request.divisions = static_cast<unsigned>(divisions.getValue());
    request.threads = threads.getValue();
    request.non_finite = non_finite.getValue();
    // The passes run only for an uncertainty volume; their options always come, with Slicer's defaults.
    request.uncertainty = uncertainty.getValue();
    request.mc_samples = request.uncertainty.empty() ? 0u : static_cast<unsigned>(mc_samples.getValue());
    request.seed = static_cast<unsigned long long>(seed.getValue());
    request.mc_dropout = mc_dropout.getValue();
    request.gate_noise = gate_noise.getValue();
    // Several tasks: predict's components are staged next to the output, and dropped once the output, their first
    // component, is written.
    const bool several = request.tasks.find(',') != std::string::npos;
    const std::filesystem::path out(request.output);
    const std::filesystem::path spread(request.uncertainty);
    if (several)
        request.output = (out.parent_path() / ("." + out.filename().string() + ".tasks.nrrd")).string();
    if (several && !request.uncertainty.empty())
        request.uncertainty = (spread.parent_path() / ("." + spread.filename().string() + ".tasks.nrrd")).string();

    SlicerProgress progress;
    const auto began = std::chrono::steady_clock::now();
    progress.start("Predicting " + request.tasks + " with " + request.model);
    repmode::cli::OutputFiles outputs;
    repmode::cli::predict(request, progress, outputs);
    if (several) {
        write_first_task(outputs.staged(request.output), output.getValue(), outputs);
        outputs.discard(request.output);
    }
    if (several && !request.uncertainty.empty()) {
        write_first_task(outputs.staged(request.uncertainty), uncertainty.getValue(), outputs);
        outputs.discard(request.uncertainty);
    }
    if (return_file.isSet())
        repmode::cli::write_text(return_file.getValue(),
                                 return_parameters(output.getValue(), request.labels, request.segmentation,
                                                   uncertainty.getValue()),
                                 outputs);
    outputs.commit();
    progress.bar(1.0, "done");
    progress.end(std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count());
    return 0;
}

} // namespace

#ifdef main
// Built by SlicerExecutionModel in the Slicer extension: main is renamed ModuleEntryPoint, which SEM's executable
// wrapper declares with C linkage.
extern "C" int main(int argc, char **argv);
#endif
int main(int argc, char **argv) { return repmode::cli::run_reporting_failures(kName, run, argc, argv); }
