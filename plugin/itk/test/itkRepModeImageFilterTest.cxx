// itk::RepModeImageFilter against PyTorch: on a volume of the model's patch size (one window, so the blending
// weights cancel) and with the identity normalization, the filter's output is the network's, which the fixture
// holds as PyTorch computed it in float64.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <string>

#include "itkRepModeImageFilter.h"
#include "itkTestingMacros.h"
#include "repmodeTestFixture.h"

int
itkRepModeImageFilterTest(int argc, char * argv[])
{
  if (argc != 3)
  {
    std::cerr << "usage: " << itkNameOfTestExecutableMacro(argv) << " model.safetensors io.safetensors" << std::endl;
    return EXIT_FAILURE;
  }
  using namespace repmode_test;
  using FilterType = itk::RepModeImageFilter<ImageType>;

  auto filter = FilterType::New();
  ITK_EXERCISE_BASIC_OBJECT_METHODS(filter, RepModeImageFilter, ImageToImageFilter);

  const Tensor input = ReadTensor(argv[2], "input");
  // The fixture's tasks with stored outputs: 0 (dna, regression) and 2 (ink, binary: logits, before the sigmoid).
  const struct
  {
    int          index;
    const char * name;
  } tasks[] = { { 0, "dna" }, { 2, "ink" } };
  int failures = 0;
  for (const auto & task : tasks)
  {
    const Tensor reference = ReadTensor(argv[2], "eval.task" + std::to_string(task.index) + ".output");
    for (int64_t n = 0; n < input.shape[0]; ++n)
    {
      filter = FilterType::New();
      filter->SetInput(SampleImage(input, n));
      filter->SetModelFileName(argv[1]);
      filter->SetTask(task.name);
      filter->SetInputNormalization(rm_norm_params{ 0.0, 1.0, 0 }); // the fixture's input is the network's
      filter->SetOutputLogits(true);
      filter->SetNumberOfThreads(2);
      ITK_TRY_EXPECT_NO_EXCEPTION(filter->Update());

      const float *  out = filter->GetOutput()->GetBufferPointer();
      const size_t   voxels = filter->GetOutput()->GetBufferedRegion().GetNumberOfPixels();
      const float *  ref = reference.data.data() + n * static_cast<int64_t>(voxels);
      double         err = 0.0, scale = 0.0;
      for (size_t i = 0; i < voxels; ++i)
      {
        err = std::max(err, std::fabs(static_cast<double>(out[i]) - ref[i]));
        scale = std::max(scale, std::fabs(static_cast<double>(ref[i])));
      }
      std::cout << task.name << " sample " << n << ": max error " << err << " of " << scale << std::endl;
      if (!(err <= 1e-4 * scale))
      {
        std::cerr << task.name << " sample " << n << " differs from PyTorch's output" << std::endl;
        ++failures;
      }
    }
  }

  // A task the model lacks is an exception that names it.
  filter = FilterType::New();
  filter->SetInput(SampleImage(input, 0));
  filter->SetModelFileName(argv[1]);
  filter->SetTask("golgi");
  try
  {
    filter->Update();
    std::cerr << "a task the model lacks was accepted" << std::endl;
    ++failures;
  }
  catch (const itk::ExceptionObject & e)
  {
    if (std::string(e.GetDescription()).find("golgi") == std::string::npos)
    {
      std::cerr << "the error does not name the task: " << e.GetDescription() << std::endl;
      ++failures;
    }
  }

  return failures == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
