// The in-process communicator group (see local_communicator.h).
#include "kernels/local_communicator.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>

namespace moegraph {
namespace {

enum class Collective : uint8_t {
  kAllReduceSum,
  kAllGather,
  kAllToAll,
  kAllToAllV,
  kAllReduceMaxHost,
  kAllGatherHost,
};

const char* CollectiveName(Collective c) {
  switch (c) {
    case Collective::kAllReduceSum:
      return "AllReduceSum";
    case Collective::kAllGather:
      return "AllGather";
    case Collective::kAllToAll:
      return "AllToAll";
    case Collective::kAllToAllV:
      return "AllToAllV";
    case Collective::kAllReduceMaxHost:
      return "AllReduceMaxHost";
    case Collective::kAllGatherHost:
      return "AllGatherHost";
  }
  return "?";
}

// What one rank brings to a collective. `bytes` is the per-rank block (the
// reduced or gathered size); AllToAllV uses the count arrays instead.
struct Post {
  Collective op = Collective::kAllReduceSum;
  const void* send = nullptr;
  size_t bytes = 0;
  DType dtype = DType::kU8;
  const int64_t* send_counts = nullptr;
  const int64_t* recv_counts = nullptr;
  size_t elem_bytes = 0;
};

// The group's shared state: a reusable barrier (a generation counter under
// one mutex) and each rank's post of the collective in progress. A post is
// written before the first barrier of a collective and read between its two
// barriers, so it is never rewritten while a peer reads it.
class Rendezvous {
 public:
  Rendezvous(int world_size, std::chrono::milliseconds timeout)
      : world_size_(world_size), timeout_(timeout), arrived_(world_size, 0), posts_(world_size) {}

  int world_size() const { return world_size_; }

  // Posts rank's part and waits for every rank's.
  Status Arrive(int rank, const Post& post) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!broken_.ok()) return broken_;
    posts_[rank] = post;
    return Barrier(lock, rank, post.op);
  }

  // Waits until every rank has finished reading the posts.
  Status Depart(int rank, Collective op) {
    std::unique_lock<std::mutex> lock(mu_);
    return Barrier(lock, rank, op);
  }

  // Valid between Arrive and Depart.
  const Post& post(int rank) const { return posts_[rank]; }

 private:
  Status Barrier(std::unique_lock<std::mutex>& lock, int rank, Collective op) {
    if (!broken_.ok()) return broken_;
    const uint64_t generation = generation_;
    arrived_[rank] = 1;
    if (++num_arrived_ == world_size_) {
      std::fill(arrived_.begin(), arrived_.end(), 0);
      num_arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return Status::Ok();
    }
    cv_.wait_for(lock, timeout_, [&] { return generation_ != generation || !broken_.ok(); });
    if (generation_ != generation) return Status::Ok();
    if (broken_.ok()) {  // this rank's wait ran out first: the group is broken for everyone
      std::string missing;
      for (int r = 0; r < world_size_; ++r) {
        if (arrived_[r]) continue;
        missing += (missing.empty() ? "" : ", ") + std::to_string(r);
      }
      broken_ = FailedPrecondition(
          "deadline exceeded: the local communicator's " + std::string(CollectiveName(op)) +
          " waited " + std::to_string(timeout_.count()) + " ms for rank(s) " + missing + " of " +
          std::to_string(world_size_) + ", which never called it");
      cv_.notify_all();
    }
    return broken_;
  }

  const int world_size_;
  const std::chrono::milliseconds timeout_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t generation_ = 0;
  int num_arrived_ = 0;
  std::vector<char> arrived_;  // [world_size] arrived at the current barrier
  std::vector<Post> posts_;    // [world_size]
  Status broken_;
};

template <typename T>
void SumInto(T* acc, const void* src, size_t count) {
  const T* s = static_cast<const T*>(src);
  for (size_t i = 0; i < count; ++i)
    acc[i] += s[i];
}

class LocalCommunicator : public Communicator {
 public:
  LocalCommunicator(std::shared_ptr<Rendezvous> group, int rank)
      : group_(std::move(group)), rank_(rank) {}

