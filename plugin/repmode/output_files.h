// A run's output files, all or none (docs/cli.md §1.5): every output is written under a hidden temporary name in its
// own folder and renamed into place only when the whole run has succeeded, so a run that fails or is interrupted
// after writing some of its outputs leaves none of them, and no temporary file.
#pragma once

#include <string>
#include <vector>

namespace repmode::cli {

class OutputFiles {
  public:
    OutputFiles() = default;
    // Removes every staged file that was not committed.
    ~OutputFiles();
    OutputFiles(const OutputFiles &) = delete;
    OutputFiles &operator=(const OutputFiles &) = delete;

    // The name to write the output `path` under now: ".<stem>.tmp-<pid><ext>" in the output's folder (the
    // extension kept, so ITK and VTK pick the format of `path`). Formats that write a separate data file (.mhd,
    // .nhdr) name it in their header, so they are written under their final names in a temporary folder
    // ".<stem>.tmp-<pid>" instead. Temporary files of processes that no longer exist (a run killed outright) are
    // removed first. Fails when the folder does not exist.
    std::string stage(const std::string &path);

    // Makes the folder `dir` and its missing parents for outputs to go in; those it made are removed again (when
    // empty) unless the outputs are committed.
    void make_folder(const std::string &dir);

    // The temporary name `path` was staged under, to read an output back before the commit.
    std::string staged(const std::string &path) const;

    // Removes the staged output `path`: an intermediate file, read back and no longer needed.
    void discard(const std::string &path);

    // Renames every staged output into place (a separate data file before its header). A failure removes the outputs
    // already renamed as well as the rest, and names the file.
    void commit();

  private:
    struct Entry {
        std::string path, temp, folder; // folder: the temporary folder of a split format, else empty
    };
    static void remove(const Entry &e);
    void remove_staged(); // every staged file, and forgets them
    std::vector<Entry> entries_;
    std::vector<std::string> made_; // folders make_folder created, deepest last

};

// Writes `text` as the output `path` of `outputs`.
void write_text(const std::string &path, const std::string &text, OutputFiles &outputs);

} // namespace repmode::cli
