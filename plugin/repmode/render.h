// render's picture of a volume (docs/cli.md §3.7), for render itself and for the pictures of batch's report.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "colors.h"
#include "image_io.h"

namespace repmode::cli {

// Whether a volume of `size` (Z, Y, X) is drawn with the 3D view, which needs an X display (display.h): at least two
// voxels along every axis.
bool has_3d_view(const std::array<int64_t, 3> &size);

// Draws `image`, with `labels` (of its size; null for none) blended over it in `palette`'s colours, `size` pixels
// along its longest physical extent, and writes the PNG `png` (under a temporary name, then renamed). `display` is
// an XDisplay's id when has_3d_view, else ignored.
void render_picture(const Volume &image, const Volume *labels, const ColorTable &palette, int size, void *display,
                    const std::string &png);

} // namespace repmode::cli
