// repmode predict --model M --task T --input IN --output OUT [--labels L] [--colors FILE]: the sliding-window
// prediction of one task over a whole volume, with the input's geometry, and optionally its label map.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include <itkImage.h>
#include <itkImportImageFilter.h>
#include <itkOtsuThresholdImageFilter.h>

#include "cli.h"
#include "image_io.h"
#include "volume_ops.h"

namespace repmode::cli {

namespace {

namespace fs = std::filesystem;

// Fails before any work when the folder an output goes to does not exist.
void check_output_folder(const std::string &path, const char *option)
{
    const fs::path folder = fs::path(path).parent_path();
    if (!folder.empty() && !fs::is_directory(folder))
        throw Failure(std::string(option) + ": the folder " + folder.string() + " does not exist", kBadInput);
}

// Otsu's threshold of a prediction (regression tasks' label maps), by ITK's filter on a 256-bin histogram.
double otsu_threshold(const Volume &v)
{
    using Image = itk::Image<float, 3>;
    auto import = itk::ImportImageFilter<float, 3>::New();
    Image::SizeType size;
    for (unsigned a = 0; a < 3; a++)
        size[a] = static_cast<itk::SizeValueType>(v.size[2 - a]);
    import->SetRegion(Image::RegionType(size));
    import->SetImportPointer(const_cast<float *>(v.voxels.data()), v.voxels.size(), false);
    auto otsu = itk::OtsuThresholdImageFilter<Image, itk::Image<unsigned char, 3>>::New();
    otsu->SetInput(import->GetOutput());
    otsu->SetNumberOfHistogramBins(256);
    otsu->Update();
    return otsu->GetThreshold();
}

// Slicer's colour-table text format: "index name r g b a" per line, 0..255.
void write_colors(const std::string &path, const rm_task &task)
{
    const float fallback[3] = {0.9f, 0.6f, 0.2f};
    const float *c = task.has_color ? task.color : fallback;
    const std::string tmp = path + ".tmp";
    std::ofstream out(tmp);
    out << "# repmode label colours\n0 background 0 0 0 0\n1 " << task.name;
    for (int k = 0; k < 3; k++)
        out << ' ' << static_cast<int>(std::lround(255.0f * std::fmin(1.0f, std::fmax(0.0f, c[k]))));
    out << " 255\n";
    out.close();
    if (!out || std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        throw Failure("cannot write " + path, kBadInput);
    }
}

} // namespace

int run_predict(int argc, char **argv)
{
    CommandLine cmd("predict", "Predicts one task over a whole volume with the sliding window (input z-scored, "
                               "Gaussian-blended windows): binary tasks as probabilities, regression tasks as "
                               "normalized intensities, with the input's spacing, origin and direction.");
    TCLAP::ValueArg<std::string> model("", "model", "model file, either form", true, "", "M", cmd);
    TCLAP::ValueArg<std::string> task("", "task", "task name", true, "", "T", cmd);
    TCLAP::ValueArg<std::string> input("", "input", "input image, or a folder of 2D TIFF layers", true, "", "IN", cmd);
    TCLAP::ValueArg<std::string> output("", "output", "prediction image (float)", true, "", "OUT", cmd);
    TCLAP::ValueArg<std::string> labels("", "labels", "label map: 1 where the prediction passes the threshold", false,
                                        "", "L", cmd);
    TCLAP::ValueArg<std::string> colors("", "colors", "colour table of the label map (Slicer's text format)", false,
                                        "", "FILE", cmd);
    TCLAP::ValueArg<double> threshold("", "threshold", "label threshold (default: the task's, else 0.5 on "
                                                       "probabilities or Otsu's on intensities)", false, NAN, "F", cmd);
    TCLAP::ValueArg<std::string> patch_arg("", "patch", "window size Z,Y,X (default: the model's patch)", false, "",
                                           "Z,Y,X", cmd);
    TCLAP::ValueArg<double> overlap("", "overlap", "fraction of the window shared by neighbours, in [0, 1)", false,
                                    0.5, "F", cmd);
    std::vector<std::string> blends{"gaussian", "constant"};
    TCLAP::ValuesConstraint<std::string> blend_values(blends);
    TCLAP::ValueArg<std::string> blend("", "blend", "window blending", false, "gaussian", &blend_values, cmd);
    cmd.parse_or_fail(argc, argv);
    if (task.getValue().find(',') != std::string::npos)
        throw Failure("several tasks in one run are not supported yet: run predict once per task", kBadInput);
    if (!(overlap.getValue() >= 0.0 && overlap.getValue() < 1.0))
        throw Failure("--overlap must be in [0, 1)", kBadInput);
    check_output_folder(output.getValue(), "--output");
    if (labels.isSet())
        check_output_folder(labels.getValue(), "--labels");
    if (colors.isSet())
        check_output_folder(colors.getValue(), "--colors");

    Context ctx(cmd.threads());
    rm_model_info info;
    ctx.check(rm_model_info_read(ctx, model.getValue().c_str(), &info));
    std::unique_ptr<rm_model_info, void (*)(rm_model_info *)> owned_info(&info, rm_model_info_free);
    rm_deploy *raw = nullptr;
    ctx.check(rm_deploy_load(ctx, model.getValue().c_str(), task.getValue().c_str(), &raw));
    std::unique_ptr<rm_deploy, void (*)(rm_deploy *)> deploy(raw, rm_deploy_free);
    const rm_task &t = info.cfg.tasks[rm_deploy_task(deploy.get())];

    std::fprintf(stderr, "repmode: reading %s\n", input.getValue().c_str());
    Volume in = read_volume(input.getValue());
    zscore(in.voxels);
    const std::array<int64_t, 3> patch = patch_arg.isSet() ? parse_sizes(patch_arg.getValue(), "--patch")
                                                           : std::array<int64_t, 3>{info.cfg.patch[0], info.cfg.patch[1],
                                                                                    info.cfg.patch[2]};
    rm_window_params p = rm_window_params_make(patch.data());
    p.overlap = overlap.getValue();
    p.blend = blend.getValue() == "constant" ? RM_BLEND_CONSTANT : RM_BLEND_GAUSSIAN;
    std::fprintf(stderr, "repmode: predicting %s (%s) on %s voxels\n", t.name,
                 t.kind == RM_TASK_BINARY ? "binary" : "regression", size_string(in.size).c_str());
    Volume pred = in.like<float>();
    const int64_t start[3] = {0, 0, 0};
    ctx.check(rm_predict_region(ctx, deploy.get(), &p, in.size.data(), read_volume_region, &in, start, in.size.data(),
                                pred.voxels.data(), nullptr, nullptr));
    if (t.kind == RM_TASK_BINARY)
        for (float &v : pred.voxels)
            v = static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(v))));
    write_volume(pred, output.getValue());

    if (labels.isSet()) {
        const double cut = !std::isnan(threshold.getValue()) ? threshold.getValue()
                           : !std::isnan(t.threshold)        ? t.threshold
                           : t.kind == RM_TASK_BINARY        ? 0.5
                                                             : otsu_threshold(pred);
        LabelVolume map = pred.like<uint8_t>();
        for (size_t i = 0; i < pred.voxels.size(); i++)
            map.voxels[i] = pred.voxels[i] > cut ? 1 : 0;
        write_volume(map, labels.getValue());
        std::fprintf(stderr, "repmode: label map at threshold %g\n", cut);
    }
    if (colors.isSet())
        write_colors(colors.getValue(), t);
    std::fprintf(stderr, "repmode: wrote %s\n", output.getValue().c_str());
    return 0;
}

} // namespace repmode::cli
