// itk::RepModeImageFilter: equal to the core's sliding window on a z-scored volume (index order, normalization,
// sigmoid), streamed through itk::ImageFileWriter in several divisions bit for bit equal to the whole run, a
// requested sub-region equal to the same region of the whole run and asking its input only for the halo, the
// streamed statistics equal to a naive two-pass computation, streamed percentiles (radix selection) equal to the
// core's in memory bit for bit, a percentile model equal to the core on the percentile-normalized volume, geometry
// kept, progress and abort, bad parameters, and the real CT of tests/data/real streamed through the filter.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>
#include <utility>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <itkCommand.h>
#include <itkImage.h>
#include <itkImageFileReader.h>
#include <itkImageFileWriter.h>
#include <itkImageRegionIterator.h>
#include <itkMetaImageIOFactory.h>
#include <itkNrrdImageIOFactory.h>

#include "itkRepModeImageFilter.h"
#include "itkRepModeInputStatistics.h"
#include "itkRepModeNormalization.h"

namespace {

namespace fs = std::filesystem;

using ShortImage = itk::Image<short, 3>;
using FloatImage = itk::Image<float, 3>;
using Filter = itk::RepModeImageFilter<ShortImage, FloatImage>;

void register_io()
{
    static bool done = false;
    if (!done) {
        itk::MetaImageIOFactory::RegisterOneFactory();
        itk::NrrdImageIOFactory::RegisterOneFactory();
        done = true;
    }
}

rm_task task_2d(const char *name)
{
    rm_task t = rm_task_make(name, RM_TASK_BINARY);
    t.output_2d = 1;
    return t;
}

// A small random network with a regression task, a binary one and a binary one with 2D labels, patch 8³; with
// decoder_2d, the 2D decoder (docs/network.md §7.2), every task's labels 2D.
struct Net {
    std::vector<rm_task> tasks{rm_task_make("signal", RM_TASK_REGRESSION), rm_task_make("ink", RM_TASK_BINARY),
                               task_2d("ink2d")};
    rm_ctx *ctx = rm_ctx_create(2);
    rm_model *model = nullptr;
    rm_deploy *deploy[3] = {nullptr, nullptr, nullptr};
    explicit Net(bool decoder_2d = false)
    {
        for (rm_task &t : tasks)
            t.output_2d |= decoder_2d;
        rm_config cfg = rm_config_lite(tasks.data(), 3);
        cfg.decoder_2d = decoder_2d;
        cfg.base_channels = 2;
        cfg.levels = 2;
        for (int64_t &p : cfg.patch)
            p = 8;
        EXPECT_EQ(rm_model_create(ctx, &cfg, 11, &model), RM_OK);
        for (int t = 0; t < 3; t++)
            EXPECT_EQ(rm_deploy_create(ctx, model, t, &deploy[t]), RM_OK);
    }
    ~Net()
    {
        for (rm_deploy *d : deploy)
            rm_deploy_free(d);
        rm_model_free(model);
        rm_ctx_free(ctx);
    }
};

// A random image of size (x, y, z) with a non-trivial geometry and region index.
ShortImage::Pointer random_image(unsigned x, unsigned y, unsigned z, unsigned seed)
{
    auto image = ShortImage::New();
    ShortImage::RegionType region;
    region.SetIndex({{2, -3, 5}});
    region.SetSize({{x, y, z}});
    image->SetRegions(region);
    const double spacing[3] = {0.5, 0.7, 2.0}, origin[3] = {-10.0, 4.0, 33.0};
    image->SetSpacing(spacing);
    image->SetOrigin(origin);
    ShortImage::DirectionType dir;
    dir.Fill(0.0);
    dir(0, 1) = 1.0;
    dir(1, 0) = -1.0;
    dir(2, 2) = 1.0;
    image->SetDirection(dir);
    image->Allocate();
    uint32_t state = seed * 2654435761u + 1u;
    for (itk::ImageRegionIterator<ShortImage> it(image, region); !it.IsAtEnd(); ++it) {
        state = state * 1664525u + 1013904223u;
        it.Set(static_cast<short>(900 + static_cast<int>(state >> 22))); // 900..1923, CT-like
    }
    return image;
}

std::vector<float> pixels(const FloatImage *image)
{
    const float *p = image->GetBufferPointer();
    return std::vector<float>(p, p + image->GetBufferedRegion().GetNumberOfPixels());
}

bool bit_identical(const std::vector<float> &a, const std::vector<float> &b)
{
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// The image's voxels as float, in buffer order.
std::vector<float> as_floats(const ShortImage *image)
{
    const short *p = image->GetBufferPointer();
    return std::vector<float>(p, p + image->GetBufferedRegion().GetNumberOfPixels());
}

// The reference: the whole volume z-scored by a naive two-pass computation (or normalized with `given`, the core's
// parameters), then the core's sliding window.
std::vector<float> core_prediction(const Net &net, int task, const ShortImage *image, const int64_t patch[3],
                                   const rm_norm_params *given = nullptr)
{
    const auto size = image->GetLargestPossibleRegion().GetSize();
    const int64_t volume[3] = {(int64_t)size[2], (int64_t)size[1], (int64_t)size[0]}, start[3] = {0, 0, 0};
    const short *p = image->GetBufferPointer();
    const size_t n = image->GetLargestPossibleRegion().GetNumberOfPixels();
    double sum = 0.0, ss = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += p[i];
    const double mean = sum / (double)n;
    for (size_t i = 0; i < n; i++)
        ss += (p[i] - mean) * (p[i] - mean);
    const double sd = std::sqrt(ss / (double)n);
    std::vector<float> in(n), out(n);
    for (size_t i = 0; i < n; i++)
        in[i] = given ? rm_norm_value(given, p[i]) : (float)((p[i] - mean) * (1.0 / sd));
    struct Src {
        const std::vector<float> *v;
        const int64_t *vol;
    } src{&in, volume};
    auto read = [](void *user, const int64_t s[3], const int64_t sz[3], float *buf) -> int {
        const auto *r = static_cast<Src *>(user);
        for (int64_t z = 0; z < sz[0]; z++)
            for (int64_t y = 0; y < sz[1]; y++)
                for (int64_t x = 0; x < sz[2]; x++)
                    *buf++ = (*r->v)[(size_t)(((s[0] + z) * r->vol[1] + s[1] + y) * r->vol[2] + s[2] + x)];
        return 0;
    };
    const rm_window_params wp = rm_window_params_make(patch);
    EXPECT_EQ(rm_predict_region(net.ctx, net.deploy[task], &wp, volume, read, &src, start, volume, out.data(),
                                nullptr, nullptr),
              RM_OK)
        << rm_ctx_error(net.ctx);
    if (net.tasks[(size_t)task].output_2d) { // the mean over depth of the logits, summed in order in double
        const size_t plane = (size_t)(volume[1] * volume[2]);
        std::vector<float> map(plane);
        for (size_t i = 0; i < plane; i++) {
            double sum = 0.0;
            for (int64_t z = 0; z < volume[0]; z++)
                sum += out[(size_t)z * plane + i];
            map[i] = (float)(sum / (double)volume[0]);
        }
        out = map;
    }
    if (net.tasks[(size_t)task].kind == RM_TASK_BINARY)
        for (float &v : out)
            v = (float)(1.0 / (1.0 + std::exp(-(double)v)));
    return out;
}

Filter::Pointer make_filter(const Net &net, const std::string &task, const ShortImage *image)
{
    auto f = Filter::New();
    f->SetModel(net.model);
    f->SetTask(task);
    f->SetNumberOfThreads(2);
    f->SetInput(image);
    return f;
}

fs::path scratch(const std::string &name)
{
    const fs::path dir = fs::temp_directory_path() / ("repmode_itk_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    return dir / name;
}

// Writes an image (a pipeline's output: in `divisions` streamed pieces) to a scratch file; returns its path.
template <typename TImage>
fs::path write_file(const TImage *image, const std::string &name, unsigned divisions = 1)
{
    const fs::path file = scratch(name);
    auto writer = itk::ImageFileWriter<TImage>::New();
    writer->SetInput(image);
    writer->SetFileName(file.string());
    writer->SetNumberOfStreamDivisions(divisions);
    writer->Update();
    return file;
}

// A file read back whole.
FloatImage::Pointer read_float(const fs::path &file)
{
    auto reader = itk::ImageFileReader<FloatImage>::New();
    reader->SetFileName(file.string());
    reader->Update();
    return reader->GetOutput();
}

TEST(RepModeImageFilter, EqualsTheCoresSlidingWindowOnTheZScoredVolume)
{
    Net net;
    auto image = random_image(19, 13, 10, 1); // x, y, z: neither a multiple of the patch
    const int64_t patch[3] = {8, 8, 8};
    for (int task = 0; task < 3; task++) {
        auto f = make_filter(net, net.tasks[(size_t)task].name, image);
        f->Update();
        const std::vector<float> got = pixels(f->GetOutput());
        const std::vector<float> want = core_prediction(net, task, image, patch);
        EXPECT_TRUE(bit_identical(got, want)) << net.tasks[(size_t)task].name;
        EXPECT_EQ(f->GetTaskDescription().kind, net.tasks[(size_t)task].kind);
    }
}

TEST(RepModeImageFilter, KeepsTheInputsGeometry)
{
    Net net;
    auto image = random_image(9, 8, 8, 2);
    auto f = make_filter(net, "signal", image);
    f->Update();
    const FloatImage *out = f->GetOutput();
    EXPECT_EQ(out->GetLargestPossibleRegion(), image->GetLargestPossibleRegion());
    EXPECT_EQ(out->GetSpacing(), image->GetSpacing());
    EXPECT_EQ(out->GetOrigin(), image->GetOrigin());
    EXPECT_EQ(out->GetDirection(), image->GetDirection());
}

// How the filter gets its input: the image in memory (statistics computed, so the whole input is asked for, or
// given), or a MetaImage reader that streams it too, so each piece reads only its halo.
enum class Source { MemoryComputed, MemoryGiven, StreamedReader };

TEST(RepModeImageFilter, StreamedWritesEqualTheWholeRunBitForBit)
{
    register_io();
    Net net;
    auto image = random_image(21, 17, 30, 3);
    auto whole = make_filter(net, "ink", image);
    whole->Update();
    const std::vector<float> want = pixels(whole->GetOutput());
    double mean, sd;
    itk::RepModeInputStatistics<ShortImage>::Compute(image, mean, sd);
    const fs::path input = write_file(image.GetPointer(), "input.mha");
    for (Source source : {Source::MemoryComputed, Source::MemoryGiven, Source::StreamedReader})
        for (unsigned divisions : {1u, 3u, 7u}) {
            auto f = make_filter(net, "ink", image);
            auto source_reader = itk::ImageFileReader<ShortImage>::New();
            if (source != Source::MemoryComputed)
                f->SetInputStatistics(mean, sd);
            if (source == Source::StreamedReader) {
                source_reader->SetFileName(input.string());
                f->SetInput(source_reader->GetOutput());
            }
            const auto written = read_float(write_file(f->GetOutput(), "streamed.mha", divisions));
            EXPECT_TRUE(bit_identical(pixels(written), want))
                << divisions << " divisions, source " << static_cast<int>(source);
            EXPECT_EQ(written->GetDirection(), image->GetDirection());
            if (source == Source::StreamedReader && divisions > 1) {
                EXPECT_LT(source_reader->GetOutput()->GetBufferedRegion().GetNumberOfPixels(),
                          image->GetBufferedRegion().GetNumberOfPixels())
                    << "the input was not streamed";
            }
        }
}

TEST(RepModeImageFilter, ATaskWith2DLabelsGivesOneLayerStreamedByRows)
{
    register_io();
    Net net;
    auto image = random_image(14, 37, 12, 10); // a surface volume: 12 layers of 37 x 14
    auto whole = make_filter(net, "ink2d", image);
    whole->Update();
    const auto region = whole->GetOutput()->GetLargestPossibleRegion();
    EXPECT_EQ(region.GetSize(2), 1u);
    EXPECT_EQ(region.GetIndex(2), image->GetLargestPossibleRegion().GetIndex(2));
    EXPECT_EQ(region.GetSize(1), 37u);
    EXPECT_EQ(whole->GetOutput()->GetSpacing(), image->GetSpacing());
    const std::vector<float> want = pixels(whole->GetOutput());
    double mean, sd;
    itk::RepModeInputStatistics<ShortImage>::Compute(image, mean, sd);
    auto f = make_filter(net, "ink2d", image);
    f->SetInputStatistics(mean, sd);
    // 5 divisions along Y: the map has one layer
    EXPECT_TRUE(bit_identical(pixels(read_float(write_file(f->GetOutput(), "map.mha", 5))), want));
    EXPECT_EQ(image->GetRequestedRegion().GetSize(2), 12u) << "every layer is read";
    EXPECT_LT(image->GetRequestedRegion().GetSize(1), 37u) << "rows are streamed";
}

// The 2D decoder: one layer per task, the core's sliding window (windows along depth too: 10 layers, patch 8) and its
// depth mean, bit for bit, and streamed by rows to the same bytes.
TEST(RepModeImageFilter, The2dDecoderGivesOneLayerEqualToTheCoresSlidingWindow)
{
    register_io();
    Net net(true);
    auto image = random_image(19, 13, 10, 4);
    const int64_t patch[3] = {8, 8, 8};
    for (int task = 0; task < 3; task++) {
        auto f = make_filter(net, net.tasks[(size_t)task].name, image);
        f->Update();
        EXPECT_EQ(f->GetOutput()->GetLargestPossibleRegion().GetSize(2), 1u);
        const std::vector<float> got = pixels(f->GetOutput());
        EXPECT_TRUE(bit_identical(got, core_prediction(net, task, image, patch))) << net.tasks[(size_t)task].name;
        auto streamed = make_filter(net, net.tasks[(size_t)task].name, image);
        EXPECT_TRUE(bit_identical(pixels(read_float(write_file(streamed->GetOutput(), "map2d.mha", 4))), got));
    }
}

TEST(RepModeImageFilter, ASubRegionEqualsTheWholeRunAndReadsOnlyItsHalo)
{
    Net net;
    auto image = random_image(40, 12, 33, 4);
    auto whole = make_filter(net, "signal", image);
    whole->Update();
    double mean, sd;
    itk::RepModeInputStatistics<ShortImage>::Compute(image, mean, sd);
    auto f = make_filter(net, "signal", image);
    f->SetInputStatistics(mean, sd);
    const auto largest = image->GetLargestPossibleRegion();
    FloatImage::RegionType part = largest;
    part.SetIndex(0, largest.GetIndex(0) + 1); // x [1, 4): windows at 0 only
    part.SetSize(0, 3);
    part.SetIndex(2, largest.GetIndex(2) + 17); // z [17, 19): windows at 12 and 16
    part.SetSize(2, 2);
    f->GetOutput()->SetRequestedRegion(part);
    f->GetOutput()->Update();
    for (itk::ImageRegionConstIterator<FloatImage> it(f->GetOutput(), part); !it.IsAtEnd(); ++it) {
        const float a = it.Get(), b = whole->GetOutput()->GetPixel(it.GetIndex());
        ASSERT_EQ(std::memcmp(&a, &b, sizeof a), 0) << it.GetIndex();
    }
    // By hand (patch 8, stride 4): x needs [0, 8), y the whole 12, z [12, 24).
    const auto asked = image->GetRequestedRegion();
    EXPECT_EQ(asked.GetIndex(0), largest.GetIndex(0));
    EXPECT_EQ(asked.GetSize(0), 8u);
    EXPECT_EQ(asked.GetSize(1), 12u);
    EXPECT_EQ(asked.GetIndex(2), largest.GetIndex(2) + 12);
    EXPECT_EQ(asked.GetSize(2), 12u);
}

TEST(RepModeImageFilter, AVolumeSmallerThanThePatchIsPredicted)
{
    Net net;
    auto image = random_image(5, 3, 7, 5);
    const int64_t patch[3] = {8, 8, 8};
    auto f = make_filter(net, "signal", image);
    f->Update();
    const std::vector<float> got = pixels(f->GetOutput());
    ASSERT_EQ(got.size(), 105u);
    for (float v : got)
        ASSERT_TRUE(std::isfinite(v));
    EXPECT_TRUE(bit_identical(got, core_prediction(net, 0, image, patch)));
}

TEST(RepModeInputStatistics, StreamedEqualsTheWholeVolumeAndANaiveTwoPass)
{
    register_io();
    auto image = random_image(11, 9, 23, 6);
    const fs::path file = write_file(image.GetPointer(), "stats.mha");
    const short *p = image->GetBufferPointer();
    const size_t n = image->GetBufferedRegion().GetNumberOfPixels();
    double sum = 0.0, ss = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += p[i];
    const double mean = sum / (double)n;
    for (size_t i = 0; i < n; i++)
        ss += (p[i] - mean) * (p[i] - mean);
    double m, sd;
    itk::RepModeInputStatistics<ShortImage>::Compute(image, m, sd);
    EXPECT_EQ(m, mean);
    EXPECT_EQ(sd, std::sqrt(ss / (double)n));
    for (unsigned divisions : {1u, 4u, 23u}) {
        auto reader = itk::ImageFileReader<ShortImage>::New();
        reader->SetFileName(file.string());
        double ms, sds;
        itk::RepModeInputStatistics<ShortImage>::ComputeStreamed(reader->GetOutput(), divisions, ms, sds);
        EXPECT_EQ(ms, m) << divisions;
        EXPECT_EQ(sds, sd) << divisions;
        if (divisions > 1) {
            EXPECT_LT(reader->GetOutput()->GetBufferedRegion().GetNumberOfPixels(), n) << "not streamed";
        }
    }
}

// An image with many repeated values, negative ones and both zeros: radix buckets hold several ranks.
ShortImage::Pointer coarse_image(unsigned x, unsigned y, unsigned z, unsigned seed)
{
    auto image = random_image(x, y, z, seed);
    for (itk::ImageRegionIterator<ShortImage> it(image, image->GetBufferedRegion()); !it.IsAtEnd(); ++it)
        it.Set(static_cast<short>((it.Get() % 7) - 3));
    return image;
}

TEST(RepModeNormalization, StreamedPercentilesEqualTheCoreInMemoryBitForBit)
{
    register_io();
    rm_ctx *ctx = rm_ctx_create(1);
    for (int kind = 0; kind < 2; kind++) {
        auto image = kind == 0 ? random_image(11, 9, 23, 12) : coarse_image(13, 5, 17, 13);
        const fs::path file = write_file(image.GetPointer(), "percentiles.mha");
        const std::vector<float> voxels = as_floats(image);
        for (const rm_normalization &method : {rm_normalization_percentile(1, 99), rm_normalization_percentile(0, 100),
                                               rm_normalization_percentile(30, 30.5), rm_normalization_zscore()}) {
            rm_norm_params want;
            ASSERT_EQ(rm_normalization_compute(ctx, &method, voxels.data(), (int64_t)voxels.size(), &want), RM_OK);
            auto same = [&](const rm_norm_params &got, const std::string &what) {
                EXPECT_EQ(std::memcmp(&got.offset, &want.offset, sizeof got.offset), 0) << what << got.offset;
                EXPECT_EQ(std::memcmp(&got.scale, &want.scale, sizeof got.scale), 0) << what << got.scale;
                EXPECT_EQ(got.clip, want.clip) << what;
            };
            const std::string name = "image " + std::to_string(kind) + " method " + std::to_string(method.method) +
                                     " p" + std::to_string(method.low) + "-p" + std::to_string(method.high);
            same(itk::RepModeNormalization<ShortImage>::Compute(image, method), name + " in memory: ");
            for (unsigned divisions : {1u, 4u, 23u}) {
                auto reader = itk::ImageFileReader<ShortImage>::New();
                reader->SetFileName(file.string());
                same(itk::RepModeNormalization<ShortImage>::ComputeStreamed(reader->GetOutput(), divisions, method),
                     name + ", " + std::to_string(divisions) + " divisions: ");
                if (divisions > 1) {
                    EXPECT_LT(reader->GetOutput()->GetBufferedRegion().GetNumberOfPixels(), voxels.size());
                }
            }
        }
    }
    rm_ctx_free(ctx);
}

TEST(RepModeNormalization, NonFiniteVoxelsAreRefusedByPercentiles)
{
    auto image = FloatImage::New();
    image->SetRegions(FloatImage::SizeType{{4, 3, 2}});
    image->Allocate();
    image->FillBuffer(1.0f);
    image->SetPixel({{1, 2, 1}}, std::nanf(""));
    EXPECT_THROW(itk::RepModeNormalization<FloatImage>::Compute(image, rm_normalization_percentile(1, 99)),
                 itk::ExceptionObject);
}

TEST(RepModeImageFilter, APercentileModelEqualsTheCoreOnThePercentileNormalizedVolume)
{
    register_io();
    Net net;
    const rm_normalization method = rm_normalization_percentile(2, 97);
    ASSERT_EQ(rm_model_set_normalization(net.ctx, net.model, &method), RM_OK);
    auto image = random_image(19, 13, 30, 14); // deep enough in z for pieces of 3 to read less than the whole
    const std::vector<float> voxels = as_floats(image);
    rm_norm_params params;
    ASSERT_EQ(rm_normalization_compute(net.ctx, &method, voxels.data(), (int64_t)voxels.size(), &params), RM_OK);
    ASSERT_EQ(params.clip, 1);
    const int64_t patch[3] = {8, 8, 8};
    for (int task = 0; task < 2; task++) { // computed by the filter over the whole input
        auto f = make_filter(net, net.tasks[(size_t)task].name, image);
        f->Update();
        EXPECT_EQ(f->GetNormalization().method, RM_NORM_PERCENTILE);
        EXPECT_EQ(f->GetNormalization().low, 2.0);
        EXPECT_TRUE(bit_identical(pixels(f->GetOutput()), core_prediction(net, task, image, patch, &params)))
            << net.tasks[(size_t)task].name;
    }
    // Streamed: the parameters from a streamed reader, then the prediction written in pieces.
    auto reader = itk::ImageFileReader<ShortImage>::New();
    reader->SetFileName(write_file(image.GetPointer(), "percentile_input.mha").string());
    auto f = make_filter(net, "signal", image);
    f->SetInput(reader->GetOutput());
    f->SetInputNormalization(itk::RepModeNormalization<ShortImage>::ComputeStreamed(reader->GetOutput(), 3, method));
    EXPECT_TRUE(bit_identical(pixels(read_float(write_file(f->GetOutput(), "percentile_streamed.mha", 3))),
                              core_prediction(net, 0, image, patch, &params)));
    EXPECT_LT(reader->GetOutput()->GetBufferedRegion().GetNumberOfPixels(), voxels.size()) << "not streamed";

    // z-score statistics for a percentile model are refused, naming both methods.
    auto g = make_filter(net, "signal", image);
    g->SetInputStatistics(1000.0, 100.0);
    try {
        g->Update();
        ADD_FAILURE() << "z-score statistics accepted for a percentile model";
    } catch (const itk::ExceptionObject &e) {
        const std::string what = e.GetDescription();
        EXPECT_NE(what.find("percentile"), std::string::npos) << what;
        EXPECT_NE(what.find("z-score"), std::string::npos) << what;
    }
}

TEST(RepModeImageFilter, ProgressReachesOneAndAbortStopsEarly)
{
    Net net;
    auto image = random_image(24, 24, 24, 7); // 5³ windows
    std::vector<float> seen;
    auto f = make_filter(net, "signal", image);
    auto observer = itk::CStyleCommand::New();
    struct Watch {
        Filter *filter;
        std::vector<float> *seen;
        float abort_at;
    } watch{f.GetPointer(), &seen, 2.0f};
    observer->SetClientData(&watch);
    observer->SetCallback([](itk::Object *, const itk::EventObject &, void *data) {
        auto *w = static_cast<Watch *>(data);
        w->seen->push_back(w->filter->GetProgress());
        if (w->filter->GetProgress() >= w->abort_at)
            w->filter->AbortGenerateDataOn();
    });
    f->AddObserver(itk::ProgressEvent(), observer);
    f->Update();
    ASSERT_FALSE(seen.empty());
    EXPECT_FLOAT_EQ(seen.back(), 1.0f);
    for (size_t i = 1; i < seen.size(); i++)
        EXPECT_GE(seen[i], seen[i - 1]);

    seen.clear();
    auto g = make_filter(net, "signal", image);
    watch = {g.GetPointer(), &seen, 0.2f};
    g->AddObserver(itk::ProgressEvent(), observer);
    EXPECT_THROW(g->Update(), itk::ProcessAborted);
    ASSERT_FALSE(seen.empty());
    EXPECT_LT(seen.back(), 0.3f) << "work went on after the abort";
}

TEST(RepModeImageFilter, BadParametersAreRefusedByName)
{
    Net net;
    auto image = random_image(8, 8, 8, 8);
    auto expect_refused = [&](Filter *f, const std::string &words) {
        try {
            f->Update();
            ADD_FAILURE() << "accepted; expected: " << words;
        } catch (const itk::ExceptionObject &e) {
            EXPECT_NE(std::string(e.GetDescription()).find(words), std::string::npos) << e.GetDescription();
        }
    };
    auto none = Filter::New();
    none->SetInput(image);
    none->SetTask("signal");
    expect_refused(none, "neither");
    auto f = make_filter(net, "nuclei", image);
    expect_refused(f, "no task 'nuclei'");
    f = make_filter(net, "signal", image);
    f->SetOverlap(1.0);
    expect_refused(f, "overlap");
    f = make_filter(net, "signal", image);
    f->SetPatchSize({{6, 8, 8}});
    expect_refused(f, "multiple of 4");
    f = make_filter(net, "signal", image);
    f->SetModel(nullptr);
    f->SetModelFileName("/nonexistent/model.safetensors");
    expect_refused(f, "/nonexistent/model.safetensors");
    f = make_filter(net, "signal", image);
    f->SetInputStatistics(0.0, -1.0);
    expect_refused(f, "standard deviation");
    f = make_filter(net, "signal", image);
    f->SetInputNormalization({0.0, -2.0, 1});
    expect_refused(f, "scale");
    f = make_filter(net, "signal", image);
    f->SetInputNormalization({0.1, 2.0, 1}); // percentile parameters for a z-score model
    expect_refused(f, "z-score");
    f = make_filter(net, "signal", image);
    f->SetMonteCarloDropout(1.0);
    expect_refused(f, "Monte Carlo dropout 1 is outside [0, 1)");
    f = make_filter(net, "signal", image);
    f->SetGateNoise(-0.5);
    expect_refused(f, "gate noise -0.5");
}

TEST(RepModeImageFilter, MonteCarloPassesGiveAMeanAndAnUncertaintyThatStreamBitForBit)
{
    register_io();
    Net net;
    auto image = random_image(19, 13, 10, 12);
    auto plain = make_filter(net, "ink", image);
    plain->Update();
    const std::vector<float> none = pixels(plain->GetUncertaintyOutput());
    EXPECT_EQ(*std::max_element(none.begin(), none.end()), 0.0f); // one plain pass: no spread
    // One pass without dropout or noise is the plain prediction (probabilities of a binary task).
    auto one = make_filter(net, "ink", image);
    one->SetMonteCarloSamples(1);
    one->SetMonteCarloDropout(0.0);
    one->SetGateNoise(0.0);
    one->Update();
    EXPECT_TRUE(bit_identical(pixels(one->GetOutput()), pixels(plain->GetOutput())));
    // Several noisy passes: the whole run, then streamed pieces of each output, and the core's own passes.
    auto whole = make_filter(net, "ink", image);
    whole->SetMonteCarloSamples(3);
    whole->SetMonteCarloSeed(5);
    whole->SetMonteCarloDropout(0.2);
    whole->SetGateNoise(0.3);
    whole->Update();
    const std::vector<float> mean = pixels(whole->GetOutput()), spread = pixels(whole->GetUncertaintyOutput());
    EXPECT_GT(*std::max_element(spread.begin(), spread.end()), 0.0f);
    EXPECT_FALSE(bit_identical(mean, pixels(plain->GetOutput())));
    for (unsigned divisions : {3u, 7u}) {
        auto f = make_filter(net, "ink", image);
        f->SetMonteCarloSamples(3);
        f->SetMonteCarloSeed(5);
        f->SetMonteCarloDropout(0.2);
        f->SetGateNoise(0.3);
        EXPECT_TRUE(bit_identical(pixels(read_float(write_file(f->GetOutput(), "mc_mean.mha", divisions))), mean))
            << divisions;
        EXPECT_TRUE(
            bit_identical(pixels(read_float(write_file(f->GetUncertaintyOutput(), "mc_sd.mha", divisions))), spread))
            << divisions;
    }
    // A task with 2D labels: one layer of each.
    auto map = make_filter(net, "ink2d", image);
    map->SetMonteCarloSamples(2);
    map->Update();
    EXPECT_EQ(map->GetUncertaintyOutput()->GetLargestPossibleRegion().GetSize(2), 1u);
    EXPECT_EQ(map->GetUncertaintyOutput()->GetBufferedRegion().GetNumberOfPixels(), 19u * 13u);
    const std::vector<float> map_sd = pixels(map->GetUncertaintyOutput());
    EXPECT_GT(*std::max_element(map_sd.begin(), map_sd.end()), 0.0f);
}

// Where the in-plane transform t (0..7: k = t % 4 quarter turns, then a flip in x when t >= 4) moves the voxel (y, x)
// of an n×n plane. The 8 are the dihedral group, whichever order the filter takes them in.
std::pair<unsigned, unsigned> moved(int t, unsigned n, unsigned y, unsigned x)
{
    for (int k = 0; k < t % 4; k++)
        std::tie(y, x) = std::make_pair(x, n - 1 - y);
    return {y, t >= 4 ? n - 1 - x : x};
}

// Test-time augmentation over one window (an 8³ image, the patch): the mean of the plain filter over the 8 images
// transformed here, each prediction turned back; over a larger image, streamed pieces equal the whole run.
TEST(RepModeImageFilter, TestTimeAugmentationIsTheMeanOfEightTransformedRunsAndStreams)
{
    register_io();
    Net net;
    const unsigned n = 8;
    auto image = random_image(n, n, n, 13);
    double mean, sd;
    itk::RepModeInputStatistics<ShortImage>::Compute(image, mean, sd);
    std::vector<double> want(n * n * n, 0.0);
    for (int t = 0; t < 8; t++) {
        auto turned = random_image(n, n, n, 13); // the same geometry; its voxels replaced below
        const short *in = image->GetBufferPointer();
        short *to = turned->GetBufferPointer();
        for (unsigned z = 0; z < n; z++)
            for (unsigned y = 0; y < n; y++)
                for (unsigned x = 0; x < n; x++) {
                    const auto [ty, tx] = moved(t, n, y, x);
                    to[(z * n + ty) * n + tx] = in[(z * n + y) * n + x];
                }
        auto f = make_filter(net, "signal", turned);
        f->SetInputStatistics(mean, sd); // the transformed image's own would differ in the last bits
        f->Update();
        const float *p = f->GetOutput()->GetBufferPointer();
        for (unsigned z = 0; z < n; z++)
            for (unsigned y = 0; y < n; y++)
                for (unsigned x = 0; x < n; x++) {
                    const auto [ty, tx] = moved(t, n, y, x);
                    want[(z * n + y) * n + x] += p[(z * n + ty) * n + tx] / 8.0;
                }
    }
    auto tta = make_filter(net, "signal", image);
    tta->SetTestTimeAugmentation(true);
    tta->Update();
    const std::vector<float> got = pixels(tta->GetOutput());
    double scale = 0.0, worst = 0.0;
    for (size_t i = 0; i < got.size(); i++) {
        scale = std::max(scale, std::fabs(want[i]));
        worst = std::max(worst, std::fabs(got[i] - want[i]));
    }
    EXPECT_LT(worst, 1e-5 * scale) << "largest difference " << worst << " of " << scale;
    auto plain = make_filter(net, "signal", image);
    plain->Update();
    EXPECT_FALSE(bit_identical(pixels(plain->GetOutput()), got)) << "the augmentation changed nothing";

    auto large = random_image(19, 16, 21, 14);
    auto whole = make_filter(net, "signal", large);
    whole->SetTestTimeAugmentation(true);
    whole->Update();
    for (unsigned divisions : {3u, 7u}) {
        auto f = make_filter(net, "signal", large);
        f->SetTestTimeAugmentation(true);
        EXPECT_TRUE(bit_identical(pixels(read_float(write_file(f->GetOutput(), "tta.mha", divisions))),
                                  pixels(whole->GetOutput())))
            << divisions << " divisions";
    }
}

TEST(RepModeImageFilter, PrintSelfNamesEveryParameter)
{
    Net net;
    auto f = make_filter(net, "signal", random_image(8, 8, 8, 9));
    std::ostringstream os;
    f->Print(os);
    for (const char *name : {"ModelFileName", "Model:", "Task:", "PatchSize", "Overlap", "Blending",
                             "TestTimeAugmentation", "NumberOfThreads", "OutputLogits", "WindowCacheBytes", "InputMean",
                             "InputStandardDeviation", "InputNormalization", "MonteCarloSamples",
                             "MonteCarloSeed", "MonteCarloDropout", "GateNoise", "TrainingForm",
                             "Normalization: {\"method\":\"zscore\"}"})
        EXPECT_NE(os.str().find(name), std::string::npos) << name;
}

TEST(RepModeImageFilter, RealCTStreamedThroughTheFilter)
{
    register_io();
    const fs::path ct = fs::path(REPMODE_DATA_DIR) / "ct_headsq" / "headsq_64x64x93_int16.nrrd";
    ASSERT_TRUE(fs::exists(ct)) << ct << " is missing (real data kept in the repository)";
    Net net;
    auto reader = itk::ImageFileReader<ShortImage>::New();
    reader->SetFileName(ct.string());
    double mean, sd;
    itk::RepModeInputStatistics<ShortImage>::ComputeStreamed(reader->GetOutput(), 4, mean, sd);
    auto f = Filter::New();
    f->SetInput(reader->GetOutput());
    f->SetModel(net.model);
    f->SetTask("ink");
    f->SetPatchSize({{16, 16, 16}});
    f->SetInputStatistics(mean, sd);
    const auto out = read_float(write_file(f->GetOutput(), "ct.mha", 5));
    auto in = itk::ImageFileReader<ShortImage>::New();
    in->SetFileName(ct.string());
    in->Update();
    const FloatImage *o = out.GetPointer();
    const ShortImage *i = in->GetOutput();
    EXPECT_EQ(o->GetLargestPossibleRegion().GetSize(), i->GetLargestPossibleRegion().GetSize());
    EXPECT_EQ(o->GetLargestPossibleRegion().GetSize()[2], 93u);
    for (unsigned a = 0; a < 3; a++) {
        EXPECT_NEAR(o->GetSpacing()[a], i->GetSpacing()[a], 1e-6);
        EXPECT_NEAR(o->GetOrigin()[a], i->GetOrigin()[a], 1e-6);
    }
    EXPECT_EQ(o->GetDirection(), i->GetDirection());
    for (float v : pixels(o))
        ASSERT_TRUE(std::isfinite(v) && v >= 0.0f && v <= 1.0f) << v;
}

} // namespace
