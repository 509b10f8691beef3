/* The parameters of repmode's input normalization (repmode/normalize.h) over a whole image, with a model's method,
 * equal bit for bit to what the C core computes on the same voxels in memory (rm_normalization_compute), so a
 * prediction normalized with them matches the command line's:
 *   - z-score: itk::RepModeInputStatistics (mean and population sd, in buffer order);
 *   - percentile: exact order statistics of the voxels as float, by radix selection on their order-preserving
 *     32-bit keys (rm_norm_key). Pass 1 counts the top 16 bits of every key (65536 counters); the counts tell in
 *     which bucket each wanted rank lies and its rank inside it. Pass 2 counts the low 16 bits of the keys in those
 *     buckets (at most four, usually two, of 65536 counters each), which gives every wanted key exactly. Two reads
 *     of the volume whatever its values, no sorting, and the memory of one slab.
 *
 * Compute() reads an image held in memory; ComputeStreamed() reads the output of a pipeline (e.g. an
 * itk::ImageFileReader) slab by slab along its slowest axis, twice, so the memory is one slab whatever the size.
 * Percentiles need finite voxels: NaN or infinity is an itk::ExceptionObject.
 */
#ifndef itkRepModeNormalization_h
#define itkRepModeNormalization_h

#include <algorithm>
#include <cstdint>
#include <vector>

#include "itkImageRegionConstIterator.h"
#include "itkMacro.h"
#include "itkRepModeInputStatistics.h"
#include "repmode/normalize.h"

namespace itk
{

/** \class RepModeNormalization
 * \brief Normalization parameters (offset, scale, clip) of a whole scalar image, in memory or streamed.
 */
template <typename TImage>
class RepModeNormalization
{
public:
  using RegionType = typename TImage::RegionType;

  /** Over the buffered region of an image in memory. */
  static rm_norm_params
  Compute(const TImage * image, const rm_normalization & method)
  {
    if (method.method == RM_NORM_PERCENTILE)
    {
      const RegionType region = image->GetBufferedRegion();
      return Percentile(method, region.GetNumberOfPixels(), [&](auto && count) { Count(image, region, count); });
    }
    double mean, sd;
    RepModeInputStatistics<TImage>::Compute(image, mean, sd);
    return rm_norm_params_zscore(mean, sd);
  }

  /** Over the largest possible region of a pipeline's output, updated in `divisions` slabs, twice. */
  static rm_norm_params
  ComputeStreamed(TImage * output, unsigned int divisions, const rm_normalization & method)
  {
    if (method.method == RM_NORM_PERCENTILE)
    {
      output->UpdateOutputInformation();
      return Percentile(method, output->GetLargestPossibleRegion().GetNumberOfPixels(), [&](auto && count) {
        RepModeInputStatistics<TImage>::VisitSlabs(
          output, divisions, [&](const TImage * image, const RegionType & slab) { Count(image, slab, count); });
      });
    }
    double mean, sd;
    RepModeInputStatistics<TImage>::ComputeStreamed(output, divisions, mean, sd);
    return rm_norm_params_zscore(mean, sd);
  }

private:
  static constexpr size_t Buckets = size_t{ 1 } << 16;

  /** Calls count(key) for every voxel of the region. */
  template <typename TCount>
  static void
  Count(const TImage * image, const RegionType & region, TCount & count)
  {
    for (ImageRegionConstIterator<TImage> it(image, region); !it.IsAtEnd(); ++it)
    {
      count(rm_norm_key(static_cast<float>(it.Get())));
    }
  }

  /** The percentile parameters of n voxels; pass(count) calls count(key) once for every voxel, and is called
   * twice. */
  template <typename TPass>
  static rm_norm_params
  Percentile(const rm_normalization & method, SizeValueType n, TPass && pass)
  {
    std::vector<uint64_t> counts(Buckets, 0);
    bool                  finite = true;
    uint64_t              seen = 0;
    auto                  top = [&](uint32_t key) {
      finite = finite && rm_norm_key_finite(key);
      ++counts[key >> 16];
      ++seen;
    };
    pass(top);
    if (!finite)
    {
      itkGenericExceptionMacro(<< "percentile normalization needs finite intensities: the image holds NaN or "
                                  "infinite voxels");
    }
    if (seen != static_cast<uint64_t>(n) || n == 0)
    {
      itkGenericExceptionMacro(<< "percentile normalization: read " << seen << " voxels of an image of " << n);
    }
    int64_t ranks[4];
    rm_normalization_ranks(&method, static_cast<int64_t>(n), ranks);
    uint32_t              bucket[4];
    uint64_t              within[4]; // the rank among the keys of its bucket
    std::vector<uint32_t> chosen;    // the distinct buckets, each with its histogram of low bits
    for (unsigned r = 0; r < 4; ++r)
    {
      uint64_t below = 0;
      uint32_t b = 0;
      while (below + counts[b] <= static_cast<uint64_t>(ranks[r]))
      {
        below += counts[b++];
      }
      bucket[r] = b;
      within[r] = static_cast<uint64_t>(ranks[r]) - below;
      if (std::find(chosen.begin(), chosen.end(), b) == chosen.end())
      {
        chosen.push_back(b);
      }
    }
    counts.assign(chosen.size() * Buckets, 0); // pass 1's counts are spent: their memory holds pass 2's
    auto low = [&](uint32_t key) {
      for (size_t c = 0; c < chosen.size(); ++c)
      {
        if (key >> 16 == chosen[c])
        {
          ++counts[c * Buckets + (key & 0xffffu)];
          break;
        }
      }
    };
    pass(low);
    float at[4];
    for (unsigned r = 0; r < 4; ++r)
    {
      const size_t     c = static_cast<size_t>(std::find(chosen.begin(), chosen.end(), bucket[r]) - chosen.begin());
      const uint64_t * h = counts.data() + c * Buckets;
      uint64_t         below = 0;
      uint32_t         l = 0;
      while (l + 1 < Buckets && below + h[l] <= within[r]) // bounded should the image change between passes
      {
        below += h[l++];
      }
      at[r] = rm_norm_key_value(bucket[r] << 16 | l);
    }
    return rm_norm_params_percentile(&method, static_cast<int64_t>(n), at);
  }
};

} // end namespace itk

#endif
