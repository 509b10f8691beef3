#ifndef itkRepModeImageFilter_hxx
#define itkRepModeImageFilter_hxx

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <vector>

#include "itkImageRegionConstIterator.h"
#include "itkRepModeImageFilter.h"
#include "itkRepModeNormalization.h"

namespace itk
{

template <typename TInputImage, typename TOutputImage>
RepModeImageFilter<TInputImage, TOutputImage>::RepModeImageFilter()
  : m_InputMean(std::numeric_limits<double>::quiet_NaN())
  , m_InputStandardDeviation(std::numeric_limits<double>::quiet_NaN())
  , m_InputNormalization{ std::numeric_limits<double>::quiet_NaN(), 1.0, 0 }
{
  this->SetNumberOfRequiredOutputs(2);
  this->SetNthOutput(1, this->MakeOutput(1));
}

template <typename TInputImage, typename TOutputImage>
void
RepModeImageFilter<TInputImage, TOutputImage>::SetInputStatistics(double mean, double standardDeviation)
{
  // NaN compares unequal: a second call with NaN statistics counts as a change, harmlessly.
  if (m_InputMean == mean && m_InputStandardDeviation == standardDeviation)
  {
    return;
  }
  SetInputNormalization(std::isnan(mean) ? rm_norm_params{ mean, 1.0, 0 }
                                         : rm_norm_params_zscore(mean, standardDeviation));
  m_InputMean = mean;
  m_InputStandardDeviation = standardDeviation;
  this->Modified();
}

template <typename TInputImage, typename TOutputImage>
void
RepModeImageFilter<TInputImage, TOutputImage>::SetInputNormalization(const rm_norm_params & params)
{
  m_InputMean = m_InputStandardDeviation = std::numeric_limits<double>::quiet_NaN();
  m_InputNormalization = params;
  this->Modified();
}

template <typename TInputImage, typename TOutputImage>
void
RepModeImageFilter<TInputImage, TOutputImage>::Check(rm_status status) const
{
  if (status != RM_OK)
  {
    itkExceptionMacro(<< rm_ctx_error(m_Context.get()));
  }
}

template <typename TInputImage, typename TOutputImage>
void
RepModeImageFilter<TInputImage, TOutputImage>::VerifyPreconditions() ITKv5_CONST
{
  Superclass::VerifyPreconditions();
  if (m_ModelFileName.empty() == (m_Model == nullptr))
  {
    itkExceptionMacro(<< "give the model either as a file (SetModelFileName) or loaded (SetModel), not "
                      << (m_Model ? "both" : "neither"));
  }
  if (m_Task.empty())
  {
    itkExceptionMacro(<< "no task: SetTask names the model's task to predict");
  }
  if (!(m_Overlap >= 0.0 && m_Overlap < 1.0))
  {
    itkExceptionMacro(<< "overlap " << m_Overlap << " is outside [0, 1)");
  }
  if (!(m_MonteCarloDropout >= 0.0 && m_MonteCarloDropout < 1.0))
  {
    itkExceptionMacro(<< "Monte Carlo dropout " << m_MonteCarloDropout << " is outside [0, 1)");
  }
  if (!(m_GateNoise >= 0.0) || !std::isfinite(m_GateNoise))
  {
    itkExceptionMacro(<< "gate noise " << m_GateNoise << " is not a finite number >= 0");
  }
  if (m_NumberOfThreads < 0 || m_NumberOfThreads > RM_MAX_THREADS)
  {
    itkExceptionMacro(<< "number of threads " << m_NumberOfThreads << " is out of range: 0 (all cores) to "
                      << RM_MAX_THREADS);
  }
  if (std::isnan(m_InputMean) != std::isnan(m_InputStandardDeviation) ||
      (!std::isnan(m_InputStandardDeviation) && !(m_InputStandardDeviation >= 0.0)))
  {
    itkExceptionMacro(<< "input statistics: give a mean and a non-negative standard deviation, or neither");
  }
  const rm_norm_params & p = m_InputNormalization;
  if (!std::isnan(p.offset) && !(std::isfinite(p.offset) && std::isfinite(p.scale) && p.scale >= 0.0))
  {
    itkExceptionMacro(<< "input normalization: give a finite offset and a finite, non-negative scale (offset "
                      << p.offset << ", scale " << p.scale << "), or a NaN offset to have the filter compute them");
  }
}

template <typename TInputImage, typename TOutputImage>
void
RepModeImageFilter<TInputImage, TOutputImage>::GenerateOutputInformation()
{
  Superclass::GenerateOutputInformation();
  if (!m_Context)
  {
    m_Context.reset(rm_ctx_create(m_NumberOfThreads));
    if (!m_Context)
    {
      itkExceptionMacro(<< "cannot create repmode's context: out of memory");
    }
  }
  Check(rm_ctx_set_threads(m_Context.get(), m_NumberOfThreads));

  // The merged network depends only on the model and the task: rebuild it when one of them changes.
  std::ostringstream key;
  key << m_ModelFileName << '\n' << static_cast<const void *>(m_Model) << '\n' << m_Task;
  if (!m_Deploy || key.str() != m_DeployKey)
  {
    m_Deploy.reset();
    rm_deploy * deploy = nullptr;
    if (m_Model)
    {
      const int task = rm_model_task_index(m_Model, m_Task.c_str());
      if (task < 0)
      {
        itkExceptionMacro(<< "the model has no task '" << m_Task << "'");
      }
      Check(rm_deploy_create(m_Context.get(), m_Model, task, &deploy));
    }
    else
    {
      Check(rm_deploy_load(m_Context.get(), m_ModelFileName.c_str(), m_Task.c_str(), &deploy));
    }
    m_Deploy.reset(deploy);
    m_TrainingForm.reset();
    m_DeployKey = key.str();
  }
  const rm_config * cfg = rm_deploy_config(m_Deploy.get());
  m_TaskDescription = cfg->tasks[rm_deploy_task(m_Deploy.get())];
  // A model in memory is asked each time: its normalization may have been set since the network was merged.
  Check(m_Model ? rm_model_normalization(m_Context.get(), m_Model, &m_Normalization)
                : rm_deploy_normalization(m_Context.get(), m_Deploy.get(), &m_Normalization));
  const bool percentile = m_Normalization.method == RM_NORM_PERCENTILE;
  if (!std::isnan(m_InputNormalization.offset) && (m_InputNormalization.clip != 0) != percentile)
  {
    itkExceptionMacro(<< "the model normalizes its input by "
                      << (percentile ? "percentile clipping to [0, 1]" : "z-score")
                      << ", but the input normalization given is a "
                      << (percentile ? "z-score (SetInputStatistics)" : "percentile clipping")
                      << ": compute it with the model's method (GetNormalization(), itk::RepModeNormalization)");
  }
  if (cfg->out_channels != 1)
  {
    itkExceptionMacro(<< "the model predicts " << cfg->out_channels
                      << " channels per task; this filter writes one (scalar) output");
  }
  // A new update (new input, parameters or model) starts without windows from the last one.
  m_WindowCache.reset(m_WindowCacheBytes > 0 ? rm_window_cache_create(m_WindowCacheBytes) : nullptr);

  // The core checks the window parameters against the network and the image before any work is asked for.
  int64_t                volume[3], start[3] = { 0, 0, 0 }, inStart[3], inSize[3];
  const rm_window_params p = WindowParameters();
  VolumeSize(volume);
  Check(rm_predict_input_region(m_Context.get(), m_Deploy.get(), &p, volume, start, volume, inStart, inSize));
  if (m_TaskDescription.output_2d)
  {
    // A task with 2D labels maps the layers of a surface volume to one layer: the mean over depth of the logits.
    OutputRegionType region = this->GetInput()->GetLargestPossibleRegion();
    region.SetSize(2, 1);
    this->GetOutput()->SetLargestPossibleRegion(region);
    this->GetUncertaintyOutput()->SetLargestPossibleRegion(region);
  }
}

template <typename TInputImage, typename TOutputImage>
const rm_model *
RepModeImageFilter<TInputImage, TOutputImage>::TrainingForm()
{
  if (m_Model)
  {
    return m_Model;
  }
  if (!m_TrainingForm)
  {
    rm_model_info info;
    Check(rm_model_info_read(m_Context.get(), m_ModelFileName.c_str(), &info));
    const bool deploy = info.deploy != 0;
    rm_model_info_free(&info);
    if (deploy)
    {
      return nullptr;
    }
    rm_model * model = nullptr;
    Check(rm_model_load(m_Context.get(), m_ModelFileName.c_str(), &model));
    m_TrainingForm.reset(model);
  }
  return m_TrainingForm.get();
}

template <typename TInputImage, typename TOutputImage>
rm_window_params
RepModeImageFilter<TInputImage, TOutputImage>::WindowParameters() const
{
  const rm_config * cfg = rm_deploy_config(m_Deploy.get());
  const bool        modelPatch = m_PatchSize[0] == 0 && m_PatchSize[1] == 0 && m_PatchSize[2] == 0;
  int64_t           patch[3];
  for (unsigned a = 0; a < 3; ++a)
  {
    patch[a] = modelPatch ? cfg->patch[a] : static_cast<int64_t>(m_PatchSize[2 - a]);
  }
  rm_window_params p = rm_window_params_make(patch);
  p.overlap = m_Overlap;
  p.blend = m_Blending == BlendingEnum::Constant ? RM_BLEND_CONSTANT : RM_BLEND_GAUSSIAN;
  p.tta = m_TestTimeAugmentation ? 1 : 0;
  return p;
}

template <typename TInputImage, typename TOutputImage>
void
RepModeImageFilter<TInputImage, TOutputImage>::VolumeSize(int64_t volume[3]) const
{
  const auto size = this->GetInput()->GetLargestPossibleRegion().GetSize();
  for (unsigned a = 0; a < 3; ++a)
  {
    volume[a] = static_cast<int64_t>(size[2 - a]);
  }
}

template <typename TInputImage, typename TOutputImage>
void
RepModeImageFilter<TInputImage, TOutputImage>::CoreRegion(const OutputRegionType & region,
                                                          int64_t                  start[3],
                                                          int64_t                  size[3]) const
{
  const auto origin = this->GetOutput()->GetLargestPossibleRegion().GetIndex();
  for (unsigned a = 0; a < 3; ++a)
  {
    start[a] = static_cast<int64_t>(region.GetIndex(2 - a) - origin[2 - a]);
    size[a] = static_cast<int64_t>(region.GetSize(2 - a));
  }
  if (m_TaskDescription.output_2d) // every layer of the surface volume
  {
    int64_t volume[3];
    VolumeSize(volume);
    start[0] = 0;
    size[0] = volume[0];
  }
}

template <typename TInputImage, typename TOutputImage>
void
RepModeImageFilter<TInputImage, TOutputImage>::GenerateInputRequestedRegion()
{
  Superclass::GenerateInputRequestedRegion();
  auto * input = const_cast<InputImageType *>(this->GetInput());
  if (!input)
  {
    return;
  }
  if (std::isnan(m_InputNormalization.offset))
  {
    input->SetRequestedRegionToLargestPossibleRegion();
    return;
  }
  int64_t                volume[3], start[3], size[3], inStart[3], inSize[3];
  const rm_window_params p = WindowParameters();
  VolumeSize(volume);
  CoreRegion(this->GetOutput()->GetRequestedRegion(), start, size);
  Check(rm_predict_input_region(m_Context.get(), m_Deploy.get(), &p, volume, start, size, inStart, inSize));
  typename InputImageType::RegionType region = input->GetLargestPossibleRegion();
  for (unsigned a = 0; a < 3; ++a)
  {
    region.SetIndex(a, region.GetIndex(a) + static_cast<IndexValueType>(inStart[2 - a]));
    region.SetSize(a, static_cast<SizeValueType>(inSize[2 - a]));
  }
  input->SetRequestedRegion(region);
}

template <typename TInputImage, typename TOutputImage>
rm_norm_params
RepModeImageFilter<TInputImage, TOutputImage>::InputNormalization() const
{
  if (!std::isnan(m_InputNormalization.offset))
  {
    return m_InputNormalization;
  }
  return RepModeNormalization<InputImageType>::Compute(this->GetInput(), m_Normalization);
}

namespace repmode_detail
{
// What the core's callbacks need: the input, its normalization and the filter to report progress to.
template <typename TFilter, typename TInputImage>
struct Reading
{
  const TInputImage * input;
  typename TInputImage::IndexType origin; // the largest possible region's index
  rm_norm_params normalization;
  TFilter * filter;
  bool nonFinite = false; // a non-finite voxel stopped the reading, at `where`
  typename TInputImage::IndexType where{};

