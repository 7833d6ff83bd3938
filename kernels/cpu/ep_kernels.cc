// Reference expert-parallel kernels: ep_dispatch sends each (token, expert)
// pair's row to the rank owning the expert, ep_combine brings the expert
// outputs back and reduces them per token (contracts in reference_kernels.h).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/communicator.h"
#include "kernels/cpu/reference_kernels.h"
#include "kernels/cpu/thread_pool.h"

namespace moegraph {
namespace {

using ref_detail::NumRows;
using ref_detail::RowSize;

// The aborts below print their message through KernelContractViolation,
// which takes a C string: the message is built first.
[[noreturn]] void EpViolation(const char* kernel, const EpParams& p, const std::string& what) {
  const std::string message =
      "rank " + std::to_string(p.ep_rank) + " of " + std::to_string(p.ep_size) + ": " + what;
  KernelContractViolation(kernel, message.c_str());
}

// The group must be the one the plan was compiled for.
Communicator& GroupOf(const KernelArgs& args, const EpParams& p, const char* kernel) {
  if (args.comm == nullptr) EpViolation(kernel, p, "no communicator (KernelArgs::comm is null)");
  if (args.comm->world_size() != p.ep_size || args.comm->rank() != p.ep_rank) {
    EpViolation(kernel, p,
                std::string("the ") + args.comm->kind() + " communicator is rank " +
                    std::to_string(args.comm->rank()) + " of " +
                    std::to_string(args.comm->world_size()) +
                    ", not the plan's ep_rank of ep_size");
  }
  return *args.comm;
}

void CheckCollective(const Status& status, const char* kernel, const EpParams& p,
                     const char* collective) {
  if (!status.ok()) EpViolation(kernel, p, std::string(collective) + ": " + status.ToString());
}

// Rows [0, result) of a [rows, ...] token tensor are real tokens.
int64_t NumRealTokens(const KernelArgs& args, int64_t rows) {
  if (args.meta == nullptr) return rows;
  return std::clamp<int64_t>(args.meta->num_tokens, 0, rows);
}

// Per-call scratch of the calling thread (a rank's thread in an in-process
// group): grows to the largest call, never shrinks.
struct EpScratch {
  std::vector<int64_t> send_counts, recv_counts, starts;
  std::vector<int32_t> counts_out, counts_in;
  std::vector<float> rows;
  std::vector<int32_t> ids;
};
EpScratch& Scratch() {
  thread_local EpScratch scratch;
  return scratch;
}

}  // namespace

void RefEpDispatch(const KernelArgs& args) {
  constexpr const char* kKernel = "ep_dispatch";
  const EpParams& p = Params<EpParams>(args);
  const TensorArg& x_arg = args.in[0];
  const TensorArg& ids_arg = args.in[1];
  const int64_t num_rows = NumRows(x_arg), hidden = RowSize(x_arg);
  const int64_t top_k = RowSize(ids_arg), num_pairs = num_rows * top_k;
  const int64_t world = p.ep_size, capacity = p.capacity;
  MG_KERNEL_CONTRACT(
      args.num_in == 2 && args.num_out == 3 && x_arg.dtype == DType::kF32 &&
          ids_arg.dtype == DType::kI32 && NumRows(ids_arg) == num_rows &&
          NumRows(args.out[0]) == capacity && RowSize(args.out[0]) == hidden &&
          args.out[1].numel() == capacity && args.out[2].numel() == num_pairs + 2 * world,
      kKernel, "x [T, H] f32, ids [T, k] i32 -> rx [C, H], rids [C, 1], layout [T * k + 2W]");
  Communicator& comm = GroupOf(args, p, kKernel);
  const float* x = x_arg.as<const float>();
  const int32_t* ids = ids_arg.as<const int32_t>();
  float* rx = args.out[0].as<float>();
  int32_t* rids = args.out[1].as<int32_t>();
  int32_t* layout = args.out[2].as<int32_t>();
  const int64_t num_real_pairs = NumRealTokens(args, num_rows) * top_k;
  auto owner = [&](int64_t pair) -> int64_t {
    const int32_t id = ids[pair];
    if (pair >= num_real_pairs || id < 0 || id >= p.num_experts) return -1;
    return ExpertOwner(p.num_experts, world, id);
  };

  // 1. Send order: by destination rank, then by pair; layout[pair] = its slot.
  EpScratch& s = Scratch();
  s.send_counts.assign(world, 0);
  for (int64_t pair = 0; pair < num_pairs; ++pair) {
    const int64_t dest = owner(pair);
    if (dest >= 0) ++s.send_counts[dest];
  }
  s.starts.assign(world, 0);
  for (int64_t d = 1; d < world; ++d)
    s.starts[d] = s.starts[d - 1] + s.send_counts[d - 1];
  const int64_t num_sent = world > 0 ? s.starts[world - 1] + s.send_counts[world - 1] : 0;
  s.rows.resize(num_sent * hidden);
  s.ids.resize(num_sent);
  for (int64_t pair = 0; pair < num_pairs; ++pair) {
    const int64_t dest = owner(pair);
    if (dest < 0) {
      layout[pair] = -1;
      continue;
    }
    const int64_t slot = s.starts[dest]++;
    layout[pair] = static_cast<int32_t>(slot);
    s.ids[slot] = static_cast<int32_t>(ids[pair] - ExpertRangeOf(p.num_experts, world, dest).first);
  }
  ParallelFor(args.num_threads, num_pairs, [&](int64_t begin, int64_t end) {
    for (int64_t pair = begin; pair < end; ++pair) {
      if (layout[pair] < 0) continue;
      const float* row = x + (pair / top_k) * hidden;
      std::copy(row, row + hidden, s.rows.data() + layout[pair] * hidden);
    }
  });

  // 2. Counts, then the rows and their local expert ids.
  s.counts_out.resize(world);
  s.counts_in.assign(world, 0);
  for (int64_t d = 0; d < world; ++d)
    s.counts_out[d] = static_cast<int32_t>(s.send_counts[d]);
  CheckCollective(comm.AllToAll(s.counts_out.data(), s.counts_in.data(), 1, DType::kI32, nullptr),
                  kKernel, p, "AllToAll of the pair counts");
  s.recv_counts.resize(world);
  int64_t num_received = 0;
  for (int64_t r = 0; r < world; ++r) {
    s.recv_counts[r] = s.counts_in[r];
    num_received += s.counts_in[r];
  }
  if (num_received > capacity) {
    EpViolation(kKernel, p,
                "received " + std::to_string(num_received) + " pairs, more than capacity " +
                    std::to_string(capacity) + " (the compiler's capacity must cover every key)");
  }
  CheckCollective(comm.AllToAllV(s.rows.data(), s.send_counts.data(), rx, s.recv_counts.data(),
                                 hidden * sizeof(float), nullptr),
                  kKernel, p, "AllToAllV of the pair rows");
  CheckCollective(comm.AllToAllV(s.ids.data(), s.send_counts.data(), rids, s.recv_counts.data(),
                                 sizeof(int32_t), nullptr),
                  kKernel, p, "AllToAllV of the local expert ids");

  // 3. Rows past the received ones are padding.
  std::fill(rx + num_received * hidden, rx + capacity * hidden, 0.0f);
  std::fill(rids + num_received, rids + capacity, -1);
  for (int64_t r = 0; r < world; ++r) {
    layout[num_pairs + r] = static_cast<int32_t>(s.send_counts[r]);
    layout[num_pairs + world + r] = static_cast<int32_t>(s.recv_counts[r]);
  }
}

void RefEpCombine(const KernelArgs& args) {
  constexpr const char* kKernel = "ep_combine";
  const EpParams& p = Params<EpParams>(args);
  const TensorArg& yp_arg = args.in[0];
  const TensorArg& w_arg = args.in[3];
  const int64_t hidden = RowSize(yp_arg), capacity = p.capacity, world = p.ep_size;
  const int64_t num_rows = NumRows(w_arg), top_k = RowSize(w_arg), num_pairs = num_rows * top_k;
  const int64_t num_local = p.local().count;
  MG_KERNEL_CONTRACT(args.num_in == 5 && args.num_out == 1 && yp_arg.dtype == DType::kF32 &&
                         NumRows(yp_arg) == capacity && args.in[1].numel() == capacity &&
                         args.in[1].dtype == DType::kI32 && args.in[2].numel() == num_local + 1 &&
                         args.in[2].dtype == DType::kI32 && w_arg.dtype == DType::kF32 &&
                         args.in[4].dtype == DType::kI32 &&
                         args.in[4].numel() == num_pairs + 2 * world &&
                         NumRows(args.out[0]) == num_rows && RowSize(args.out[0]) == hidden,
                     kKernel,
                     "yp [C, H], sorted [C], offsets [E_local + 1], w [T, k], layout [T * k + 2W] "
                     "-> y [T, H]");
  Communicator& comm = GroupOf(args, p, kKernel);
  const float* yp = yp_arg.as<const float>();
  const int32_t* sorted = args.in[1].as<const int32_t>();
  const int32_t* offsets = args.in[2].as<const int32_t>();
  const float* route_weights = w_arg.as<const float>();
  const int32_t* layout = args.in[4].as<const int32_t>();
  float* y = args.out[0].as<float>();

  EpScratch& s = Scratch();
  s.send_counts.resize(world);
  s.recv_counts.resize(world);
  int64_t num_sent = 0, num_received = 0;
  for (int64_t r = 0; r < world; ++r) {
    s.send_counts[r] = layout[num_pairs + r];
    s.recv_counts[r] = layout[num_pairs + world + r];
    num_sent += s.send_counts[r];
    num_received += s.recv_counts[r];
  }
  if (num_received > capacity) {
    EpViolation(kKernel, p,
                "layout says " + std::to_string(num_received) +
                    " pairs were received, more "
                    "than capacity " +
                    std::to_string(capacity));
  }

  // 1. The results in received order: row i is yp[q] for sorted[q] == i.
  // s.rows holds them, then (past them) what comes back.
  s.rows.assign((num_received + num_sent) * hidden, 0.0f);
  float* results = s.rows.data();
  float* returned = s.rows.data() + num_received * hidden;
  const int64_t num_live = std::clamp<int64_t>(offsets[num_local], 0, capacity);
  ParallelFor(args.num_threads, num_live, [&](int64_t begin, int64_t end) {
    for (int64_t q = begin; q < end; ++q) {
      const int64_t i = sorted[q];
      if (i < 0 || i >= num_received) continue;
      std::copy(yp + q * hidden, yp + (q + 1) * hidden, results + i * hidden);
    }
  });

  // 2. Back to the ranks the pairs came from: counts swapped.
  CheckCollective(comm.AllToAllV(results, s.recv_counts.data(), returned, s.send_counts.data(),
                                 hidden * sizeof(float), nullptr),
                  kKernel, p, "AllToAllV of the expert rows");

  // 3. y[t] = sum over slots j, in order, of w[t, j] * returned[layout[t * k + j]]
  // (moe_unpermute_reduce's accumulation: out += w * y from zero).
  const int64_t num_real = NumRealTokens(args, num_rows);
  ParallelFor(args.num_threads, num_rows, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      float* out_row = y + t * hidden;
      std::fill(out_row, out_row + hidden, 0.0f);
      if (t >= num_real) continue;
      for (int64_t j = 0; j < top_k; ++j) {
        const int64_t slot = layout[t * top_k + j];
        if (slot < 0 || slot >= num_sent) continue;
        const float w = route_weights[t * top_k + j];
        const float* y_row = returned + slot * hidden;
        for (int64_t c = 0; c < hidden; ++c)
          out_row[c] += w * y_row[c];
      }
    }
  });
}

}  // namespace moegraph
