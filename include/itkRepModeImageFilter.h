/* itk::RepModeImageFilter: one task of a RepMode network over a 3D image, through repmode's C core.
 *
 * The filter runs the core's sliding window (repmode/predict.h): patches of the model's size (or a given one), 50%
 * overlap, Gaussian blending, on the re-parameterized network of the task, merged once and reused. It streams: an
 * output region asks its input only for the windows that cover it (the region plus their halo), and because the
 * window grid is anchored to the whole image, a region computed alone equals the same region of a whole-image run
 * bit for bit, so writing through itk::ImageFileWriter in any number of stream divisions gives the same file.
 *
 * Input intensities are normalized over the whole volume as the model was trained (its repmode.normalization,
 * repmode/normalize.h): z-scored (official, docs/network.md §1.2) or clipped to [0, 1] between two percentiles.
 * Give the whole volume's parameters (SetInputNormalization, e.g. from itk::RepModeNormalization over a streamed
 * reader with the model's GetNormalization(); or SetInputStatistics for a z-score) and the input streams too; leave
 * them unset and the filter asks for the whole input and computes them itself.
 *
 * Binary tasks give probabilities (or logits with OutputLogitsOn), regression tasks normalized intensities. A task
 * trained on 2D labels of a surface volume ("output": "2d", docs/network.md §7) gives a one-layer image: the mean over
 * depth of the logits (then the probability), as it was trained.
 * Input voxels must be finite: a NaN or infinite voxel read into a window is an itk::ExceptionObject naming its
 * index (it would spread through every window that sees it); itk::RepModeNonFiniteImageFilter in front replaces
 * such voxels.
 * The core's work runs on its own OpenMP threads (NumberOfThreads; 0: all cores), not ITK's thread pool.
 *
 * Uncertainty (Monte Carlo dropout, docs/network.md §6.3): with MonteCarloSamples N ≥ 1 the filter runs N seeded
 * stochastic passes (dropout MonteCarloDropout on the input of every MoDE block, Gaussian noise GateNoise on the gate
 * logits, each pass merging its own kernels); the output is their mean (of probabilities for a binary task) and the
 * second output, GetUncertaintyOutput(), their per-voxel standard deviation. Streaming still gives the whole run's
 * bytes: the draws are keyed by window and voxel. Gate noise needs a training-form model (file or SetModel). With
 * N = 0 (the default) the filter predicts once and the second output holds zeros.
 */
#ifndef itkRepModeImageFilter_h
#define itkRepModeImageFilter_h

#include <cstdint>
#include <memory>
#include <string>

#include "itkImageToImageFilter.h"
#include "repmode/model.h"
#include "repmode/normalize.h"
#include "repmode/ops.h"
#include "repmode/predict.h"

namespace itk
{

/** \class RepModeImageFilter
 * \brief Predicts one task of a RepMode model over a 3D scalar image, streamed patch by patch.
 *
 * The model is a repmode model file (either form; SetModelFileName) or a training-form model already loaded by
 * the caller (SetModel; not owned, it must outlive the filter's updates). The parameters are checked once, by the
 * core, before any work; a model without the task, a patch the network cannot take or an overlap outside [0, 1)
 * is an itk::ExceptionObject naming the problem. Progress events report the fraction of windows done, and
 * AbortGenerateDataOn() stops the work at the next window with itk::ProcessAborted.
 */
template <typename TInputImage, typename TOutputImage = Image<float, 3>>
class RepModeImageFilter : public ImageToImageFilter<TInputImage, TOutputImage>
{
public:
  ITK_DISALLOW_COPY_AND_MOVE(RepModeImageFilter);

  using Self = RepModeImageFilter;
  using Superclass = ImageToImageFilter<TInputImage, TOutputImage>;
  using Pointer = SmartPointer<Self>;
  using ConstPointer = SmartPointer<const Self>;

  using InputImageType = TInputImage;
  using OutputImageType = TOutputImage;
  using InputPixelType = typename InputImageType::PixelType;
  using OutputRegionType = typename OutputImageType::RegionType;
  using SizeType = typename OutputImageType::SizeType;
  using ModelPointer = const rm_model *;

  static_assert(TInputImage::ImageDimension == 3 && TOutputImage::ImageDimension == 3,
                "RepMode networks are 3D: the images must be 3D");
  static_assert(std::is_same<typename TOutputImage::PixelType, float>::value, "the output pixel type is float");
  static_assert(std::is_arithmetic<InputPixelType>::value, "the input pixel type must be scalar");