  static int
  Read(void * user, const int64_t start[3], const int64_t size[3], float * buf)
  {
    auto &                           r = *static_cast<Reading *>(user);
    typename TInputImage::RegionType region;
    for (unsigned a = 0; a < 3; ++a)
    {
      region.SetIndex(a, r.origin[a] + static_cast<IndexValueType>(start[2 - a]));
      region.SetSize(a, static_cast<SizeValueType>(size[2 - a]));
    }
    if (!r.input->GetBufferedRegion().IsInside(region))
    {
      return 1;
    }
    for (ImageRegionConstIterator<TInputImage> it(r.input, region); !it.IsAtEnd(); ++it)
    {
      const double v = static_cast<double>(it.Get());
      if (!std::isfinite(v)) // would spread through every window that sees it
      {
        r.nonFinite = true;
        r.where = it.GetIndex();
        return 1;
      }
      *buf++ = rm_norm_value(&r.normalization, v);
    }
    return 0;
  }

  static int
  Progress(void * user, double fraction)
  {
    auto * f = static_cast<const Reading *>(user)->filter;
    f->UpdateProgress(static_cast<float>(fraction));
    return f->GetAbortGenerateData() ? 1 : 0;
  }
};
} // namespace repmode_detail

template <typename TInputImage, typename TOutputImage>
template <typename TReading>
void
RepModeImageFilter<TInputImage, TOutputImage>::CheckPrediction(rm_status status, const TReading & reading) const
{
  if (reading.nonFinite)
  {
    itkExceptionMacro(<< "input voxel " << reading.where << " is not finite (NaN or infinite); "
                      << "itk::RepModeNonFiniteImageFilter in front replaces such voxels");
  }
  if (status == RM_ERR_CANCELLED) // Reading::Progress cancels when AbortGenerateData is on
  {
    ProcessAborted e(__FILE__, __LINE__);
    e.SetDescription("RepModeImageFilter: aborted");
    throw e;
  }
  Check(status);
}

template <typename TInputImage, typename TOutputImage>
void
RepModeImageFilter<TInputImage, TOutputImage>::GenerateData()
{
  this->AllocateOutputs();
  this->UpdateProgress(0.0f);
  OutputImageType * output = this->GetOutput();
  using Reading = repmode_detail::Reading<Self, InputImageType>;
  Reading reading{ this->GetInput(), this->GetInput()->GetLargestPossibleRegion().GetIndex(), InputNormalization(),
                   this };

  int64_t                volume[3], start[3], size[3];
  const rm_window_params p = WindowParameters();
  VolumeSize(volume);
  CoreRegion(output->GetRequestedRegion(), start, size);
  float *           out = output->GetBufferPointer();
  float *           spread = this->GetUncertaintyOutput()->GetBufferPointer();
  const size_t      n = output->GetRequestedRegion().GetNumberOfPixels();
  const bool        binary = m_TaskDescription.kind == RM_TASK_BINARY;
  if (m_MonteCarloSamples > 0)
  {
    const rm_model *   model = m_GateNoise > 0.0 ? TrainingForm() : nullptr;
    const rm_mc_params mc{ static_cast<int64_t>(m_MonteCarloSamples),
                           m_MonteCarloSeed,
                           static_cast<float>(m_MonteCarloDropout),
                           static_cast<float>(m_GateNoise),
                           binary && !m_OutputLogits,
                           m_TaskDescription.output_2d };
    const rm_status    status =
      rm_predict_region_mc(m_Context.get(), m_Deploy.get(), model, rm_deploy_task(m_Deploy.get()), &p, &mc, volume,
                           &Reading::Read, &reading, start, size, out, spread, &Reading::Progress, &reading);
    CheckPrediction(status, reading);
    return;
  }
  std::fill(spread, spread + n, 0.0f);
  std::vector<float> layers; // a task with 2D labels: the logits of every layer, averaged into `out`
  if (m_TaskDescription.output_2d)
  {
    layers.resize(static_cast<size_t>(size[0] * size[1] * size[2]));
  }
  const rm_status status =
    rm_predict_region_cached(m_Context.get(), m_Deploy.get(), &p, volume, &Reading::Read, &reading, start, size,
                             layers.empty() ? out : layers.data(), &Reading::Progress, &reading, m_WindowCache.get());
  CheckPrediction(status, reading);
  if (!layers.empty())
  {
    const rm_tensor all = rm_tensor_5d(layers.data(), 1, 1, size[0], size[1], size[2]);
    rm_tensor       mean = rm_tensor_5d(out, 1, 1, 1, size[1], size[2]);
    Check(rm_depth_mean_forward(m_Context.get(), &all, &mean));
  }
  if (binary && !m_OutputLogits)
  {
    for (size_t i = 0; i < n; ++i)
    {
      out[i] = static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(out[i]))));
    }
  }
}

