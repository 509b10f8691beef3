#include "output_files.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <system_error>

#include <sys/types.h>
#include <unistd.h>

#include "cli.h"

namespace fs = std::filesystem;

namespace repmode::cli {

namespace {

// "<dir>/out.nii.gz" -> {"out", ".nii.gz"}: compressed formats keep both extensions so ITK picks the same format.
std::pair<std::string, std::string> split_name(const fs::path &p)
{
    const std::string name = p.filename().string();
    size_t dot = name.rfind('.');
    if (dot != std::string::npos && dot > 0 && name.compare(dot, std::string::npos, ".gz") == 0) {
        const size_t inner = name.rfind('.', dot - 1);
        if (inner != std::string::npos && inner > 0)
            dot = inner;
    }
    if (dot == std::string::npos || dot == 0)
        return {name, ""};
    return {name.substr(0, dot), name.substr(dot)};
}

bool writes_data_file(std::string ext)
{
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    return ext == ".mhd" || ext == ".nhdr";
}

// Removes the temporary files (or folders) that runs killed outright (SIGKILL, a power cut) left for the output
// `stem``ext` in `dir`: ".<stem>.tmp-<pid><ext>" whose process no longer exists.
void remove_stale_temporaries(const fs::path &dir, const std::string &stem, const std::string &ext)
{
    const std::string prefix = "." + stem + ".tmp-";
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.compare(0, prefix.size(), prefix) != 0)
            continue;
        std::string rest = name.substr(prefix.size());
        if (!ext.empty() && rest.size() > ext.size() && rest.compare(rest.size() - ext.size(), ext.size(), ext) == 0)
            rest.resize(rest.size() - ext.size());
        if (rest.empty() || rest.find_first_not_of("0123456789") != std::string::npos || rest.size() > 9)
            continue;
        const pid_t pid = static_cast<pid_t>(std::stol(rest));
        if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH) {
            std::error_code ignored;
            fs::remove_all(it->path(), ignored);
        }
    }
}

} // namespace

OutputFiles::~OutputFiles()
{
    remove_staged();
    for (auto dir = made_.rbegin(); dir != made_.rend(); ++dir) {
        std::error_code ignored;
        fs::remove(*dir, ignored); // only when empty
    }
}

void OutputFiles::make_folder(const std::string &dir)
{
    std::vector<fs::path> missing;
    std::error_code ec;
    fs::path p = fs::absolute(dir, ec).lexically_normal();
    if (!p.has_filename()) // "out/" names the folder "out"
        p = p.parent_path();
    for (; !p.empty() && !fs::exists(p, ec); p = p.parent_path())
        missing.push_back(p);
    for (auto m = missing.rbegin(); m != missing.rend(); ++m) {
        if (!fs::create_directory(*m, ec) && ec)
            throw Failure("cannot create the folder " + dir + ": " + ec.message(), kBadInput);
        made_.push_back(m->string());
    }
}

std::string OutputFiles::stage(const std::string &path)
{
    const fs::path out(path);
    const fs::path dir = out.has_parent_path() ? out.parent_path() : fs::path(".");
    std::error_code ec;
    if (!fs::is_directory(dir, ec))
        throw Failure("cannot write " + path + ": the folder " + dir.string() + " does not exist", kBadInput);
    const auto [stem, ext] = split_name(out);
    remove_stale_temporaries(dir, stem, ext);
    const std::string tag = ".tmp-" + std::to_string(static_cast<long>(getpid()));
    Entry e{path, "", ""};
    if (writes_data_file(ext)) {
        e.folder = (dir / ("." + stem + tag)).string();
        e.temp = (fs::path(e.folder) / out.filename()).string();
        fs::remove_all(e.folder, ec); // this process's own, from an output staged before under the same name
        if (!fs::create_directory(e.folder, ec))
            throw Failure("cannot write " + path + ": cannot create " + e.folder + ": " + ec.message(), kBadInput);
    } else {
        e.temp = (dir / ("." + stem + tag + ext)).string();
    }
    entries_.push_back(e);
    return e.temp;
}

std::string OutputFiles::staged(const std::string &path) const
{
    for (const Entry &e : entries_)
        if (e.path == path)
            return e.temp;
    throw Failure("no output " + path + " was staged", kInternal);
}

void OutputFiles::commit()
{
    // Files already at the outputs' names are moved aside first and put back if a later rename fails, so that a
    // failed commit leaves the folder as it was.
    std::vector<std::pair<fs::path, fs::path>> placed, aside; // (temporary, final), (aside, final)
    const std::string tag = ".old-" + std::to_string(static_cast<long>(getpid()));
    std::error_code ec;
    for (size_t i = 0; i < entries_.size() && !ec; i++) {
        const Entry &e = entries_[i];
        const fs::path out(e.path);
        std::vector<std::pair<fs::path, fs::path>> moves; // a split format's data file first, then its header
        if (!e.folder.empty()) {
            const fs::path dir = out.has_parent_path() ? out.parent_path() : fs::path(".");
            for (fs::directory_iterator it(e.folder, ec), end; !ec && it != end; it.increment(ec))
                if (it->path().filename() != out.filename())
                    moves.emplace_back(it->path(), dir / it->path().filename());
        }
        moves.emplace_back(e.temp, out);
        for (const auto &[from, to] : moves) {
            if (!ec && fs::is_regular_file(fs::symlink_status(to, ec))) {
                const fs::path old = to.parent_path() / ("." + to.filename().string() + tag);
                fs::rename(to, old, ec);
                if (!ec)
                    aside.emplace_back(old, to);
            }
            ec.clear(); // symlink_status of a missing file
            fs::rename(from, to, ec);
            if (ec) {
                const std::string why = e.path + ": " + ec.message();
                for (auto p = placed.rbegin(); p != placed.rend(); ++p)
                    fs::rename(p->second, p->first, ec);
                for (const auto &[old, name] : aside)
                    fs::rename(old, name, ec);
                remove_staged();
                throw Failure("cannot write " + why, kBadInput);
            }
            placed.emplace_back(from, to);
        }
    }
    for (const auto &[old, name] : aside)
        fs::remove(old, ec);
    remove_staged(); // the emptied folders of split formats
    made_.clear();
}

void OutputFiles::discard(const std::string &path)
{
    for (auto e = entries_.begin(); e != entries_.end(); ++e)
        if (e->path == path) {
            remove(*e);
            entries_.erase(e);
            return;
        }
}

void OutputFiles::remove(const Entry &e)
{
    std::error_code ignored;
    fs::remove_all(e.folder.empty() ? e.temp : e.folder, ignored);
}

void OutputFiles::remove_staged()
{
    for (const Entry &e : entries_)
        remove(e);
    entries_.clear();
}

void write_text(const std::string &path, const std::string &text, OutputFiles &outputs)
{
    std::ofstream out(outputs.stage(path), std::ios::binary);
    out << text;
    if (!out.flush())
        throw Failure("cannot write " + path, kBadInput);
}

} // namespace repmode::cli
