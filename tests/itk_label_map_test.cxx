// itk::RepModeLabelMapFilter: labels against a per-voxel reference (thresholds given, from the model, 0.5 for
// binary tasks; overlaps to the task furthest above its threshold), Otsu's threshold for regression tasks against
// a naive search over the same histogram, streamed output equal to the whole, and the colour table.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <itkImage.h>
#include <itkImageFileReader.h>
#include <itkImageFileWriter.h>
#include <itkImageRegionIterator.h>
#include <itkMetaImageIOFactory.h>

#include "itkRepModeLabelMapFilter.h"

namespace {

namespace fs = std::filesystem;

using FloatImage = itk::Image<float, 3>;
using LabelImage = itk::Image<unsigned char, 3>;
using LabelFilter = itk::RepModeLabelMapFilter<FloatImage, LabelImage>;

FloatImage::Pointer image_of(const std::vector<float> &values, unsigned x, unsigned y, unsigned z)
{
    auto image = FloatImage::New();
    FloatImage::RegionType region;
    region.SetSize({{x, y, z}});
    image->SetRegions(region);
    image->Allocate();
    std::copy(values.begin(), values.end(), image->GetBufferPointer());
    return image;
}

std::vector<float> random_values(size_t n, uint32_t seed, float lo, float hi)
{
    std::vector<float> v(n);
    uint32_t s = seed * 2654435761u + 7u;
    for (float &x : v) {
        s = s * 1664525u + 1013904223u;
        x = lo + (hi - lo) * static_cast<float>(s >> 8) / 16777216.0f;
    }
    return v;
}

rm_task task(const char *name, rm_task_kind kind, float threshold = NAN)
{
    rm_task t = rm_task_make(name, kind);
    t.threshold = threshold;
    return t;
}

std::vector<unsigned char> labels(const LabelImage *image)
{
    const unsigned char *p = image->GetBufferPointer();
    return std::vector<unsigned char>(p, p + image->GetBufferedRegion().GetNumberOfPixels());
}

TEST(RepModeLabelMap, EachVoxelGoesToTheTaskFurthestAboveItsThreshold)
{
    const unsigned x = 7, y = 6, z = 5;
    const size_t n = x * y * z;
    const std::vector<std::vector<float>> pred = {random_values(n, 1, 0.0f, 1.0f), random_values(n, 2, 0.0f, 1.0f),
                                                  random_values(n, 3, -2.0f, 2.0f)};
    // ink: its model threshold 0.3; mask: the binary default 0.5; signal: given 0.8.
    auto f = LabelFilter::New();
    f->SetTasks({task("ink", RM_TASK_BINARY, 0.3f), task("mask", RM_TASK_BINARY),
                 task("signal", RM_TASK_REGRESSION, 5.0f)});
    f->SetThresholds({NAN, NAN, 0.8});
    std::vector<FloatImage::Pointer> images;
    for (unsigned i = 0; i < 3; i++) {
        images.push_back(image_of(pred[i], x, y, z));
        f->SetPrediction(i, images.back());
    }
    f->Update();
    const double t[3] = {0.3f, 0.5, 0.8};
    std::vector<unsigned char> want(n, 0);
    for (size_t v = 0; v < n; v++) {
        double best = 0.0;
        for (unsigned i = 0; i < 3; i++)
            if (pred[i][v] - t[i] > best) {
                best = pred[i][v] - t[i];
                want[v] = static_cast<unsigned char>(i + 1);
            }
    }
    EXPECT_EQ(labels(f->GetOutput()), want);
    ASSERT_EQ(f->GetThresholdsUsed().size(), 3u);
    for (unsigned i = 0; i < 3; i++)
        EXPECT_EQ(f->GetThresholdsUsed()[i], t[i]) << i;
    size_t seen[4] = {0, 0, 0, 0};
    for (unsigned char l : want)
        seen[l]++;
    for (size_t count : seen)
        EXPECT_GT(count, 0u) << "the reference case should use every label";
}

// Otsu's threshold by brute force: the bin edge that maximizes the between-class variance of a 256-bin histogram.
double naive_otsu(const std::vector<float> &v)
{
    const float lo = *std::min_element(v.begin(), v.end()), hi = *std::max_element(v.begin(), v.end());
    std::vector<double> bins(256, 0.0);
    for (float x : v)
        bins[std::min<size_t>(255, static_cast<size_t>((x - lo) / (hi - lo) * 256.0))] += 1.0;
    double best = -1.0, at = lo;
    for (size_t k = 1; k < 256; k++) {
        double w0 = 0, w1 = 0, m0 = 0, m1 = 0;
        for (size_t b = 0; b < 256; b++) {
            const double c = lo + (b + 0.5) * (hi - lo) / 256.0;
            (b < k ? w0 : w1) += bins[b];
            (b < k ? m0 : m1) += bins[b] * c;
        }
        if (w0 == 0 || w1 == 0)
            continue;
        const double between = w0 * w1 * (m0 / w0 - m1 / w1) * (m0 / w0 - m1 / w1);
        if (between > best) {
            best = between;
            at = lo + k * (hi - lo) / 256.0;
        }
    }
    return at;
}

TEST(RepModeLabelMap, RegressionTasksWithoutAThresholdTakeOtsus)
{
    const unsigned x = 20, y = 20, z = 10;
    std::vector<float> v = random_values(x * y * z, 4, 0.0f, 1.0f);
    for (size_t i = 0; i < v.size(); i++)
        v[i] = (i % 3 == 0 ? 3.0f : 0.0f) + v[i]; // two modes: [0, 1) and [3, 4)
    auto image = image_of(v, x, y, z);
    auto f = LabelFilter::New();
    f->SetTasks({task("nuclei", RM_TASK_REGRESSION)});
    f->SetPrediction(0, image);
    f->Update();
    const double t = f->GetThresholdsUsed()[0], bin = (4.0 - 0.0) / 256.0;
    EXPECT_GT(t, 1.0);
    EXPECT_LT(t, 3.0);
    v = random_values(x * y * z, 5, 0.0f, 1.0f);
    for (size_t i = 0; i < v.size(); i++)
        v[i] = v[i] * v[i] * 2.0f; // skewed: Otsu's threshold is somewhere inside, not between modes
    auto skewed = image_of(v, x, y, z);
    f->SetPrediction(0, skewed);
    f->Update();
    EXPECT_NEAR(f->GetThresholdsUsed()[0], naive_otsu(v), 2.0 * bin);
}

TEST(RepModeLabelMap, StreamedEqualsWhole)
{
    itk::MetaImageIOFactory::RegisterOneFactory();
    const unsigned x = 9, y = 8, z = 13;
    auto a = image_of(random_values(x * y * z, 6, 0, 1), x, y, z);
    auto b = image_of(random_values(x * y * z, 7, 0, 1), x, y, z);
    auto make = [&] {
        auto f = LabelFilter::New();
        f->SetTasks({task("a", RM_TASK_BINARY), task("b", RM_TASK_BINARY)});
        f->SetPrediction(0, a);
        f->SetPrediction(1, b);
        return f;
    };
    auto whole = make();
    whole->Update();
    const fs::path file = fs::temp_directory_path() / ("repmode_labels_" + std::to_string(getpid()) + ".mha");
    auto f = make();
    auto writer = itk::ImageFileWriter<LabelImage>::New();
    writer->SetInput(f->GetOutput());
    writer->SetFileName(file.string());
    writer->SetNumberOfStreamDivisions(4);
    writer->Update();
    auto reader = itk::ImageFileReader<LabelImage>::New();
    reader->SetFileName(file.string());
    reader->Update();
    EXPECT_EQ(labels(reader->GetOutput()), labels(whole->GetOutput()));
    fs::remove(file);
}

TEST(RepModeLabelMap, ColorTableNamesEveryLabelInSlicersFormat)
{
    auto f = LabelFilter::New();
    rm_task ink = task("ink", RM_TASK_BINARY);
    ink.has_color = 1;
    ink.color[0] = 1.0f;
    ink.color[1] = 0.5f;
    ink.color[2] = 0.0f;
    f->SetTasks({ink, task("nuclei", RM_TASK_REGRESSION)});
    const fs::path dir = fs::temp_directory_path() / ("repmode_ctbl_" + std::to_string(getpid()));
    fs::create_directories(dir);
    const fs::path file = dir / "labels.ctbl";
    f->WriteColorTable(file.string());
    std::ifstream in(file);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);)
        if (!line.empty() && line[0] != '#')
            lines.push_back(line);
    ASSERT_EQ(lines.size(), 3u);
    EXPECT_EQ(lines[0], "0 background 0 0 0 0");
    EXPECT_EQ(lines[1], "1 ink 255 128 0 255");
    std::istringstream nuclei(lines[2]);
    int index, r, g, b, alpha;
    std::string name;
    nuclei >> index >> name >> r >> g >> b >> alpha;
    EXPECT_EQ(index, 2);
    EXPECT_EQ(name, "nuclei");
    EXPECT_EQ(alpha, 255);
    EXPECT_FALSE(fs::exists(file.string() + ".tmp"));
    EXPECT_THROW(f->WriteColorTable((dir / "missing" / "labels.ctbl").string()), itk::ExceptionObject);
    EXPECT_FALSE(fs::exists(dir / "missing"));
    fs::remove_all(dir);
}

TEST(RepModeLabelMap, TasksMustMatchThePredictions)
{
    auto f = LabelFilter::New();
    f->SetTasks({task("a", RM_TASK_BINARY), task("b", RM_TASK_BINARY)});
    f->SetPrediction(0, image_of(random_values(8, 8, 0, 1), 2, 2, 2));
    EXPECT_THROW(f->Update(), itk::ExceptionObject);
}

} // namespace
