// itk::RepModeLabelMapFilter at the end of a pipeline: two tasks predicted by itk::RepModeImageFilter, thresholded
// into one label map, against the labels this test computes itself from PyTorch's outputs for the same network
// (the fixture): label i + 1 where task i is above its threshold and further above it than the other task.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <vector>

#include "itkRepModeImageFilter.h"
#include "itkRepModeLabelMapFilter.h"
#include "itkTestingMacros.h"
#include "repmodeTestFixture.h"

int
itkRepModeLabelMapFilterTest(int argc, char * argv[])
{
  if (argc != 3)
  {
    std::cerr << "usage: " << itkNameOfTestExecutableMacro(argv) << " model.safetensors io.safetensors" << std::endl;
    return EXIT_FAILURE;
  }
  using namespace repmode_test;
  using PredictType = itk::RepModeImageFilter<ImageType>;
  using LabelImageType = itk::Image<unsigned char, 3>;
  using LabelMapType = itk::RepModeLabelMapFilter<ImageType, LabelImageType>;

  auto labelMap = LabelMapType::New();
  ITK_EXERCISE_BASIC_OBJECT_METHODS(labelMap, RepModeLabelMapFilter, ImageToImageFilter);

  const Tensor input = ReadTensor(argv[2], "input");
  const Tensor dna = ReadTensor(argv[2], "eval.task0.output");  // regression: the normalized intensity
  const Tensor ink = ReadTensor(argv[2], "eval.task2.output");  // binary: the logit
  const size_t voxels = static_cast<size_t>(input.shape[2] * input.shape[3] * input.shape[4]);

  int failures = 0;
  for (int64_t n = 0; n < input.shape[0]; ++n)
  {
    const float * refDna = dna.data.data() + n * static_cast<int64_t>(voxels);
    const float * refInk = ink.data.data() + n * static_cast<int64_t>(voxels);
    // Each task's threshold is the median of its reference (the probability for ink), so that about half the
    // voxels pass each and every label occurs.
    std::vector<float> sorted(refDna, refDna + voxels);
    std::nth_element(sorted.begin(), sorted.begin() + voxels / 2, sorted.end());
    const double dnaThreshold = sorted[voxels / 2];
    std::transform(refInk, refInk + voxels, sorted.begin(), [](float x) { return 1.0f / (1.0f + std::exp(-x)); });
    std::nth_element(sorted.begin(), sorted.begin() + voxels / 2, sorted.end());
    const double inkThreshold = sorted[voxels / 2];

    labelMap = LabelMapType::New();
    LabelMapType::TaskList           tasks;
    std::vector<PredictType::Pointer> predictions; // a pipeline holds its filters through their outputs weakly
    const char *                     names[] = { "dna", "ink" };
    for (unsigned i = 0; i < 2; ++i)
    {
      auto predict = PredictType::New();
      predictions.push_back(predict);
      predict->SetInput(SampleImage(input, n));
      predict->SetModelFileName(argv[1]);
      predict->SetTask(names[i]);
      predict->SetInputNormalization(rm_norm_params{ 0.0, 1.0, 0 }); // the fixture's input is the network's
      predict->SetNumberOfThreads(2);
      ITK_TRY_EXPECT_NO_EXCEPTION(predict->UpdateOutputInformation());
      tasks.push_back(predict->GetTaskDescription());
      labelMap->SetPrediction(i, predict->GetOutput());
    }
    labelMap->SetTasks(tasks);
    labelMap->SetThresholds({ dnaThreshold, inkThreshold });
    ITK_TRY_EXPECT_NO_EXCEPTION(labelMap->Update());

    // Margins within ten times the fixture's tolerance (1e-4 of the largest output) of a threshold or of a tie
    // could go either way: those voxels are left out. The sigmoid's slope is at most 1/4.
    double dnaScale = 0.0, inkScale = 0.0;
    for (size_t v = 0; v < voxels; ++v)
    {
      dnaScale = std::max(dnaScale, std::fabs(double(refDna[v])));
      inkScale = std::max(inkScale, std::fabs(double(refInk[v])));
    }
    const double near = 1e-3 * std::max(dnaScale, inkScale / 4);

    const unsigned char * labels = labelMap->GetOutput()->GetBufferPointer();
    size_t                checked = 0, wrong = 0, counts[3] = { 0, 0, 0 };
    for (size_t v = 0; v < voxels; ++v)
    {
      const double margin[2] = { refDna[v] - dnaThreshold, 1.0 / (1.0 + std::exp(-double(refInk[v]))) - inkThreshold };
      if (std::fabs(margin[0]) < near || std::fabs(margin[1]) < near ||
          (margin[0] > 0 && margin[1] > 0 && std::fabs(margin[0] - margin[1]) < near))
      {
        continue;
      }
      unsigned char expected = 0;
      double        best = 0.0;
      for (unsigned i = 0; i < 2; ++i)
      {
        if (margin[i] > best)
        {
          best = margin[i];
          expected = static_cast<unsigned char>(i + 1);
        }
      }
      ++checked;
      ++counts[expected];
      wrong += labels[v] != expected;
    }
    std::cout << "sample " << n << ": " << checked << " of " << voxels << " voxels checked, " << wrong
              << " wrong; labels 0/1/2: " << counts[0] << '/' << counts[1] << '/' << counts[2] << std::endl;
    // Every label occurs, and almost no voxel is left out: the comparison says something.
    if (wrong != 0 || checked < voxels * 95 / 100 || counts[0] == 0 || counts[1] == 0 || counts[2] == 0)
    {
      std::cerr << "sample " << n << ": the label map differs from the reference's" << std::endl;
      ++failures;
    }
  }
  return failures == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