  int rank() const override { return rank_; }
  int world_size() const override { return group_->world_size(); }
  const char* kind() const override { return "local"; }

  Status AllReduceSum(const void* send, void* recv, size_t count, DType dtype,
                      void* stream) override {
    if (dtype != DType::kF32 && dtype != DType::kI32 && dtype != DType::kI64) {
      return Unimplemented(std::string("the local communicator's AllReduceSum on ") +
                           DTypeName(dtype) + " (it sums f32, i32 and i64)");
    }
    const size_t bytes = count * DTypeBytes(dtype);
    Post post{.op = Collective::kAllReduceSum, .send = send, .bytes = bytes, .dtype = dtype};
    // Every rank sums in rank order, so all get the same bits; into scratch,
    // because recv may be send, which the peers read until Depart.
    return Run(
        post,
        [&] {
          scratch_.assign(bytes, std::byte{0});
          for (int r = 0; r < world_size(); ++r) {
            const void* src = group_->post(r).send;
            switch (dtype) {
              case DType::kF32:
                SumInto(reinterpret_cast<float*>(scratch_.data()), src, count);
                break;
              case DType::kI32:
                SumInto(reinterpret_cast<int32_t*>(scratch_.data()), src, count);
                break;
              default:
                SumInto(reinterpret_cast<int64_t*>(scratch_.data()), src, count);
                break;
            }
          }
        },
        [&] { CopyBytes(recv, scratch_.data(), bytes); });
  }

  Status AllGather(const void* send, void* recv, size_t count, DType dtype, void* stream) override {
    if (DTypeBytes(dtype) == 0) {
      return Unimplemented(std::string("the local communicator's AllGather on ") +
                           DTypeName(dtype));
    }
    return Gather(Collective::kAllGather, send, recv, count * DTypeBytes(dtype), dtype);
  }

  Status AllGatherHost(const void* send, void* recv, size_t bytes) override {
    return Gather(Collective::kAllGatherHost, send, recv, bytes, DType::kU8);
  }

  Status AllToAll(const void* send, void* recv, size_t count, DType dtype, void* stream) override {
    if (DTypeBytes(dtype) == 0) {
      return Unimplemented(std::string("the local communicator's AllToAll on ") + DTypeName(dtype));
    }
    const size_t block = count * DTypeBytes(dtype);
    Post post{.op = Collective::kAllToAll, .send = send, .bytes = block, .dtype = dtype};
    return Run(post, [&] {
      for (int r = 0; r < world_size(); ++r) {
        CopyBytes(static_cast<std::byte*>(recv) + r * block,
                  static_cast<const std::byte*>(group_->post(r).send) + rank_ * block, block);
      }
    });
  }

  Status AllToAllV(const void* send, const int64_t* send_counts, void* recv,
                   const int64_t* recv_counts, size_t elem_bytes, void* stream) override {
    Post post{.op = Collective::kAllToAllV,
              .send = send,
              .send_counts = send_counts,
              .recv_counts = recv_counts,
              .elem_bytes = elem_bytes};
    return Run(post, [&] {
      size_t recv_offset = 0;
      for (int r = 0; r < world_size(); ++r) {
        const Post& peer = group_->post(r);
        size_t send_offset = 0;  // where the peer's block for this rank starts
        for (int d = 0; d < rank_; ++d)
          send_offset += static_cast<size_t>(peer.send_counts[d]);
        const size_t bytes = static_cast<size_t>(recv_counts[r]) * elem_bytes;
        CopyBytes(static_cast<std::byte*>(recv) + recv_offset,
                  static_cast<const std::byte*>(peer.send) + send_offset * elem_bytes, bytes);
        recv_offset += bytes;
      }
    });
  }

