/* The PyTorch reference of the module's tests: tensors of tests/fixtures/parity_small.io.safetensors (float32,
 * row-major, docs/model-file.md §1 for the container), and ITK images made from them. */
#ifndef repmodeTestFixture_h
#define repmodeTestFixture_h

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "itkImage.h"

namespace repmode_test
{

struct Tensor
{
  std::vector<int64_t> shape;
  std::vector<float>   data;
};

/** The numbers of `key`'s JSON array ("[a,b,...]") in the object that starts at `from`. */
inline std::vector<int64_t>
ArrayAfter(const std::string & header, size_t from, const std::string & key)
{
  const size_t at = header.find("\"" + key + "\"", from);
  if (at == std::string::npos)
  {
    throw std::runtime_error("the fixture's header lacks " + key);
  }
  std::vector<int64_t> values;
  size_t               p = header.find('[', at) + 1;
  while (header[p] != ']')
  {
    size_t used = 0;
    values.push_back(std::stoll(header.substr(p), &used));
    p += used;
    if (header[p] == ',')
    {
      ++p;
    }
  }
  return values;
}

/** The float32 tensor `name` of a safetensors file: an 8-byte header length, the JSON header, then the data. */
inline Tensor
ReadTensor(const std::string & path, const std::string & name)
{
  std::ifstream in(path, std::ios::binary);
  uint64_t      length = 0;
  if (!in.read(reinterpret_cast<char *>(&length), 8))
  {
    throw std::runtime_error("cannot read " + path);
  }
  std::string header(length, '\0');
  in.read(&header[0], static_cast<std::streamsize>(length));
  const size_t entry = header.find("\"" + name + "\":");
  if (entry == std::string::npos || header.find("\"F32\"", entry) > header.find('}', entry))
  {
    throw std::runtime_error(path + " has no float32 tensor " + name);
  }
  Tensor                     t;
  t.shape = ArrayAfter(header, entry, "shape");
  const std::vector<int64_t> offsets = ArrayAfter(header, entry, "data_offsets");
  t.data.resize(static_cast<size_t>(offsets[1] - offsets[0]) / sizeof(float));
  in.seekg(static_cast<std::streamoff>(8 + length + offsets[0]));
  if (!in.read(reinterpret_cast<char *>(t.data.data()), offsets[1] - offsets[0]))
  {
    throw std::runtime_error(path + " is too short for " + name);
  }
  return t;
}

using ImageType = itk::Image<float, 3>;

/** Sample `n` of an (N, 1, Z, Y, X) tensor as an image of size (X, Y, Z). */
inline ImageType::Pointer
SampleImage(const Tensor & t, int64_t n)
{
  ImageType::SizeType size;
  size[0] = static_cast<itk::SizeValueType>(t.shape[4]);
  size[1] = static_cast<itk::SizeValueType>(t.shape[3]);
  size[2] = static_cast<itk::SizeValueType>(t.shape[2]);
  auto image = ImageType::New();
  image->SetRegions(size);
  image->Allocate();
  const size_t voxels = size[0] * size[1] * size[2];
  std::copy_n(t.data.begin() + static_cast<std::ptrdiff_t>(n * voxels), voxels, image->GetBufferPointer());
  return image;
}

} // namespace repmode_test

#endif
