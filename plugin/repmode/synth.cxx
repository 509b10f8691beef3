// repmode synth cells|scroll --out DIR [--seed S] [--size Z,Y,X] [cells' imaging options]: a synthetic sample with
// its ground truth and a data.csv that repmode train reads (signal,target,task[,mask], paths relative to the CSV).
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>

#include "cli.h"
#include "image_io.h"

namespace repmode::cli {

namespace {

// Geometry in ITK's (x, y, z) order from the generator's (Z, Y, X) spacing in micrometres.
template <typename T> BasicVolume<T> make_volume(int64_t d, int64_t h, int64_t w, const double spacing_zyx[3])
{
    BasicVolume<T> v;
    v.size = {d, h, w};
    v.spacing = {spacing_zyx[2], spacing_zyx[1], spacing_zyx[0]};
    v.voxels.resize(static_cast<size_t>(d * h * w));
    return v;
}

void write_cells(const Context &ctx, uint64_t seed, const std::array<int64_t, 3> &size,
                 const rm_synth_cells_imaging &imaging, const std::string &dir, OutputFiles &outputs)
{
    rm_synth_cells_result *raw = nullptr;
    ctx.check(rm_synth_cells_imaged(ctx, seed, size[0], size[1], size[2], &imaging, &raw));
    std::unique_ptr<rm_synth_cells_result, void (*)(rm_synth_cells_result *)> r(raw, rm_synth_cells_free);
    const size_t n = static_cast<size_t>(r->d * r->h * r->w);
    Volume v = make_volume<float>(r->d, r->h, r->w, r->spacing);
    v.voxels.assign(r->signal, r->signal + n);
    write_volume(v, dir + "/signal.nrrd", outputs);
    std::string csv = "signal,target,task\n";
    for (int t = 0; t < r->n_targets; t++) {
        v.voxels.assign(r->targets[t], r->targets[t] + n);
        write_volume(v, dir + "/" + r->target_names[t] + ".nrrd", outputs);
        csv += std::string("signal.nrrd,") + r->target_names[t] + ".nrrd," + r->target_names[t] + "\n";
    }
    write_text(dir + "/data.csv", csv, outputs);
    std::fprintf(stderr, "repmode: wrote a %s cell field with %d structures to %s\n", size_string(size).c_str(),
                 r->n_targets, dir.c_str());
}

void write_scroll(const Context &ctx, uint64_t seed, const std::array<int64_t, 3> &size, const std::string &dir,
                  OutputFiles &outputs)
{
    rm_synth_scroll_result *raw = nullptr;
    ctx.check(rm_synth_scroll(ctx, seed, size[0], size[1], size[2], &raw));
    std::unique_ptr<rm_synth_scroll_result, void (*)(rm_synth_scroll_result *)> r(raw, rm_synth_scroll_free);
    const size_t plane = static_cast<size_t>(r->h * r->w);
    // The Vesuvius layout: surface_volume/00.tif, 01.tif, … one 16-bit layer each.
    outputs.make_folder(dir + "/surface_volume");
    const size_t digits = std::max<size_t>(2, std::to_string(r->layers - 1).size());
    Volume16 layer = make_volume<uint16_t>(1, r->h, r->w, r->spacing);
    for (int64_t z = 0; z < r->layers; z++) {
        layer.voxels.assign(r->volume + z * plane, r->volume + (z + 1) * plane);
        std::string index = std::to_string(z);
        index.insert(0, digits - index.size(), '0');
        write_volume(layer, dir + "/surface_volume/" + index + ".tif", outputs);
    }
    LabelVolume labels = make_volume<uint8_t>(1, r->h, r->w, r->spacing);
    labels.voxels.assign(r->ink, r->ink + plane);
    write_volume(labels, dir + "/inklabels.nrrd", outputs);
    labels.voxels.assign(r->mask, r->mask + plane);
    write_volume(labels, dir + "/mask.nrrd", outputs);
    write_text(dir + "/data.csv", "signal,target,task,mask\nsurface_volume,inklabels.nrrd,ink,mask.nrrd\n", outputs);
    std::fprintf(stderr, "repmode: wrote a %s papyrus surface volume (ink in layers %lld-%lld) to %s\n",
                 size_string(size).c_str(), static_cast<long long>(r->ink_layer_first),
                 static_cast<long long>(r->ink_layer_last), dir.c_str());
}

} // namespace

int run_synth(int argc, char **argv)
{
    CommandLine cmd("synth", "Writes a synthetic sample with its ground truth: 'cells' (a transmitted-light cell field "
                             "with nuclei, membranes, nucleoli and mitochondria targets) or 'scroll' (a 16-bit papyrus "
                             "surface volume as TIFF layers, its ink label and fragment mask), and a data.csv for "
                             "repmode train.");
    std::vector<std::string> kinds{"cells", "scroll"};
    TCLAP::ValuesConstraint<std::string> allowed(kinds);
    TCLAP::UnlabeledValueArg<std::string> kind("kind", "what to make", true, "", &allowed, cmd);
    TCLAP::ValueArg<std::string> out("", "out", "output folder (created if missing)", true, "", "DIR", cmd);
    TCLAP::ValueArg<unsigned long long> seed("", "seed", "random seed (default 0)", false, 0, "S", cmd);
    TCLAP::ValueArg<std::string> size("", "size", "Z,Y,X (default 32,128,128 for cells, 32,256,256 for scroll)", false,
                                      "", "Z,Y,X", cmd);
    // The cells' imaging (rm_synth_cells_imaging): factors on today's contrast, noise, blur and density; a gradient.
    TCLAP::ValueArg<double> contrast("", "contrast", "cells: factor on the absorption and phase contrast, in (0, 10] "
                                                     "(default 1)",
                                     false, 1.0, "F", cmd);
    TCLAP::ValueArg<double> noise("", "noise", "cells: factor on the shot and read noise, in [0, 10] (default 1)",
                                  false, 1.0, "F", cmd);
    TCLAP::ValueArg<double> blur("", "blur", "cells: factor on the out-of-focus blur's widths, in [0, 5] (default 1)",
                                 false, 1.0, "F", cmd);
    TCLAP::ValueArg<double> density("", "density", "cells: factor on the cells per area, in [0.25, 4] (default 1)",
                                    false, 1.0, "F", cmd);
    TCLAP::ValueArg<double> illumination("", "illumination", "cells: the light times 1 + G r, r from -1 to 1 across "
                                                             "the field along a direction drawn from the seed; G in "
                                                             "[0, 1) (default 0)",
                                         false, 0.0, "G", cmd);
    cmd.parse_or_fail(argc, argv);

    const bool cells = kind.getValue() == "cells";
    std::string cells_only;
    for (const TCLAP::ValueArg<double> *arg : {&contrast, &noise, &blur, &density, &illumination})
        if (arg->isSet())
            cells_only += (cells_only.empty() ? "--" : ", --") + arg->getName();
    if (!cells && !cells_only.empty())
        throw Failure("synth scroll does not take " + cells_only + " (imaging options of synth cells)", kBadInput);
    const std::array<int64_t, 3> sizes =
        size.getValue().empty()
            ? (cells ? std::array<int64_t, 3>{RM_SYNTH_CELLS_DEFAULT_D, RM_SYNTH_CELLS_DEFAULT_H, RM_SYNTH_CELLS_DEFAULT_W}
                     : std::array<int64_t, 3>{RM_SYNTH_SCROLL_DEFAULT_LAYERS, RM_SYNTH_SCROLL_DEFAULT_H,
                                              RM_SYNTH_SCROLL_DEFAULT_W})
            : parse_sizes(size.getValue(), "--size");
    Context ctx(cmd.threads());
    rm_synth_cells_imaging imaging = rm_synth_cells_imaging_default();
    imaging.contrast = contrast.getValue();
    imaging.noise = noise.getValue();
    imaging.blur = blur.getValue();
    imaging.density = density.getValue();
    imaging.illumination = illumination.getValue();
    if (cells)
        ctx.check(rm_synth_cells_imaging_validate(ctx, &imaging)); // before anything is written
    OutputFiles outputs;
    outputs.make_folder(out.getValue());
    if (cells)
        write_cells(ctx, seed.getValue(), sizes, imaging, out.getValue(), outputs);
    else
        write_scroll(ctx, seed.getValue(), sizes, out.getValue(), outputs);
    outputs.commit();
    return 0;
}

} // namespace repmode::cli
