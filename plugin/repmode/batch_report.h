// The HTML report of `repmode batch` (DIR/report.html): one self-contained page with the run, a table of the
// manifest's rows, the distribution of each metric over the volumes and a gallery of their pictures.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace repmode::cli {

// One manifest row as the batch ended it.
struct ReportRow {
    int row = 0;                 // the manifest's row, from 1
    std::string name;            // the outputs' base name in DIR
    std::string input, task;     // as the manifest gives them
    std::string status;          // "done", "skipped" (outputs already there with matching provenance) or "failed"
    std::string message;         // why it failed (or a note); may be empty
    double seconds = 0.0;
    int64_t voxels = 0;
    std::vector<std::pair<std::string, double>> metrics; // e.g. {"pearson", 0.81}; NaN = not finite; empty: no target
    std::string picture;         // path of a PNG file to inline; empty when there is none
};

// What the page's heading says about the run.
struct ReportRun {
    std::string model, manifest, out_dir, version, engine, date; // date ISO 8601 UTC
};

// The report as one self-contained HTML5 page: every picture inlined as a data: URI (base64 PNG), no external
// resources (no CDN, no fonts, no scripts needed to see it). Throws std::runtime_error naming the file when a
// picture cannot be read.
//
// The same arguments give the same bytes. Text is escaped, and bytes that are not UTF-8 become U+FFFD, so the page
// stays valid whatever the paths hold. Numbers are written locale-independently: seconds with 3 significant digits
// (whole seconds from 100 s), metrics with 4; a metric that is not finite shows as "—" (U+2014) in the table and
// is left out of its plot.
std::string report_html(const ReportRun &run, const std::vector<ReportRow> &rows);

} // namespace repmode::cli
