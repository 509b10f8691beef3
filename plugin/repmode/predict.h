// The work of repmode predict, apart from its command line, so that the 3D Slicer module (plugin/slicer/) runs the
// very same pipeline: its outputs equal predict's bit for bit.
#pragma once

#include <string>

#include "cli.h"
#include "output_files.h"

namespace repmode::cli {

// predict's options (docs/cli.md §3.5); an empty string is an option not given.
struct PredictRequest {
    std::string model, tasks, input, output;
    std::string labels, colors, thresholds, patch, mask;
    std::string segmentation; // the label map as a Slicer segmentation (.seg.nrrd)
    std::string surfaces;                // folder of one mesh per task (docs/cli.md §3.9)
    std::string surface_formats = "vtp"; // comma list of vtp, stl, obj
    double overlap = 0.5;
    std::string blend = "gaussian";
    bool tta = false; // test-time augmentation: the 8 in-plane flips and rotations of every window
    unsigned divisions = 0; // 0: pieces of about 8 M voxels
    int threads = 0;        // 0: all cores
    std::string non_finite = "refuse"; // non-finite input voxels: refuse, zero or mean
    // Monte Carlo dropout (docs/cli.md §3.5): the passes' standard deviation, their count, seed and noise.
    std::string uncertainty;  // the standard deviation image (one component per task)
    unsigned mc_samples = 0;  // 0: one plain pass, or 10 when `uncertainty` is asked for
    unsigned long long seed = 0;
    double mc_dropout = 0.1;
    double gate_noise = 0.1;
    // What the outputs' provenance records (docs/cli.md §1.6); verify sets the recorded values, to write the same
    // bytes again.
    std::string via = "repmode predict"; // the program that ran the prediction
    std::string date;                    // empty: record_date()
    std::string model_name, input_name, mask_name; // the files' names; empty: their absolute paths
};

// Checks the request, predicts and writes the outputs as staged files of `outputs`, reporting to `progress`; problems
// are Failures. The caller commits the outputs (with any of its own) when the whole run has succeeded.
void predict(const PredictRequest &request, const Progress &progress, OutputFiles &outputs);

} // namespace repmode::cli