  /** How overlapping windows are blended (docs/network.md §6.2). */
  enum class BlendingEnum : uint8_t
  {
    Gaussian, /**< exp(-|x - P/2|^2 / (2 (P/8)^2)) per window, as the official code */
    Constant  /**< every window weighs the same */
  };

  itkNewMacro(Self);
  itkTypeMacro(RepModeImageFilter, ImageToImageFilter);

  /** A repmode model file, training or deploy form. */
  itkSetMacro(ModelFileName, std::string);
  itkGetConstReferenceMacro(ModelFileName, std::string);
  /** A training-form model in memory, instead of a file. */
  itkSetMacro(Model, ModelPointer);
  itkGetConstMacro(Model, ModelPointer);
  /** The task's name in the model. */
  itkSetMacro(Task, std::string);
  itkGetConstReferenceMacro(Task, std::string);
  /** Window size (x, y, z); all zero (the default) takes the model's patch. */
  itkSetMacro(PatchSize, SizeType);
  itkGetConstReferenceMacro(PatchSize, SizeType);
  /** Fraction of a window shared by its neighbours, in [0, 1); official 0.5. */
  itkSetMacro(Overlap, double);
  itkGetConstMacro(Overlap, double);
  itkSetEnumMacro(Blending, BlendingEnum);
  itkGetEnumMacro(Blending, BlendingEnum);
  /** Test-time augmentation: each window the mean of the network over the 8 in-plane flips and rotations of its
   * input, turned back (docs/network.md §6.4); 8 times the work, and streamed pieces still equal the whole. */
  itkSetMacro(TestTimeAugmentation, bool);
  itkGetConstMacro(TestTimeAugmentation, bool);
  itkBooleanMacro(TestTimeAugmentation);
  /** Threads of the core (OpenMP); 0 takes all cores. */
  itkSetMacro(NumberOfThreads, int);
  itkGetConstMacro(NumberOfThreads, int);
  /** Memory for the windows that straddle the borders of streamed pieces, kept so that the next piece does not
   * compute them again (results are the same either way); 0 turns it off. Default 512 MiB. */
  itkSetMacro(WindowCacheBytes, SizeValueType);
  itkGetConstMacro(WindowCacheBytes, SizeValueType);
  /** Binary tasks: write logits instead of probabilities (e.g. to average them before the sigmoid). */
  itkSetMacro(OutputLogits, bool);
  itkGetConstMacro(OutputLogits, bool);
  itkBooleanMacro(OutputLogits);
  /** Monte Carlo passes; 0 (the default): one plain prediction. */
  itkSetMacro(MonteCarloSamples, unsigned int);
  itkGetConstMacro(MonteCarloSamples, unsigned int);
  /** The passes' seed: the same seed gives the same bytes. */
  itkSetMacro(MonteCarloSeed, uint64_t);
  itkGetConstMacro(MonteCarloSeed, uint64_t);
  /** Dropout probability on the input of every MoDE block during the passes, in [0, 1); default 0.1. */
  itkSetMacro(MonteCarloDropout, double);
  itkGetConstMacro(MonteCarloDropout, double);
  /** Standard deviation of the Gaussian noise added to every gate logit during the passes, >= 0; default 0.1. */
  itkSetMacro(GateNoise, double);
  itkGetConstMacro(GateNoise, double);

  /** The per-voxel standard deviation of the Monte Carlo passes (zeros without them). */
  OutputImageType *
  GetUncertaintyOutput()
  {
    return static_cast<OutputImageType *>(this->ProcessObject::GetOutput(1));
  }

  /** Mean and population standard deviation of the whole input, for a model that z-scores it (the official
   * method): SetInputNormalization of their z-score. NaN (the default): computed by the filter, which then needs
   * the whole input. */
  void
  SetInputStatistics(double mean, double standardDeviation);
  /** The statistics SetInputStatistics was given (NaN after SetInputNormalization). */
  itkGetConstMacro(InputMean, double);
  itkGetConstMacro(InputStandardDeviation, double);

  /** The whole input's normalization for the model's method (GetNormalization()), e.g. from
   * itk::RepModeNormalization::ComputeStreamed: a z-score (offset mean, scale 1/sd, no clip) or a percentile
   * clipping (offset lo, scale 1/(hi - lo), clip). A NaN offset (the default) leaves it to the filter, which then
   * needs the whole input. Parameters of the other method than the model's are refused when the filter updates. */
  void
  SetInputNormalization(const rm_norm_params & params);
  const rm_norm_params &
  GetInputNormalization() const
  {
    return m_InputNormalization;
  }

