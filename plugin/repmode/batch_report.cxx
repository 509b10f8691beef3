// The HTML report of `repmode batch`: the page is written by hand (no template engine), with its pictures inlined as
// base64 (OpenSSL) and its plots as inline SVG, so DIR/report.html can be mailed or archived alone.
#include "batch_report.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <system_error>
#include <vector>

#include <openssl/evp.h>

#include "utf8.h"

namespace fs = std::filesystem;

namespace repmode::cli {

namespace {

constexpr const char *kNotFinite = "\u2014"; // an em dash: how a metric that is not finite shows in the table

// `s` with each byte that does not begin a UTF-8 sequence, and the control characters HTML does not allow, replaced
// by U+FFFD: paths and messages come from the file system and the manifest, and the page declares UTF-8.
std::string valid_utf8(const std::string &s)
{
    static const char kReplacement[] = "\xef\xbf\xbd";
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        const size_t n = utf8_length(s, i);
        const unsigned char c = static_cast<unsigned char>(s[i]);
        const bool control = n == 1 && ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f);
        if (n == 0 || control)
            out += kReplacement;
        else
            out.append(s, i, n);
        i += std::max<size_t>(n, 1);
    }
    return out;
}

// `s` as HTML text or as a quoted attribute's value.
std::string escape(const std::string &s)
{
    std::string out;
    for (const char c : valid_utf8(s)) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&#39;"; break;
        default: out += c;
        }
    }
    return out;
}

// Numbers through std::to_chars: the same text whatever the locale (ITK and VTK may set one).
std::string to_text(double v, std::chars_format format, int precision)
{
    char buffer[512];
    const std::to_chars_result r = std::to_chars(buffer, buffer + sizeof buffer, v, format, precision);
    return r.ec == std::errc() ? std::string(buffer, r.ptr) : std::string(kNotFinite);
}

std::string fixed(double v, int decimals) { return to_text(v, std::chars_format::fixed, decimals); }

// A metric's value: 4 significant digits, exponent form only when very large or small.
std::string metric_text(double v)
{
    return std::isfinite(v) ? to_text(v, std::chars_format::general, 4) : std::string(kNotFinite);
}

// Seconds with 3 significant digits, whole seconds from 100 s.
std::string seconds_text(double s)
{
    if (!std::isfinite(s))
        return kNotFinite;
    if (s == 0.0)
        return "0";
    const int decimals = std::clamp(2 - static_cast<int>(std::floor(std::log10(std::fabs(s)))), 0, 6);
    return fixed(s, decimals);
}

// Coordinates in the plots: a tenth of a pixel is plenty, and keeps the SVG short.
std::string px(double v) { return fixed(std::isfinite(v) ? v : 0.0, 1); }

std::string read_picture(const std::string &path)
{
    std::error_code ec;
    if (!fs::is_regular_file(path, ec))
        throw std::runtime_error("cannot read the picture " + path + ": " +
                                 (ec ? ec.message() : fs::exists(path, ec) ? "not a regular file" : "no such file"));
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw std::runtime_error("cannot read the picture " + path + ": " + std::strerror(errno));
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad())
        throw std::runtime_error("cannot read the picture " + path);
    return bytes;
}

std::string base64(const std::string &bytes)
{
    // EVP_EncodeBlock takes an int length: encode in chunks of a multiple of 3 bytes, which concatenate exactly.
    constexpr size_t kChunk = 3 * (1 << 16);
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    std::vector<unsigned char> buffer(kChunk / 3 * 4 + 1);
    for (size_t at = 0; at < bytes.size(); at += kChunk) {
        const size_t n = std::min(kChunk, bytes.size() - at);
        const int written = EVP_EncodeBlock(buffer.data(), reinterpret_cast<const unsigned char *>(bytes.data() + at),
                                            static_cast<int>(n));
        out.append(reinterpret_cast<const char *>(buffer.data()), static_cast<size_t>(written));
    }
    return out;
}