  Status AllReduceMaxHost(int64_t* values, size_t count) override {
    Post post{.op = Collective::kAllReduceMaxHost,
              .send = values,
              .bytes = count * sizeof(int64_t),
              .dtype = DType::kI64};
    return Run(
        post,
        [&] {
          scratch_.resize(count * sizeof(int64_t));
          int64_t* max = reinterpret_cast<int64_t*>(scratch_.data());
          std::copy(values, values + count, max);
          for (int r = 0; r < world_size(); ++r) {
            const int64_t* peer = static_cast<const int64_t*>(group_->post(r).send);
            for (size_t i = 0; i < count; ++i)
              max[i] = std::max(max[i], peer[i]);
          }
        },
        [&] { CopyBytes(values, scratch_.data(), count * sizeof(int64_t)); });
  }

 private:
  static void CopyBytes(void* dst, const void* src, size_t bytes) {
    if (bytes > 0 && dst != src) std::memmove(dst, src, bytes);
  }

  Status Gather(Collective op, const void* send, void* recv, size_t bytes, DType dtype) {
    Post post{.op = op, .send = send, .bytes = bytes, .dtype = dtype};
    return Run(post, [&] {
      for (int r = 0; r < world_size(); ++r)
        CopyBytes(static_cast<std::byte*>(recv) + r * bytes, group_->post(r).send, bytes);
    });
  }

  // Every rank's post must be the same collective with the same sizes; for
  // AllToAllV, counts that agree pairwise. Each rank checks the whole group,
  // so all ranks reach the same verdict.
  Status CheckPosts(const Post& mine) const {
    const int world = world_size();
    for (int r = 0; r < world; ++r) {
      const Post& peer = group_->post(r);
      if (peer.op != mine.op || peer.bytes != mine.bytes || peer.dtype != mine.dtype ||
          peer.elem_bytes != mine.elem_bytes) {
        return InvalidArgument("the local communicator's ranks disagree: rank " +
                               std::to_string(rank_) + " called " + CollectiveName(mine.op) +
                               " with " + std::to_string(mine.bytes + mine.elem_bytes) +
                               " bytes, rank " + std::to_string(r) + " " + CollectiveName(peer.op) +
                               " with " + std::to_string(peer.bytes + peer.elem_bytes));
      }
    }
    if (mine.op != Collective::kAllToAllV) return Status::Ok();
    for (int a = 0; a < world; ++a) {
      for (int b = 0; b < world; ++b) {
        const int64_t sent = group_->post(a).send_counts[b];
        const int64_t received = group_->post(b).recv_counts[a];
        if (sent < 0 || sent != received) {
          return InvalidArgument("the local communicator's AllToAllV counts disagree: rank " +
                                 std::to_string(a) + " sends " + std::to_string(sent) +
                                 " elements to rank " + std::to_string(b) + ", which expects " +
                                 std::to_string(received));
        }
      }
    }
    return Status::Ok();
  }

  // One collective: post, check, `copy` from the peers' buffers, wait until
  // every rank is done reading, then `finish` (writes that may alias a posted
  // send buffer).
  template <typename Copy, typename Finish>
  Status Run(const Post& post, Copy copy, Finish finish) {
    MG_RETURN_IF_ERROR(group_->Arrive(rank_, post));
    const Status checked = CheckPosts(post);
    if (checked.ok()) copy();
    MG_RETURN_IF_ERROR(group_->Depart(rank_, post.op));
    if (!checked.ok()) return checked;
    finish();
    return Status::Ok();
  }
  template <typename Copy>
  Status Run(const Post& post, Copy copy) {
    return Run(post, copy, [] {});
  }

  std::shared_ptr<Rendezvous> group_;
  const int rank_;
  std::vector<std::byte> scratch_;  // reductions, reused across calls
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> MakeLocalGroup(int world_size,
                                                          std::chrono::milliseconds timeout) {
  std::vector<std::unique_ptr<Communicator>> ranks;
  if (world_size < 1) return ranks;
  auto group = std::make_shared<Rendezvous>(world_size, timeout);
  for (int r = 0; r < world_size; ++r)
    ranks.push_back(std::make_unique<LocalCommunicator>(group, r));
  return ranks;
}

}  // namespace moegraph