template <typename TInputImage, typename TOutputImage>
void
RepModeImageFilter<TInputImage, TOutputImage>::PrintSelf(std::ostream & os, Indent indent) const
{
  Superclass::PrintSelf(os, indent);
  os << indent << "ModelFileName: " << m_ModelFileName << std::endl;
  os << indent << "Model: " << static_cast<const void *>(m_Model) << std::endl;
  os << indent << "Task: " << m_Task << std::endl;
  os << indent << "PatchSize: " << m_PatchSize << std::endl;
  os << indent << "Overlap: " << m_Overlap << std::endl;
  os << indent << "Blending: " << (m_Blending == BlendingEnum::Gaussian ? "Gaussian" : "Constant") << std::endl;
  os << indent << "TestTimeAugmentation: " << (m_TestTimeAugmentation ? "On" : "Off") << std::endl;
  os << indent << "NumberOfThreads: " << m_NumberOfThreads << std::endl;
  os << indent << "OutputLogits: " << (m_OutputLogits ? "On" : "Off") << std::endl;
  os << indent << "MonteCarloSamples: " << m_MonteCarloSamples << std::endl;
  os << indent << "MonteCarloSeed: " << m_MonteCarloSeed << std::endl;
  os << indent << "MonteCarloDropout: " << m_MonteCarloDropout << std::endl;
  os << indent << "GateNoise: " << m_GateNoise << std::endl;
  os << indent << "WindowCacheBytes: " << m_WindowCacheBytes << " (holding "
     << rm_window_cache_bytes(m_WindowCache.get()) << ")" << std::endl;
  os << indent << "InputMean: " << m_InputMean << std::endl;
  os << indent << "InputStandardDeviation: " << m_InputStandardDeviation << std::endl;
  os << indent << "InputNormalization: offset " << m_InputNormalization.offset << ", scale "
     << m_InputNormalization.scale << (m_InputNormalization.clip ? ", clipped to [0, 1]" : "")
     << (std::isnan(m_InputNormalization.offset) ? " (unset: computed over the whole input)" : "") << std::endl;
  std::unique_ptr<char, void (*)(void *)> method(rm_normalization_json(&m_Normalization), rm_free);
  os << indent << "Normalization: " << (method ? method.get() : "?") << std::endl;
  os << indent << "Context: " << static_cast<const void *>(m_Context.get()) << std::endl;
  std::string key = m_DeployKey;
  std::replace(key.begin(), key.end(), '\n', ' ');
  os << indent << "Deploy: " << static_cast<const void *>(m_Deploy.get()) << std::endl;
  os << indent << "TrainingForm: " << static_cast<const void *>(m_TrainingForm.get()) << std::endl;
  os << indent << "DeployKey: " << key << std::endl;
  os << indent << "TaskDescription: " << m_TaskDescription.name
     << (m_TaskDescription.kind == RM_TASK_BINARY ? " (binary" : " (regression")
     << (m_TaskDescription.output_2d ? ", 2D labels: mean over depth)" : ")") << std::endl;
}

} // end namespace itk

#endif