// The CSS class of a status, only for the statuses the page knows (a status is text, not trusted as a class name).
std::string status_class(const std::string &status)
{
    return status == "done" || status == "skipped" || status == "failed" ? status : "other";
}

std::string plural(size_t n, const std::string &one, const std::string &many)
{
    return std::to_string(n) + " " + (n == 1 ? one : many);
}

// "12 volumes: 10 done, 1 skipped, 1 failed", then any other status in order of first appearance.
std::string counts_text(const std::vector<ReportRow> &rows)
{
    std::vector<std::pair<std::string, size_t>> counts = {{"done", 0}, {"skipped", 0}, {"failed", 0}};
    for (const ReportRow &r : rows) {
        auto it = std::find_if(counts.begin(), counts.end(), [&](const auto &c) { return c.first == r.status; });
        if (it == counts.end())
            counts.emplace_back(r.status, 1);
        else
            ++it->second;
    }
    std::string text = plural(rows.size(), "volume", "volumes") + ":";
    for (size_t i = 0; i < counts.size(); ++i)
        text += (i ? ", " : " ") + std::to_string(counts[i].second) + " " +
                (counts[i].first.empty() ? "without a status" : counts[i].first);
    return text;
}

// Every metric name of the rows, in order of first appearance.
std::vector<std::string> metric_names(const std::vector<ReportRow> &rows)
{
    std::vector<std::string> names;
    for (const ReportRow &r : rows)
        for (const auto &m : r.metrics)
            if (std::find(names.begin(), names.end(), m.first) == names.end())
                names.push_back(m.first);
    return names;
}

// The row's value of the metric `name` (its first, should it repeat), or null when the row lacks it.
const double *find_metric(const ReportRow &r, const std::string &name)
{
    for (const auto &m : r.metrics)
        if (m.first == name)
            return &m.second;
    return nullptr;
}

// The quantile p of sorted values, interpolated linearly between order statistics (numpy's default).
double quantile(const std::vector<double> &sorted, double p)
{
    const double h = (static_cast<double>(sorted.size()) - 1.0) * p;
    const size_t i = static_cast<size_t>(std::floor(h));
    if (i + 1 >= sorted.size())
        return sorted.back();
    return sorted[i] + (h - static_cast<double>(i)) * (sorted[i + 1] - sorted[i]);
}

// A dot's vertical offset in [-1, 1): a hash of the row, so dots of equal values spread apart and the page does not
// change from one run to the next.
double jitter(int row)
{
    uint32_t h = static_cast<uint32_t>(row) * 2654435761u;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    return static_cast<double>(h >> 8) / static_cast<double>(1u << 23) - 1.0;
}

// The plot's axis: its ends and the step between ticks, 1, 2 or 5 times a power of ten, about 5 ticks.
struct Axis {
    double lo, hi, step; // step 0: ticks at the ends only
};

Axis nice_axis(double lo, double hi)
{
    if (lo == hi) {
        const double d = lo == 0.0 ? 1.0 : std::fabs(lo) * 0.1;
        lo -= d;
        hi += d;
    }
    const double rough = (hi - lo) / 5.0;
    if (!std::isfinite(rough) || !(rough > 0.0))
        return {lo, hi, 0.0};
    const double magnitude = std::pow(10.0, std::floor(std::log10(rough))), norm = rough / magnitude;
    const double step = (norm < 1.5 ? 1.0 : norm < 3.0 ? 2.0 : norm < 7.0 ? 5.0 : 10.0) * magnitude;
    if (!std::isfinite(step) || !(step > 0.0))
        return {lo, hi, 0.0};
    return {std::floor(lo / step) * step, std::ceil(hi / step) * step, step};
}

