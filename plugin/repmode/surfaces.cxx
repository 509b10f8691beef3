// repmode surfaces --labels L --out DIR [--colors FILE] [--format vtp,stl,obj]: one surface mesh per label of a label
// map, in physical coordinates (docs/cli.md §3.9).
#include <string>
#include <vector>

#include "cli.h"
#include "colors.h"
#include "image_io.h"
#include "label_mesh.h"

namespace repmode::cli {

int run_surfaces(int argc, char **argv)
{
    CommandLine cmd("surfaces", "Writes the surface of every label of a label map as a smoothed, closed triangle mesh "
                                "in physical coordinates (LPS, as ITK reads the map: spacing, origin and direction "
                                "applied), one file per label and format, named after the colour table's label "
                                "names (else label-<n>), for 3D Slicer or ParaView.");
    TCLAP::ValueArg<std::string> labels("", "labels", "label map (label 0: background)", true, "", "L", cmd);
    TCLAP::ValueArg<std::string> out("", "out", "folder of the meshes (made if missing)", true, "", "DIR", cmd);
    TCLAP::ValueArg<std::string> colors("", "colors", "colour table naming the labels (Slicer's text format, as "
                                                      "predict --colors writes)",
                                        false, "", "FILE", cmd);
    TCLAP::ValueArg<std::string> format("", "format", "file formats, comma-separated: vtp, stl, obj", false, "vtp",
                                        "F[,F2...]", cmd);
    cmd.parse_or_fail(argc, argv);
    const std::vector<std::string> formats = parse_surface_formats(format.getValue(), "--format");
    check_surface_folder(out.getValue(), "--out");
    const ColorTable table = colors.isSet() ? ColorTable(colors.getValue()) : ColorTable();

    Progress progress("surfaces");
    progress.stage("reading " + labels.getValue());
    const LabelMesher mesher(read_volume(labels.getValue()));
    std::vector<NamedSurface> surfaces;
    for (long label : mesher.labels()) {
        progress.stage("meshing label " + std::to_string(label) + " (" + table.name(label) + ")");
        surfaces.push_back({table.name(label), mesher.mesh(label, Frame::physical)});
    }
    OutputFiles outputs;
    write_surfaces(surfaces, out.getValue(), formats, outputs);
    outputs.commit();
    progress.stage("wrote " + std::to_string(surfaces.size() * formats.size()) + " file(s) in " + out.getValue());
    return 0;
}

} // namespace repmode::cli
