/* itk::RepModeLabelMapFilter: one label map from the predictions of several RepMode tasks.
 *
 * Input i is task i's prediction (a probability for a binary task, a normalized intensity for a regression task,
 * as itk::RepModeImageFilter writes them); its voxels above the task's threshold get label i + 1. The threshold is,
 * in order: the one given (SetThresholds; NaN for "not given"), the task's own from the model file, 0.5 for a
 * binary task, and Otsu's threshold of the whole prediction (256 bins) for a regression task. Where several tasks
 * pass, the voxel goes to the task whose prediction is furthest above its threshold (the first such task on a
 * tie), so one label map holds them all. WriteColorTable() names the labels in Slicer's colour-table format.
 *
 * Streaming: per-voxel, so any region streams, except that a regression task without a threshold needs its whole
 * prediction for Otsu's method.
 */
#ifndef itkRepModeLabelMapFilter_h
#define itkRepModeLabelMapFilter_h

#include <array>
#include <string>
#include <vector>

#include "itkImageToImageFilter.h"
#include "repmode/model.h"

namespace itk
{

/** \class RepModeLabelMapFilter
 * \brief Thresholds the predictions of several tasks into one label map, label i + 1 for task i.
 */
template <typename TInputImage = Image<float, 3>, typename TOutputImage = Image<unsigned char, 3>>
class RepModeLabelMapFilter : public ImageToImageFilter<TInputImage, TOutputImage>
{
public:
  ITK_DISALLOW_COPY_AND_MOVE(RepModeLabelMapFilter);

  using Self = RepModeLabelMapFilter;
  using Superclass = ImageToImageFilter<TInputImage, TOutputImage>;
  using Pointer = SmartPointer<Self>;
  using ConstPointer = SmartPointer<const Self>;

  using InputImageType = TInputImage;
  using OutputImageType = TOutputImage;
  using OutputRegionType = typename OutputImageType::RegionType;
  using OutputPixelType = typename OutputImageType::PixelType;
  using TaskList = std::vector<rm_task>;
  using ThresholdList = std::vector<double>;

  itkNewMacro(Self);
  itkTypeMacro(RepModeLabelMapFilter, ImageToImageFilter);

  /** The task of each input, in input order (names, kinds, thresholds and colours from the model). */
  void
  SetTasks(const TaskList & tasks);
  const TaskList &
  GetTasks() const
  {
    return m_Tasks;
  }
  /** Thresholds that override the defaults, one per task; NaN keeps a task's default. Empty: all defaults. */
  void
  SetThresholds(const ThresholdList & thresholds);
  const ThresholdList &
  GetThresholds() const
  {
    return m_Thresholds;
  }
  /** The thresholds the last update used, one per task. */
  const ThresholdList &
  GetThresholdsUsed() const
  {
    return m_ThresholdsUsed;
  }

  /** Input i: task i's prediction. */
  void
  SetPrediction(unsigned int task, const InputImageType * prediction)
  {
    this->SetNthInput(task, const_cast<InputImageType *>(prediction));
  }

  /** The colour of label `label` (1, 2, ...) when its task has none: a palette distinct on dark and light
   * backgrounds, repeating after 8 labels. */
  static std::array<unsigned char, 3>
  DefaultColor(unsigned int label);

  /** The colour of label `label` (1, 2, ...), 0..255: its task's `color` from the model, else DefaultColor(label).
   * The colour table and the segmentation (repmode predict --segmentation) both use it. */
  std::array<unsigned char, 3>
  GetLabelColor(unsigned int label) const;

  /** Writes the labels' colour table in Slicer's text format ("index name r g b a", 0..255; 0 is the
   * transparent background), atomically: a failure leaves no file. Throws on failure. */
  void
  WriteColorTable(const std::string & fileName) const;

protected:
  RepModeLabelMapFilter();
  ~RepModeLabelMapFilter() override = default;

  void
  PrintSelf(std::ostream & os, Indent indent) const override;

  void
  VerifyPreconditions() ITKv5_CONST override;

  /** A regression task without a threshold asks for its whole prediction (Otsu's method). */
  void
  GenerateInputRequestedRegion() override;

  /** Settles every task's threshold once, before the threaded work. */
  void
  BeforeThreadedGenerateData() override;

  void
  DynamicThreadedGenerateData(const OutputRegionType & region) override;

private:
  /** The threshold given for task i, else the task's own; NaN when neither. */
  double
  GivenThreshold(size_t i) const;

  TaskList      m_Tasks{};
  ThresholdList m_Thresholds{};
  ThresholdList m_ThresholdsUsed{};
};

} // end namespace itk

#ifndef ITK_MANUAL_INSTANTIATION
#  include "itkRepModeLabelMapFilter.hxx"
#endif

#endif