  /** The model's normalization method (its repmode.normalization); valid after UpdateOutputInformation(). */
  const rm_normalization &
  GetNormalization() const
  {
    return m_Normalization;
  }

  /** The task as the model describes it (name, kind, threshold, colour); valid after UpdateOutputInformation(). */
  const rm_task &
  GetTaskDescription() const
  {
    return m_TaskDescription;
  }

protected:
  RepModeImageFilter();
  ~RepModeImageFilter() override = default;

  void
  PrintSelf(std::ostream & os, Indent indent) const override;

  void
  VerifyPreconditions() ITKv5_CONST override;

  /** Loads the network of the task (once per model and task) and checks that the model takes this image. */
  void
  GenerateOutputInformation() override;

  /** The output region plus the halo of the windows that cover it, or the whole input without statistics. */
  void
  GenerateInputRequestedRegion() override;

  void
  GenerateData() override;

private:
  struct ContextDeleter
  {
    void
    operator()(rm_ctx * ctx) const
    {
      rm_ctx_free(ctx);
    }
  };
  struct CacheDeleter
  {
    void
    operator()(rm_window_cache * cache) const
    {
      rm_window_cache_free(cache);
    }
  };
  struct DeployDeleter
  {
    void
    operator()(rm_deploy * deploy) const
    {
      rm_deploy_free(deploy);
    }
  };
  struct ModelDeleter
  {
    void
    operator()(rm_model * model) const
    {
      rm_model_free(model);
    }
  };

  /** Throws an itk::ExceptionObject with the core's message unless status is RM_OK. */
  void
  Check(rm_status status) const;
  /** The core's window parameters for this image. */
  rm_window_params
  WindowParameters() const;
  /** The largest possible region's size, in the core's order (Z, Y, X). */
  void
  VolumeSize(int64_t volume[3]) const;
  /** The region's start relative to the largest possible region and its size, in the core's order. */
  void
  CoreRegion(const OutputRegionType & region, int64_t start[3], int64_t size[3]) const;
  /** The input's normalization: the one given, or computed over the whole (buffered) input. */
  rm_norm_params
  InputNormalization() const;
  /** Throws for a prediction that failed: a non-finite input voxel, an abort (itk::ProcessAborted), the core's
   * message. */
  template <typename TReading>
  void
  CheckPrediction(rm_status status, const TReading & reading) const;
  /** The training form the Monte Carlo passes merge their noisy gates from: SetModel's, or the file's when it is
   * one (loaded once); NULL for a deploy-form file. */
  const rm_model *
  TrainingForm();

  std::string       m_ModelFileName{};
  ModelPointer      m_Model{ nullptr };
  std::string       m_Task{};
  SizeType          m_PatchSize{ { 0, 0, 0 } };
  double            m_Overlap{ 0.5 };
  BlendingEnum      m_Blending{ BlendingEnum::Gaussian };
  bool              m_TestTimeAugmentation{ false };
  int               m_NumberOfThreads{ 0 };
  bool              m_OutputLogits{ false };
  unsigned int      m_MonteCarloSamples{ 0 };
  uint64_t          m_MonteCarloSeed{ 0 };
  double            m_MonteCarloDropout{ 0.1 };
  double            m_GateNoise{ 0.1 };
  SizeValueType     m_WindowCacheBytes{ SizeValueType{ 512 } << 20 };
  double            m_InputMean;
  double            m_InputStandardDeviation;
  rm_norm_params    m_InputNormalization;
  rm_normalization  m_Normalization{ rm_normalization_zscore() };

  std::unique_ptr<rm_ctx, ContextDeleter>       m_Context;
  std::unique_ptr<rm_deploy, DeployDeleter>     m_Deploy;
  std::unique_ptr<rm_model, ModelDeleter>       m_TrainingForm; // the file's, for gate noise; m_DeployKey's too
  std::unique_ptr<rm_window_cache, CacheDeleter> m_WindowCache; // windows between the pieces of one update
  std::string                                   m_DeployKey{}; // the model and task m_Deploy was made from
  rm_task                                       m_TaskDescription{};
};

} // end namespace itk

#ifndef ITK_MANUAL_INSTANTIATION
#  include "itkRepModeImageFilter.hxx"
#endif

#endif
