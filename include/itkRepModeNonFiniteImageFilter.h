/* itk::RepModeNonFiniteImageFilter: puts a value in place of the non-finite voxels (NaN, ±infinity) of an image,
 * by the policy of repmode/nonfinite.h, so that itk::RepModeImageFilter can take an input that holds some.
 *
 * RM_NONFINITE_REFUSE (the default) throws, naming the count and the first voxel's (x, y, z); RM_NONFINITE_ZERO
 * puts 0; RM_NONFINITE_MEAN puts the mean of the whole image's finite voxels. The count and the mean come from a
 * census of the whole image: Census() or CensusStreamed() (slab by slab, the memory of one slab) computes it, and
 * SetCensus() hands it over so that the filter streams; without one, the filter takes its whole input and counts
 * itself. The same census gives the same value, whole or streamed.
 */
#ifndef itkRepModeNonFiniteImageFilter_h
#define itkRepModeNonFiniteImageFilter_h

#include "itkInPlaceImageFilter.h"
#include "repmode/nonfinite.h"

namespace itk
{

/** \class RepModeNonFiniteImageFilter
 * \brief Replaces the non-finite voxels of a scalar image by the policy's value, or refuses them.
 */
template <typename TImage>
class RepModeNonFiniteImageFilter : public InPlaceImageFilter<TImage, TImage>
{
public:
  ITK_DISALLOW_COPY_AND_MOVE(RepModeNonFiniteImageFilter);

  using Self = RepModeNonFiniteImageFilter;
  using Superclass = InPlaceImageFilter<TImage, TImage>;
  using Pointer = SmartPointer<Self>;
  using ConstPointer = SmartPointer<const Self>;
  using ImageType = TImage;
  using RegionType = typename TImage::RegionType;

  itkNewMacro(Self);
  itkTypeMacro(RepModeNonFiniteImageFilter, InPlaceImageFilter);

  itkSetMacro(Policy, rm_nonfinite_policy);
  itkGetConstMacro(Policy, rm_nonfinite_policy);

  /** The census of the whole input (Census, CensusStreamed); without one the filter counts its whole input. */
  void
  SetCensus(const rm_nonfinite_census & census);
  void
  ClearCensus();
  /** The census the last update used, and the value it put in place of the non-finite voxels. */
  const rm_nonfinite_census &
  GetCensus() const
  {
    return m_Census;
  }
  itkGetConstMacro(Value, float);

  /** Over the buffered region of an image in memory, in buffer order. */
  static rm_nonfinite_census
  Census(const ImageType * image);
  /** Over the largest possible region of a pipeline's output, updated in `divisions` slabs along its slowest axis. */
  static rm_nonfinite_census
  CensusStreamed(ImageType * output, unsigned int divisions);

protected:
  RepModeNonFiniteImageFilter();
  ~RepModeNonFiniteImageFilter() override = default;

  void
  GenerateInputRequestedRegion() override;
  void
  BeforeThreadedGenerateData() override;
  void
  DynamicThreadedGenerateData(const RegionType & region) override;
  void
  PrintSelf(std::ostream & os, Indent indent) const override;

private:
  /** Feeds the voxels of `region` to the census in buffer order. */
  static void
  Add(rm_nonfinite_census & census, const ImageType * image, const RegionType & region);

  rm_nonfinite_policy m_Policy{ RM_NONFINITE_REFUSE };
  rm_nonfinite_census m_Census{ rm_nonfinite_census_init() };
  bool                m_CensusGiven{ false };
  float               m_Value{ 0.0f };
};

} // end namespace itk

#ifndef ITK_MANUAL_INSTANTIATION
#  include "itkRepModeNonFiniteImageFilter.hxx"
#endif

#endif
