/* The statistics of repmode's input normalization (docs/network.md §1.2): the mean and the population standard
 * deviation of a whole volume, in double, in two passes over the voxels in buffer order, exactly as the repmode
 * tool computes them when it trains and evaluates, so a prediction normalized with them matches bit for bit.
 *
 * Compute() reads an image held in memory; ComputeStreamed() reads the output of a pipeline (e.g. an
 * itk::ImageFileReader) slab by slab along its slowest axis, twice, so the memory is one slab whatever the size.
 */
#ifndef itkRepModeInputStatistics_h
#define itkRepModeInputStatistics_h

#include <cmath>

#include "itkImageRegionConstIterator.h"
#include "itkImageRegionSplitterSlowDimension.h"

namespace itk
{

/** \class RepModeInputStatistics
 * \brief Mean and population standard deviation of a whole scalar image, in memory or streamed.
 */
template <typename TImage>
class RepModeInputStatistics
{
public:
  using RegionType = typename TImage::RegionType;

  /** Over the buffered region of an image in memory. */
  static void
  Compute(const TImage * image, double & mean, double & standardDeviation)
  {
    const RegionType region = image->GetBufferedRegion();
    const double     n = static_cast<double>(region.GetNumberOfPixels());
    double           sum = 0.0, squares = 0.0;
    Add(image, region, 0.0, false, sum);
    mean = sum / n;
    Add(image, region, mean, true, squares);
    standardDeviation = std::sqrt(squares / n);
  }

  /** Over the largest possible region of a pipeline's output, updated in `divisions` slabs, twice. */
  static void
  ComputeStreamed(TImage * output, unsigned int divisions, double & mean, double & standardDeviation)
  {
    output->UpdateOutputInformation();
    const double n = static_cast<double>(output->GetLargestPossibleRegion().GetNumberOfPixels());
    auto         pass = [&](double centre, bool squares) {
      double total = 0.0;
      VisitSlabs(output, divisions, [&](const TImage * image, const RegionType & piece) {
        Add(image, piece, centre, squares, total);
      });
      return total;
    };
    mean = pass(0.0, false) / n;
    standardDeviation = std::sqrt(pass(mean, true) / n);
  }

  /** Updates a pipeline's output slab by slab along its slowest axis (`divisions` pieces of its largest possible
   * region, in order) and calls visit(output, slab) after each: one pass over the volume, one slab in memory. */
  template <typename TVisit>
  static void
  VisitSlabs(TImage * output, unsigned int divisions, TVisit && visit)
  {
    output->UpdateOutputInformation();
    const RegionType whole = output->GetLargestPossibleRegion();
    auto             splitter = ImageRegionSplitterSlowDimension::New();
    const unsigned   pieces = splitter->GetNumberOfSplits(whole, divisions);
    for (unsigned i = 0; i < pieces; ++i)
    {
      RegionType piece = whole;
      splitter->GetSplit(i, pieces, piece);
      output->SetRequestedRegion(piece);
      output->Update();
      visit(static_cast<const TImage *>(output), piece);
    }
  }

private:
  /** Adds v, or (v - centre)² with squares, over the region in buffer order to a running total, so that slabs
   * taken in order sum exactly as the whole volume does. */
  static void
  Add(const TImage * image, const RegionType & region, double centre, bool squares, double & total)
  {
    for (ImageRegionConstIterator<TImage> it(image, region); !it.IsAtEnd(); ++it)
    {
      const double v = static_cast<double>(it.Get());
      total += squares ? (v - centre) * (v - centre) : v;
    }
  }
};

} // end namespace itk

#endif
