#ifndef itkRepModeNonFiniteImageFilter_hxx
#define itkRepModeNonFiniteImageFilter_hxx

#include <cmath>
#include <memory>
#include <vector>

#include "itkImageRegionConstIterator.h"
#include "itkImageRegionIterator.h"
#include "itkRepModeInputStatistics.h"

namespace itk
{

template <typename TImage>
RepModeNonFiniteImageFilter<TImage>::RepModeNonFiniteImageFilter()
{
  this->InPlaceOff();
  this->DynamicMultiThreadingOn();
}

template <typename TImage>
void
RepModeNonFiniteImageFilter<TImage>::SetCensus(const rm_nonfinite_census & census)
{
  m_Census = census;
  m_CensusGiven = true;
  this->Modified();
}

template <typename TImage>
void
RepModeNonFiniteImageFilter<TImage>::ClearCensus()
{
  m_Census = rm_nonfinite_census_init();
  m_CensusGiven = false;
  this->Modified();
}

template <typename TImage>
void
RepModeNonFiniteImageFilter<TImage>::Add(rm_nonfinite_census & census, const ImageType * image,
                                         const RegionType & region)
{
  std::vector<float> run;
  run.reserve(4096);
  for (ImageRegionConstIterator<ImageType> it(image, region); !it.IsAtEnd(); ++it)
  {
    run.push_back(static_cast<float>(it.Get()));
    if (run.size() == run.capacity())
    {
      rm_nonfinite_census_add(&census, run.data(), static_cast<int64_t>(run.size()));
      run.clear();
    }
  }
  rm_nonfinite_census_add(&census, run.data(), static_cast<int64_t>(run.size()));
}

template <typename TImage>
rm_nonfinite_census
RepModeNonFiniteImageFilter<TImage>::Census(const ImageType * image)
{
  rm_nonfinite_census census = rm_nonfinite_census_init();
  Add(census, image, image->GetBufferedRegion());
  return census;
}

template <typename TImage>
rm_nonfinite_census
RepModeNonFiniteImageFilter<TImage>::CensusStreamed(ImageType * output, unsigned int divisions)
{
  // Slabs along the slowest axis, in order: the voxels reach the census in the whole image's buffer order.
  rm_nonfinite_census census = rm_nonfinite_census_init();
  RepModeInputStatistics<ImageType>::VisitSlabs(
    output, divisions, [&](const ImageType * image, const RegionType & piece) { Add(census, image, piece); });
  return census;
}

template <typename TImage>
void
RepModeNonFiniteImageFilter<TImage>::GenerateInputRequestedRegion()
{
  Superclass::GenerateInputRequestedRegion();
  auto * input = const_cast<ImageType *>(this->GetInput());
  if (input && !m_CensusGiven)
  {
    input->SetRequestedRegionToLargestPossibleRegion(); // counted here: the whole input
  }
}

template <typename TImage>
void
RepModeNonFiniteImageFilter<TImage>::BeforeThreadedGenerateData()
{
  if (!m_CensusGiven)
  {
    m_Census = Census(this->GetInput());
  }
  const auto    whole = this->GetInput()->GetLargestPossibleRegion().GetSize();
  const int64_t size[3] = { static_cast<int64_t>(whole[2]), static_cast<int64_t>(whole[1]),
                            static_cast<int64_t>(whole[0]) };
  std::unique_ptr<rm_ctx, void (*)(rm_ctx *)> ctx(rm_ctx_create(1), rm_ctx_free);
  if (!ctx)
  {
    itkExceptionMacro(<< "cannot create repmode's context: out of memory");
  }
  if (rm_nonfinite_resolve(ctx.get(), &m_Census, m_Policy, size, &m_Value) != RM_OK)
  {
    itkExceptionMacro(<< rm_ctx_error(ctx.get()));
  }
}

template <typename TImage>
void
RepModeNonFiniteImageFilter<TImage>::DynamicThreadedGenerateData(const RegionType & region)
{
  using PixelType = typename ImageType::PixelType;
  const auto                          value = static_cast<PixelType>(m_Value);
  ImageRegionConstIterator<ImageType> in(this->GetInput(), region);
  ImageRegionIterator<ImageType>      out(this->GetOutput(), region);
  for (; !in.IsAtEnd(); ++in, ++out)
  {
    const PixelType v = in.Get();
    out.Set(std::isfinite(static_cast<double>(v)) ? v : value);
  }
}

template <typename TImage>
void
RepModeNonFiniteImageFilter<TImage>::PrintSelf(std::ostream & os, Indent indent) const
{
  Superclass::PrintSelf(os, indent);
  os << indent << "Policy: " << rm_nonfinite_policy_name(m_Policy) << std::endl;
  os << indent << "Census: " << (m_CensusGiven ? "given" : "counted over the whole input") << ", " << m_Census.seen
     << " voxels seen, " << m_Census.nonfinite << " non-finite, the first at flat index " << m_Census.first
     << ", finite sum " << m_Census.finite_sum << std::endl;
  os << indent << "Value: " << m_Value << std::endl;
}

} // end namespace itk

#endif
