// Reference layout kernels: row slices, row concatenation and the
// single-rank all-gather. Rows are copied as bytes, so any dtype works.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/reference_kernels.h"

namespace moegraph {
namespace {

int64_t NumBytes(const TensorArg& t) {
  return t.numel() * static_cast<int64_t>(DTypeBytes(t.dtype));
}

int64_t RowBytes(const TensorArg& t) {
  return ref_detail::RowSize(t) * static_cast<int64_t>(DTypeBytes(t.dtype));
}

}  // namespace

void RefSliceRows(const KernelArgs& args) {
  const SliceRowsParams& params = Params<SliceRowsParams>(args);
  const TensorArg& x = args.in[0];
  const TensorArg& out = args.out[0];
  const int64_t begin = params.begin;
  const int64_t num_rows = ref_detail::NumRows(out);
  const int64_t num_x_rows = RowBytes(x) == RowBytes(out) ? ref_detail::NumRows(x) : 0;
  const int64_t row_bytes = RowBytes(out);
  const auto* src = static_cast<const unsigned char*>(x.data);
  auto* dst = static_cast<unsigned char*>(out.data);
  for (int64_t r = 0; r < num_rows; ++r) {
    const int64_t src_row = begin + r;
    if (src_row >= 0 && src_row < num_x_rows) {
      std::memcpy(dst + r * row_bytes, src + src_row * row_bytes, row_bytes);
    } else {
      std::memset(dst + r * row_bytes, 0, row_bytes);
    }
  }
}

void RefSplitCols(const KernelArgs& args) {
  const SplitColsParams& params = Params<SplitColsParams>(args);
  const int64_t group = params.group, first = params.first, rest = group - first;
  const int64_t num_rows = ref_detail::NumRows(args.in[0]);
  const int64_t cols = ref_detail::RowSize(args.in[0]);
  const int64_t groups = group > 0 ? cols / group : 0;
  MG_KERNEL_CONTRACT(group > 0 && first > 0 && rest > 0 && cols == groups * group &&
                         ref_detail::NumRows(args.out[0]) == num_rows &&
                         ref_detail::NumRows(args.out[1]) == num_rows &&
                         ref_detail::RowSize(args.out[0]) == groups * first &&
                         ref_detail::RowSize(args.out[1]) == groups * rest,
                     "split_cols",
                     "x [R, groups * group] for outs [R, groups * first] and "
                     "[R, groups * (group - first)]");
  const float* x = args.in[0].as<const float>();
  float* a = args.out[0].as<float>();
  float* b = args.out[1].as<float>();
  for (int64_t r = 0; r < num_rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const float* src = x + r * cols + g * group;
      std::memcpy(a + (r * groups + g) * first, src, static_cast<size_t>(first) * 4);
      std::memcpy(b + (r * groups + g) * rest, src + first, static_cast<size_t>(rest) * 4);
    }
  }
}

void RefConcatRows(const KernelArgs& args) {
  const TensorArg& out = args.out[0];
  const int64_t out_bytes = NumBytes(out);
  auto* dst = static_cast<unsigned char*>(out.data);
  int64_t written = 0;
  for (int i = 0; i < args.num_in; ++i) {
    const int64_t bytes = std::min(NumBytes(args.in[i]), out_bytes - written);
    if (bytes > 0) std::memcpy(dst + written, args.in[i].data, bytes);
    written += std::max<int64_t>(bytes, 0);
  }
  if (written < out_bytes) std::memset(dst + written, 0, out_bytes - written);
}

void RefAllGather(const KernelArgs& args) {
  const AllGatherParams& params = Params<AllGatherParams>(args);
  const TensorArg& out = args.out[0];
  const int64_t out_bytes = NumBytes(out);
  const int64_t copied = params.world_size == 1 ? std::min(NumBytes(args.in[0]), out_bytes) : 0;
  if (copied > 0) std::memcpy(out.data, args.in[0].data, copied);
  if (copied < out_bytes)
    std::memset(static_cast<unsigned char*>(out.data) + copied, 0, out_bytes - copied);
}

}  // namespace moegraph
