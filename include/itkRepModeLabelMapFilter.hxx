#ifndef itkRepModeLabelMapFilter_hxx
#define itkRepModeLabelMapFilter_hxx

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>

#include "itkImageRegionConstIterator.h"
#include "itkImageRegionIterator.h"
#include "itkImageToHistogramFilter.h"
#include "itkOtsuThresholdCalculator.h"
#include "itkRepModeLabelMapFilter.h"

namespace itk
{

template <typename TInputImage, typename TOutputImage>
RepModeLabelMapFilter<TInputImage, TOutputImage>::RepModeLabelMapFilter()
{
  this->DynamicMultiThreadingOn();
}

template <typename TInputImage, typename TOutputImage>
void
RepModeLabelMapFilter<TInputImage, TOutputImage>::SetTasks(const TaskList & tasks)
{
  m_Tasks = tasks;
  this->Modified();
}

template <typename TInputImage, typename TOutputImage>
void
RepModeLabelMapFilter<TInputImage, TOutputImage>::SetThresholds(const ThresholdList & thresholds)
{
  m_Thresholds = thresholds;
  this->Modified();
}

template <typename TInputImage, typename TOutputImage>
double
RepModeLabelMapFilter<TInputImage, TOutputImage>::GivenThreshold(size_t i) const
{
  if (i < m_Thresholds.size() && !std::isnan(m_Thresholds[i]))
  {
    return m_Thresholds[i];
  }
  return static_cast<double>(m_Tasks[i].threshold);
}

template <typename TInputImage, typename TOutputImage>
void
RepModeLabelMapFilter<TInputImage, TOutputImage>::VerifyPreconditions() ITKv5_CONST
{
  Superclass::VerifyPreconditions();
  const size_t inputs = this->GetNumberOfIndexedInputs();
  if (m_Tasks.size() != inputs)
  {
    itkExceptionMacro(<< inputs << " predictions for " << m_Tasks.size() << " tasks: give one task per input");
  }
  if (inputs > static_cast<size_t>(NumericTraits<OutputPixelType>::max()))
  {
    itkExceptionMacro(<< inputs << " tasks do not fit the output pixel type's labels");
  }
  if (!m_Thresholds.empty() && m_Thresholds.size() != m_Tasks.size())
  {
    itkExceptionMacro(<< m_Thresholds.size() << " thresholds for " << m_Tasks.size() << " tasks");
  }
}

template <typename TInputImage, typename TOutputImage>
void
RepModeLabelMapFilter<TInputImage, TOutputImage>::GenerateInputRequestedRegion()
{
  Superclass::GenerateInputRequestedRegion();
  for (size_t i = 0; i < m_Tasks.size(); ++i)
  {
    auto * input = const_cast<InputImageType *>(this->GetInput(i));
    if (input && m_Tasks[i].kind == RM_TASK_REGRESSION && std::isnan(GivenThreshold(i)))
    {
      input->SetRequestedRegionToLargestPossibleRegion();
    }
  }
}

template <typename TInputImage, typename TOutputImage>
void
RepModeLabelMapFilter<TInputImage, TOutputImage>::BeforeThreadedGenerateData()
{
  m_ThresholdsUsed.assign(m_Tasks.size(), 0.0);
  for (size_t i = 0; i < m_Tasks.size(); ++i)
  {
    double t = GivenThreshold(i);
    if (std::isnan(t) && m_Tasks[i].kind == RM_TASK_BINARY)
    {
      t = 0.5;
    }
    else if (std::isnan(t))
    {
      // Otsu's threshold of the whole prediction, on a copy that shares its buffer (the input stays untouched).
      auto whole = InputImageType::New();
      whole->Graft(this->GetInput(i));
      using HistogramFilter = Statistics::ImageToHistogramFilter<InputImageType>;
      auto                                         histogram = HistogramFilter::New();
      typename HistogramFilter::HistogramSizeType  bins(1);
      bins.Fill(256);
      histogram->SetInput(whole);
      histogram->SetHistogramSize(bins);
      histogram->SetAutoMinimumMaximum(true);
      histogram->Update();
      auto otsu = OtsuThresholdCalculator<typename HistogramFilter::HistogramType, double>::New();
      otsu->SetInput(histogram->GetOutput());
      otsu->Compute();
      t = otsu->GetThreshold();
    }
    m_ThresholdsUsed[i] = t;
  }
}

template <typename TInputImage, typename TOutputImage>
void
RepModeLabelMapFilter<TInputImage, TOutputImage>::DynamicThreadedGenerateData(const OutputRegionType & region)
{
  const size_t                                        n = m_Tasks.size();
  std::vector<ImageRegionConstIterator<InputImageType>> in;
  for (size_t i = 0; i < n; ++i)
  {
    in.emplace_back(this->GetInput(i), region);
  }
  for (ImageRegionIterator<OutputImageType> out(this->GetOutput(), region); !out.IsAtEnd(); ++out)
  {
    OutputPixelType label = 0;
    double          best = 0.0;
    for (size_t i = 0; i < n; ++i)
    {
      const double margin = static_cast<double>(in[i].Get()) - m_ThresholdsUsed[i];
      ++in[i];
      if (margin > best) // above the threshold and further than the tasks before
      {
        best = margin;
        label = static_cast<OutputPixelType>(i + 1);
      }
    }
    out.Set(label);
  }
}

template <typename TInputImage, typename TOutputImage>
std::array<unsigned char, 3>
RepModeLabelMapFilter<TInputImage, TOutputImage>::DefaultColor(unsigned int label)
{
  static const unsigned char palette[8][3] = { { 230, 159, 0 }, { 86, 180, 233 }, { 0, 158, 115 },   { 240, 228, 66 },
                                               { 0, 114, 178 }, { 213, 94, 0 },   { 204, 121, 167 }, { 128, 128, 128 } };
  const unsigned char * c = palette[(label + 7) % 8];
  return { c[0], c[1], c[2] };
}

template <typename TInputImage, typename TOutputImage>
std::array<unsigned char, 3>
RepModeLabelMapFilter<TInputImage, TOutputImage>::GetLabelColor(unsigned int label) const
{
  const rm_task & task = m_Tasks.at(label - 1);
  if (!task.has_color)
  {
    return DefaultColor(label);
  }
  std::array<unsigned char, 3> rgb{};
  for (int c = 0; c < 3; ++c)
  {
    rgb[c] = static_cast<unsigned char>(std::round(255.0 * std::fmin(1.0, std::fmax(0.0, task.color[c]))));
  }
  return rgb;
}

template <typename TInputImage, typename TOutputImage>
void
RepModeLabelMapFilter<TInputImage, TOutputImage>::WriteColorTable(const std::string & fileName) const
{
  const std::string tmp = fileName + ".tmp";
  {
    std::ofstream out(tmp);
    out << "# repmode label map colours: index name r g b a\n0 background 0 0 0 0\n";
    for (size_t i = 0; i < m_Tasks.size(); ++i)
    {
      out << i + 1 << ' ' << m_Tasks[i].name;
      for (const unsigned char c : GetLabelColor(static_cast<unsigned>(i + 1)))
      {
        out << ' ' << static_cast<int>(c);
      }
      out << " 255\n";
    }
    out.close();
    if (!out || std::rename(tmp.c_str(), fileName.c_str()) != 0)
    {
      std::remove(tmp.c_str());
      itkExceptionMacro(<< "cannot write the colour table " << fileName);
    }
  }
}

template <typename TInputImage, typename TOutputImage>
void
RepModeLabelMapFilter<TInputImage, TOutputImage>::PrintSelf(std::ostream & os, Indent indent) const
{
  Superclass::PrintSelf(os, indent);
  os << indent << "Tasks:";
  for (const rm_task & t : m_Tasks)
  {
    os << ' ' << t.name << (t.kind == RM_TASK_BINARY ? " (binary)" : " (regression)");
  }
  os << std::endl << indent << "Thresholds:";
  for (double t : m_Thresholds)
  {
    os << ' ' << t;
  }
  os << std::endl << indent << "ThresholdsUsed:";
  for (double t : m_ThresholdsUsed)
  {
    os << ' ' << t;
  }
  os << std::endl;
}

} // end namespace itk

#endif
