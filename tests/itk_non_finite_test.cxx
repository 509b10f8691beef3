// itk::RepModeNonFiniteImageFilter: each policy against a direct loop over the voxels, the census streamed from a
// pipeline equal to the filter's own count, the refusal naming the first voxel; and itk::RepModeImageFilter refusing
// a non-finite input voxel by its index instead of spreading it through the prediction.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <itkImage.h>
#include <itkImageRegionConstIterator.h>

#include "itkRepModeImageFilter.h"
#include "itkRepModeNonFiniteImageFilter.h"

namespace {

using FloatImage = itk::Image<float, 3>;
using NonFinite = itk::RepModeNonFiniteImageFilter<FloatImage>;

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

// (x, y, z) = (6, 5, 4) voxels of varied values, NaN at (1, 4, 2), +inf at (5, 0, 3), -inf at (0, 0, 0).
FloatImage::Pointer image_with_non_finite()
{
    auto image = FloatImage::New();
    image->SetRegions(FloatImage::SizeType{{6, 5, 4}});
    image->Allocate();
    float *p = image->GetBufferPointer();
    for (size_t i = 0; i < 120; i++)
        p[i] = 0.25f * static_cast<float>(i % 11) - 1.0f;
    image->SetPixel({{1, 4, 2}}, kNaN);
    image->SetPixel({{5, 0, 3}}, kInf);
    image->SetPixel({{0, 0, 0}}, -kInf);
    return image;
}

std::vector<float> replaced_by_hand(const FloatImage *image, float value)
{
    std::vector<float> out;
    for (itk::ImageRegionConstIterator<FloatImage> it(image, image->GetBufferedRegion()); !it.IsAtEnd(); ++it)
        out.push_back(std::isfinite(it.Get()) ? it.Get() : value);
    return out;
}

std::vector<float> pixels(const FloatImage *image)
{
    const float *p = image->GetBufferPointer();
    return std::vector<float>(p, p + image->GetBufferedRegion().GetNumberOfPixels());
}

TEST(RepModeNonFinite, ZeroAndMeanEqualADirectLoopAndTheGivenCensusEqualsTheFiltersOwn)
{
    auto image = image_with_non_finite();
    double sum = 0.0; // the finite voxels in buffer order, in double
    for (float v : pixels(image))
        if (std::isfinite(v))
            sum += v;
    const float mean = static_cast<float>(sum / 117.0);
    for (rm_nonfinite_policy policy : {RM_NONFINITE_ZERO, RM_NONFINITE_MEAN}) {
        const float fill = policy == RM_NONFINITE_ZERO ? 0.0f : mean;
        auto own = NonFinite::New();
        own->SetInput(image);
        own->SetPolicy(policy);
        own->Update();
        EXPECT_EQ(own->GetCensus().nonfinite, 3);
        EXPECT_EQ(own->GetValue(), fill);
        EXPECT_EQ(pixels(own->GetOutput()), replaced_by_hand(image, fill));

        auto given = NonFinite::New();
        given->SetInput(image);
        given->SetPolicy(policy);
        given->SetCensus(NonFinite::CensusStreamed(image, 3));
        given->Update();
        EXPECT_EQ(given->GetCensus().first, 0);
        EXPECT_EQ(given->GetCensus().finite_sum, sum);
        EXPECT_EQ(pixels(given->GetOutput()), replaced_by_hand(image, fill));
    }
}

TEST(RepModeNonFinite, TheDefaultRefusesNamingTheCountAndTheFirstVoxel)
{
    auto image = image_with_non_finite();
    image->SetPixel({{0, 0, 0}}, 1.0f); // the first is now the NaN at (1, 4, 2)
    auto f = NonFinite::New();
    f->SetInput(image);
    try {
        f->Update();
        FAIL() << "a non-finite voxel was accepted";
    } catch (const itk::ExceptionObject &e) {
        const std::string what = e.GetDescription();
        EXPECT_NE(what.find("2 of 120 voxels are not finite"), std::string::npos) << what;
        EXPECT_NE(what.find("(x, y, z) = (1, 4, 2)"), std::string::npos) << what;
    }
}

TEST(RepModeNonFinite, ThePredictionFilterRefusesANonFiniteVoxelByItsIndex)
{
    rm_task tasks[1] = {rm_task_make("signal", RM_TASK_REGRESSION)};
    rm_config cfg = rm_config_lite(tasks, 1);
    cfg.base_channels = 2;
    cfg.levels = 1;
    for (int64_t &p : cfg.patch)
        p = 4;
    rm_ctx *ctx = rm_ctx_create(1);
    rm_model *model = nullptr;
    ASSERT_EQ(rm_model_create(ctx, &cfg, 5, &model), RM_OK) << rm_ctx_error(ctx);
    auto image = image_with_non_finite();
    auto f = itk::RepModeImageFilter<FloatImage, FloatImage>::New();
    f->SetModel(model);
    f->SetTask("signal");
    f->SetInputStatistics(0.0, 1.0); // given, so that the statistics do not meet the NaN first
    f->SetInput(image);
    try {
        f->Update();
        ADD_FAILURE() << "a non-finite voxel was read into the network";
    } catch (const itk::ExceptionObject &e) {
        const std::string what = e.GetDescription();
        EXPECT_NE(what.find("is not finite (NaN or infinite)"), std::string::npos) << what;
        EXPECT_NE(what.find("RepModeNonFiniteImageFilter"), std::string::npos) << what;
    }
    // Behind the replacing filter, the same image predicts, finite everywhere.
    auto fix = NonFinite::New();
    fix->SetInput(image);
    fix->SetPolicy(RM_NONFINITE_ZERO);
    f->SetInput(fix->GetOutput());
    f->Update();
    for (float v : pixels(f->GetOutput()))
        ASSERT_TRUE(std::isfinite(v));
    rm_model_free(model);
    rm_ctx_free(ctx);
}

} // namespace