// A tick's label: as many decimals as the step needs, exponent form beyond [1e-4, 1e6).
std::string tick_text(double v, double step)
{
    if (std::fabs(v) < step * 1e-9)
        v = 0.0; // not "-0.00" from rounding
    if (step == 0.0 || step < 1e-4 || step >= 1e6)
        return to_text(v, std::chars_format::general, 3);
    return fixed(v, std::max(0, -static_cast<int>(std::floor(std::log10(step) + 1e-9))));
}

// The distribution of the metric `name` over the rows that have it: a dot a volume (its title the volume and the
// value, a link to its picture), a box from the first to the third quartile, a line at the median, an axis.
std::string metric_plot(const std::string &name, const std::vector<ReportRow> &rows, int index)
{
    std::vector<double> values;
    size_t having = 0;
    for (const ReportRow &r : rows)
        if (const double *v = find_metric(r, name)) {
            ++having;
            if (std::isfinite(*v))
                values.push_back(*v);
        }
    const size_t not_finite = having - values.size();

    std::string html = "<section class=\"metric\" id=\"metric-" + std::to_string(index) + "\">\n<h3>" + escape(name) +
                       "</h3>\n<p class=\"summary\">";
    if (values.empty())
        return html + plural(having, "volume", "volumes") + ", none with a finite value.</p>\n</section>\n";
    std::sort(values.begin(), values.end());
    const double q1 = quantile(values, 0.25), median = quantile(values, 0.5), q3 = quantile(values, 0.75);
    html += plural(values.size(), "volume", "volumes");
    if (not_finite)
        html += " (and " + std::to_string(not_finite) + " not finite, not drawn)";
    if (values.size() == 1)
        html += ": " + metric_text(values.front());
    else
        html += ": median " + metric_text(median) + ", quartiles " + metric_text(q1) + " and " + metric_text(q3) +
                ", range " + metric_text(values.front()) + " to " + metric_text(values.back());
    html += ".</p>\n";

    // The plot's frame, in pixels: dots around kMid, the axis at kAxisY, its labels below.
    constexpr int kWidth = 720, kHeight = 106;
    constexpr double kLeft = 36, kRight = kWidth - 36, kMid = 40, kSpread = 14, kAxisY = 78;
    const Axis axis = nice_axis(values.front(), values.back());
    const auto x = [&](double v) {
        const double t = (v - axis.lo) / (axis.hi - axis.lo);
        return kLeft + (std::isfinite(t) ? std::clamp(t, 0.0, 1.0) : 0.5) * (kRight - kLeft);
    };

    const std::string width = std::to_string(kWidth), height = std::to_string(kHeight);
    html += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + width + "\" height=\"" + height +
            "\" viewBox=\"0 0 " + width + " " + height + "\" role=\"img\" aria-label=\"" +
            escape("the distribution of " + name + " over " + plural(values.size(), "volume", "volumes")) + "\">\n";
    html += "<rect class=\"box\" x=\"" + px(x(q1)) + "\" y=\"" + px(kMid - 22) + "\" width=\"" +
            px(std::max(x(q3) - x(q1), 1.0)) + "\" height=\"44\"/>\n";
    html += "<line class=\"median\" x1=\"" + px(x(median)) + "\" x2=\"" + px(x(median)) + "\" y1=\"" +
            px(kMid - 26) + "\" y2=\"" + px(kMid + 26) + "\"/>\n";

    // The axis and its ticks.
    html += "<g class=\"axis\">\n<line x1=\"" + px(kLeft) + "\" x2=\"" + px(kRight) + "\" y1=\"" + px(kAxisY) +
            "\" y2=\"" + px(kAxisY) + "\"/>\n";
    std::vector<double> ticks;
    if (axis.step > 0.0) {
        const long long n = std::llround((axis.hi - axis.lo) / axis.step);
        if (n >= 1 && n <= 50)
            for (long long i = 0; i <= n; ++i)
                ticks.push_back(axis.lo + static_cast<double>(i) * axis.step);
    }
    if (ticks.empty())
        ticks = {axis.lo, axis.hi};
    for (const double t : ticks) {
        const std::string tx = px(x(t));
        html += "<line x1=\"" + tx + "\" x2=\"" + tx + "\" y1=\"" + px(kAxisY) + "\" y2=\"" + px(kAxisY + 5) +
                "\"/><text x=\"" + tx + "\" y=\"" + px(kAxisY + 19) + "\">" + escape(tick_text(t, axis.step)) +
                "</text>\n";
    }
    html += "</g>\n";

    // The dots, in the rows' order.
    for (const ReportRow &r : rows) {
        const double *v = find_metric(r, name);
        if (!v || !std::isfinite(*v))
            continue;
        const std::string dot = "<circle class=\"dot " + status_class(r.status) + "\" cx=\"" + px(x(*v)) +
                                "\" cy=\"" + px(kMid + kSpread * jitter(r.row)) + "\" r=\"4.5\"><title>" +
                                escape(r.name + " (row " + std::to_string(r.row) + "): " + name + " " +
                                       metric_text(*v)) +
                                "</title></circle>";
        if (r.picture.empty())
            html += dot + "\n";
        else
            html += "<a href=\"#v-" + std::to_string(r.row) + "\">" + dot + "</a>\n";
    }
    return html + "</svg>\n</section>\n";
}

