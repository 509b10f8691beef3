// repmode verify OUTPUT [--input IN] [--model M] [--mask MASK]: runs again the prediction that an output's provenance
// record describes (docs/cli.md §1.6) into a temporary folder, with the record's date and file names, and compares
// the two files byte for byte. Identical bytes exit 0; otherwise the first difference is named (in the record, the
// voxels, or the bytes) and the exit code is 3.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <itkImageFileReader.h>
#include <itkVectorImage.h>

#include "cli.h"
#include "image_io.h"
#include "interrupt.h"
#include "predict.h"
#include "provenance.h"

namespace repmode::cli {

namespace {

namespace fs = std::filesystem;

constexpr int kDiffers = 3;

// A folder of its own under the system's temporary folder (TMPDIR), removed with everything in it.
class TemporaryFolder {
  public:
    TemporaryFolder()
    {
        std::string pattern = (fs::temp_directory_path() / "repmode-verify-XXXXXX").string();
        if (!mkdtemp(pattern.data()))
            throw Failure("cannot make a temporary folder in " + fs::temp_directory_path().string() + ": " +
                              std::strerror(errno),
                          kBadInput);
        path_ = pattern;
    }
    ~TemporaryFolder()
    {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    TemporaryFolder(const TemporaryFolder &) = delete;
    TemporaryFolder &operator=(const TemporaryFolder &) = delete;
    std::string operator/(const std::string &name) const { return (fs::path(path_) / name).string(); }

  private:
    std::string path_;
};

std::string read_bytes(const std::string &path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw Failure("cannot read " + path, kBadInput);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    return bytes.str();
}

// Fails unless the file a record names is there; a Failure (exit 1) names the option that gives another place.
void check_there(const std::string &path, const std::string &what, const std::string &option)
{
    std::error_code ec;
    if (!fs::exists(path, ec))
        throw Failure("the " + what + " recorded, " + path + ", is not there: give its place with " + option,
                      kBadInput);
}

using Voxels = itk::VectorImage<double, 3>;

Voxels::Pointer read_voxels(const std::string &path)
{
    auto reader = itk::ImageFileReader<Voxels>::New();
    reader->SetFileName(path);
    try {
        reader->Update();
    } catch (const itk::ExceptionObject &e) {
        throw Failure("cannot read " + path + ": " + describe(e), kBadInput);
    }
    return reader->GetOutput();
}

// The first difference of two images' geometry or voxels (an empty string when there is none), with the count of
// voxels that differ in `differing`.
std::string image_difference(const std::string &recorded, const std::string &again, int64_t &differing)
{
    const Voxels::Pointer a = read_voxels(recorded), b = read_voxels(again);
    differing = 0;
    const auto size = a->GetLargestPossibleRegion().GetSize();
    if (size != b->GetLargestPossibleRegion().GetSize() ||
        a->GetNumberOfComponentsPerPixel() != b->GetNumberOfComponentsPerPixel())
        return "the size or the number of components";
    if (a->GetSpacing() != b->GetSpacing() || a->GetOrigin() != b->GetOrigin() ||
        a->GetDirection() != b->GetDirection())
        return "the geometry (spacing, origin or direction)";
    const size_t components = a->GetNumberOfComponentsPerPixel();
    const size_t n = a->GetPixelContainer()->Size();
    const double *pa = a->GetBufferPointer(), *pb = b->GetBufferPointer();
    std::string first;
    for (size_t i = 0; i < n; i++) {
        if (std::memcmp(&pa[i], &pb[i], sizeof(double)) == 0)
            continue;
        if (differing++ == 0) {
            const size_t voxel = i / components;
            std::ostringstream where;
            where.precision(9);
            where << "the voxel (x, y, z) = (" << voxel % size[0] << ", " << voxel / size[0] % size[1] << ", "
                  << voxel / (size[0] * size[1]) << ")";
            if (components > 1)
                where << ", component " << i % components;
            where << ": " << pa[i] << " recorded, " << pb[i] << " again";
            first = where.str();
        }
    }
    return first;
}

// The first byte where two texts differ.
size_t first_byte(const std::string &a, const std::string &b)
{
    size_t i = 0;
    while (i < a.size() && i < b.size() && a[i] == b[i])
        i++;
    return i;
}

} // namespace

int run_verify(int argc, char **argv)
{
    CommandLine cmd("verify", "Runs again the prediction that an output's provenance record describes (model, input, "
                              "tasks, every parameter), with the record's date, and compares the bytes: exit 0 when "
                              "they are identical, 3 with the first difference named when they are not.");
    TCLAP::UnlabeledValueArg<std::string> output("output", "an image repmode wrote (prediction, label map, "
                                                           "uncertainty, segmentation)",
                                                 true, "", "OUTPUT", cmd);
    TCLAP::ValueArg<std::string> input("", "input", "the input, when it is no longer where the record says", false,
                                       "", "IN", cmd);
    TCLAP::ValueArg<std::string> model("", "model", "the model, when it is no longer where the record says", false,
                                       "", "M", cmd);
    TCLAP::ValueArg<std::string> mask("", "mask", "the mask, when it is no longer where the record says", false, "",
                                      "MASK", cmd);
    cmd.parse_or_fail(argc, argv);
    const std::string path = output.getValue();
    if (!is_image_file(path))
        throw Failure("cannot read " + path + ": not an image file ITK can read", kBadInput);
    const std::string text = read_provenance(path);
    if (text.empty())
        throw Failure(path + " has no repmode provenance record (docs/cli.md section 1.6): nothing to verify",
                      kBadInput);
    const Json recorded = parse_record(text, path);
    const cJSON *role_field = cJSON_GetObjectItemCaseSensitive(recorded.get(), "output");
    const std::string role = cJSON_IsString(role_field) ? role_field->valuestring : "";
    if (role != "prediction" && role != "uncertainty" && role != "labels" && role != "segmentation")
        throw Failure(path + ": cannot verify an output recorded as '" + role +
                          "' (verify runs predict's outputs: prediction, uncertainty, labels, segmentation)",
                      kBadInput);

    PredictRequest request = request_of(recorded.get(), input.getValue(), model.getValue(), mask.getValue());
    check_there(request.model, "model", "--model");
    check_there(request.input, "input", "--input");
    if (!request.mask.empty())
        check_there(request.mask, "mask", "--mask");
    request.threads = cmd.threads();

    Progress progress("verify");
    // The files must be the ones recorded: another input gives other bytes, and says nothing of reproducibility.
    for (const auto &[name, file] : {std::pair<const char *, std::string>{"model", request.model},
                                     {"input", request.input},
                                     {"mask", request.mask}}) {
        if (file.empty())
            continue;
        const cJSON *entry = cJSON_GetObjectItemCaseSensitive(recorded.get(), name);
        const std::string want = cJSON_GetObjectItemCaseSensitive(entry, "sha256")->valuestring;
        progress.stage("checking the " + std::string(name) + " " + file);
        const std::string got = sha256_of(file);
        if (got != want) {
            std::printf("differs: %s.sha256: %s is not the file recorded (SHA-256 %s, the record's %s)\n", name,
                        file.c_str(), got.c_str(), want.c_str());
            return kDiffers;
        }
    }

    // The record's engine when it is the portable one (its bits differ from the vector paths'); AVX2 and AVX-512
    // give the same bits, so the best this processor has stands in for either.
    const cJSON *software = cJSON_GetObjectItemCaseSensitive(recorded.get(), "software");
    const cJSON *engine = cJSON_GetObjectItemCaseSensitive(software, "engine");
    if (cJSON_IsString(engine) && std::strcmp(engine->valuestring, "portable") == 0)
        setenv("REPMODE_ISA", "portable", 1);

    TemporaryFolder folder;
    const std::string name = fs::path(path).filename().string();
    const std::string again = folder / name;
    request.output = role == "prediction" ? again : folder / "prediction.mha";
    if (role == "uncertainty")
        request.uncertainty = again;
    if (role == "labels")
        request.labels = again;
    if (role == "segmentation")
        request.segmentation = again;
    {
        OutputFiles outputs;
        predict(request, progress, outputs);
        outputs.commit();
    }

    const Json fresh = parse_record(read_provenance(again), again);
    const std::string record_difference = first_difference(recorded.get(), fresh.get());
    int64_t differing = 0;
    const std::string voxel_difference = image_difference(path, again, differing);
    const std::string sidecar = provenance_sidecar(path);
    std::string bytes = read_bytes(path), bytes_again = read_bytes(again);
    if (!sidecar.empty()) { // the record beside the image is part of the output
        bytes += read_bytes(sidecar);
        bytes_again += read_bytes(provenance_sidecar(again));
    }
    if (bytes == bytes_again && voxel_difference.empty()) { // the voxels: those of a .mhd or .nhdr are elsewhere
        std::printf("identical: %s is, byte for byte, what its provenance gives again (%zu bytes)\n", path.c_str(),
                    bytes.size());
        return 0;
    }
    if (!record_difference.empty())
        std::printf("differs: the provenance, at %s (recorded, then again)\n", record_difference.c_str());
    if (!voxel_difference.empty())
        std::printf("differs: %s%s\n", voxel_difference.c_str(),
                    differing > 0 ? (" (" + std::to_string(differing) + " values differ)").c_str() : "");
    const cJSON *blas = cJSON_GetObjectItemCaseSensitive(software, "blas");
    if (cJSON_IsString(blas) && std::strcmp(blas->valuestring, rm_blas_core()) != 0)
        std::printf("hint: the record was made on OpenBLAS's %s kernels, this run has %s: run verify with "
                    "OPENBLAS_CORETYPE=%s\n",
                    blas->valuestring, rm_blas_core(), blas->valuestring);
    if (record_difference.empty() && voxel_difference.empty())
        std::printf("differs: the bytes, from byte %zu (the voxels and the record are the same)\n",
                    first_byte(bytes, bytes_again));
    else if (voxel_difference.empty())
        std::printf("the voxels are identical\n");
    return kDiffers;
}

} // namespace repmode::cli