const char kStyle[] = R"(body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; color: #1f2328; background: #fafaf8; margin: 0 auto; padding: 1.5em 2em 3em; max-width: 1500px; }
h1 { font-size: 1.6em; margin: 0 0 0.2em; }
h2 { font-size: 1.25em; margin: 1.8em 0 0.6em; padding-bottom: 0.2em; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 1.05em; margin: 1.2em 0 0.1em; }
p.counts { font-size: 1.15em; font-weight: 600; margin: 0.2em 0 0.6em; }
dl.run { display: grid; grid-template-columns: max-content 1fr; gap: 0.1em 1.2em; margin: 0; }
dl.run dt { color: #57606a; }
dl.run dd { margin: 0; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid #c8ced6; padding: 0.25em 0.55em; text-align: left; vertical-align: top; }
thead th { background: #eaeef2; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.path { overflow-wrap: anywhere; min-width: 8em; max-width: 26em; }
td.message { white-space: pre-wrap; overflow-wrap: anywhere; min-width: 8em; max-width: 30em; }
.status { font-weight: 600; }
.status.done { color: #1a7f37; }
.status.skipped { color: #57606a; }
.status.failed { color: #c62828; }
tr.failed td { background: #fdeceb; }
p.summary { margin: 0 0 0.2em; color: #57606a; }
svg { display: block; max-width: 100%; height: auto; background: #fff; border: 1px solid #d0d7de; }
svg .box { fill: #dbe7f5; stroke: #4a6fa5; stroke-width: 1; }
svg .median { stroke: #1f3b66; stroke-width: 2.5; }
svg .axis line { stroke: #57606a; stroke-width: 1; }
svg .axis text { font-size: 12px; fill: #1f2328; text-anchor: middle; }
svg .dot { fill: #2b6cb0; fill-opacity: 0.8; stroke: #fff; stroke-width: 1; }
svg .dot.skipped { fill: #8c959f; }
svg .dot.failed { fill: #c62828; }
svg .dot:hover { stroke: #1f2328; stroke-width: 2; }
.gallery { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.gallery figure { margin: 0; padding: 0.5em; background: #fff; border: 1px solid #c8ced6; max-width: 420px; }
.gallery figure:target { outline: 3px solid #2b6cb0; }
.gallery img { display: block; max-width: 100%; height: auto; }
.gallery figcaption { margin-top: 0.35em; overflow-wrap: anywhere; }
)";

void add_run_item(std::string &html, const char *label, const std::string &value)
{
    html += "<dt>" + std::string(label) + "</dt><dd>" + escape(value) + "</dd>\n";
}

} // namespace

std::string report_html(const ReportRun &run, const std::vector<ReportRow> &rows)
{
    const std::vector<std::string> names = metric_names(rows);
    std::string html = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                       "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                       "<title>" +
                       escape("repmode batch: " + run.manifest) + "</title>\n<style>\n" + kStyle +
                       "</style>\n</head>\n<body>\n<header>\n<h1>repmode batch</h1>\n<p class=\"counts\">" +
                       escape(counts_text(rows)) + "</p>\n<dl class=\"run\">\n";
    add_run_item(html, "Model", run.model);
    add_run_item(html, "Manifest", run.manifest);
    add_run_item(html, "Output folder", run.out_dir);
    add_run_item(html, "repmode", run.version);
    add_run_item(html, "Engine", run.engine);
    add_run_item(html, "Date", run.date);
    html += "</dl>\n</header>\n";

    // The table: a row each, in the manifest's order.
    html += "<section id=\"table\">\n<h2>Volumes</h2>\n<div class=\"scroll\">\n<table id=\"volumes\">\n<thead>\n<tr>"
            "<th>Row</th><th>Name</th><th>Input</th><th>Task</th><th>Status</th><th>Message</th><th>Seconds</th>"
            "<th>Voxels</th>";
    for (const std::string &name : names)
        html += "<th>" + escape(name) + "</th>";
    html += "</tr>\n</thead>\n<tbody>\n";
    for (const ReportRow &r : rows) {
        const std::string cls = status_class(r.status), row = std::to_string(r.row);
        html += "<tr class=\"" + cls + "\"><td class=\"num\">" + row + "</td><td class=\"path\">";
        html += r.picture.empty() ? escape(r.name) : "<a href=\"#v-" + row + "\">" + escape(r.name) + "</a>";
        html += "</td><td class=\"path\">" + escape(r.input) + "</td><td>" + escape(r.task) +
                "</td><td class=\"status " + cls + "\">" + escape(r.status) + "</td><td class=\"message\">" +
                escape(r.message) + "</td><td class=\"num\">" + seconds_text(r.seconds) + "</td><td class=\"num\">" +
                std::to_string(r.voxels) + "</td>";
        for (const std::string &name : names) {
            const double *v = find_metric(r, name);
            html += "<td class=\"num\">" + (v ? metric_text(*v) : std::string()) + "</td>";
        }
        html += "</tr>\n";
    }
    html += "</tbody>\n</table>\n</div>\n</section>\n";

    html += "<section id=\"metrics\">\n<h2>Metrics</h2>\n";
    if (names.empty())
        html += "<p>No metrics: no row of the manifest gave a target.</p>\n";
    for (size_t i = 0; i < names.size(); ++i)
        html += metric_plot(names[i], rows, static_cast<int>(i) + 1);
    html += "</section>\n";

    html += "<section id=\"pictures\">\n<h2>Pictures</h2>\n";
    bool any = false;
    for (const ReportRow &r : rows)
        any = any || !r.picture.empty();
    if (!any)
        html += "<p>No pictures.</p>\n";
    else {
        html += "<div class=\"gallery\">\n";
        for (const ReportRow &r : rows) {
            if (r.picture.empty())
                continue;
            const std::string row = std::to_string(r.row);
            html += "<figure id=\"v-" + row + "\"><img alt=\"" + escape(r.name + " (row " + row + ")") +
                    "\" src=\"data:image/png;base64," + base64(read_picture(r.picture)) + "\"><figcaption>" + row +
                    ". " + escape(r.name) + " \u2014 <span class=\"status " + status_class(r.status) + "\">" +
                    escape(r.status) + "</span></figcaption></figure>\n";
        }
        html += "</div>\n";
    }
    return html + "</section>\n</body>\n</html>\n";
}

} // namespace repmode::cli
