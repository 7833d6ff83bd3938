// Eager interpretation of graphs.
#include "interpreter/interpreter.h"

#include <algorithm>

#include "ir/op_registry.h"
#include "kernels/cpu/dispatch.h"
#include "support/strings.h"

namespace moegraph {

int64_t HostTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

StatusOr<std::vector<int64_t>> ConcreteShape(const Type& type,
                                             const std::map<std::string, int64_t>& symbols) {
  std::vector<int64_t> shape;
  for (const Dim& d : type.dims) {
    if (d.is_static()) {
      shape.push_back(d.size);
      continue;
    }
    auto it = symbols.find(d.symbol);
    if (it == symbols.end()) {
      return InvalidArgument("no value bound for symbol '" + d.symbol + "' in " + type.ToString());
    }
    shape.push_back(it->second);
  }
  return shape;
}

namespace {

TensorArg ArgOf(HostTensor& t) {
  TensorArg arg;
  arg.data = t.bytes.data();
  arg.dtype = t.dtype;
  arg.rank = static_cast<int>(t.shape.size());
  for (int i = 0; i < arg.rank; ++i)
    arg.shape[i] = t.shape[i];
  return arg;
}

}  // namespace

StatusOr<std::vector<HostTensor>> InterpretGraph(const Graph& graph,
                                                 const std::map<std::string, int64_t>& symbols,
                                                 const WeightArgs& weights,
                                                 const std::vector<TensorArg>& inputs,
                                                 const ForwardMetaView& meta, const KvCacheView& kv,
                                                 int num_threads) {
  std::vector<TensorArg> args(graph.values().size());
  std::vector<HostTensor> storage(graph.values().size());
  if (inputs.size() + 1 != graph.inputs().size()) {
    return InvalidArgument("graph @" + graph.name() + " takes " +
                           std::to_string(graph.inputs().size() - 1) + " data inputs, got " +
                           std::to_string(inputs.size()));
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    const ValueId id = graph.inputs()[i + 1];
    MG_ASSIGN_OR_RETURN(std::vector<int64_t> shape, ConcreteShape(graph.type(id), symbols));
    const TensorArg& in = inputs[i];
    if (in.rank != static_cast<int>(shape.size()) || in.dtype != graph.type(id).dtype ||
        !std::equal(shape.begin(), shape.end(), in.shape)) {
      return InvalidArgument("input %" + graph.value(id).name + " must be " +
                             graph.type(id).ToString() + " with " + ShapeString(shape));
    }
    args[id] = in;
  }
  for (const Op& op : graph.ops()) {
    if (op.def->Has(kWeight)) {
      const TensorArg* w = weights.Find(op.results[0]);
      if (!w) return NotFound("weight '" + op.StringAttr("name") + "' is not bound");
      args[op.results[0]] = *w;
      continue;
    }
    const KernelFn kernel = CpuReferenceKernel(op.name());
    if (!kernel) return Unimplemented("op '" + op.name() + "' has no CPU kernel");
    std::vector<TensorArg> in, out;
    for (size_t i = op.def->num_meta_operands(); i < op.operands.size(); ++i) {
      in.push_back(args[op.operands[i]]);
    }
    for (ValueId r : op.results) {
      HostTensor& t = storage[r];
      t.dtype = graph.type(r).dtype;
      MG_ASSIGN_OR_RETURN(t.shape, ConcreteShape(graph.type(r), symbols));
      if (t.shape.size() > static_cast<size_t>(kMaxRank)) {
        return Unimplemented("'" + op.name() + "' result has rank above " +
                             std::to_string(kMaxRank));
      }
      t.bytes.assign(static_cast<size_t>(t.numel()) * DTypeBytes(t.dtype), std::byte{0});
      args[r] = ArgOf(t);
      out.push_back(args[r]);
    }
    KernelArgs call;
    call.meta = op.def->Has(kNeedsForwardMeta) ? &meta : nullptr;
    call.kv = &kv;
    call.in = in.data();
    call.num_in = static_cast<int>(in.size());
    call.out = out.data();
    call.num_out = static_cast<int>(out.size());
    call.num_threads = num_threads;
    if (op.def->params) {
      if (op.def->params->size > kMaxKernelParamBytes) {
        return Internal("'" + op.name() + "': " + op.def->params->type_name +
                        " does not fit in KernelArgs::params");
      }
      const KernelParams params = PackKernelParams(op);
      SetParamsFromWire(call, *op.def->params, params.ints.data(), params.floats.data());
    }
    kernel(call);
  }
  std::vector<HostTensor> results;
  for (ValueId out : graph.outputs())
    results.push_back(std::move(storage[out]));
  return results;
}

EagerRunner::EagerRunner(const Graph& graph, const WeightArgs& weights, KvCache kv_cache,
                         int32_t max_tokens, int32_t max_seqs, int num_threads)
    : graph_(graph),
      weights_(weights),
      kv_(std::move(kv_cache)),
      meta_(max_tokens, max_seqs, static_cast<int32_t>(kv_.config().num_blocks)),
      num_threads_(num_threads) {}

StatusOr<HostTensor> EagerRunner::Step(const std::vector<SequenceStep>& batch) {
  int32_t num_tokens = 0;
  for (const SequenceStep& s : batch) {
    MG_RETURN_IF_ERROR(kv_.Reserve(s.seq_id, s.num_cached + static_cast<int64_t>(s.tokens.size())));
    num_tokens += static_cast<int32_t>(s.tokens.size());
  }
  const int32_t num_seqs = static_cast<int32_t>(batch.size());
  MG_RETURN_IF_ERROR(meta_.Fill(batch, num_tokens, num_seqs, kv_));
  TensorArg tokens;
  tokens.data = const_cast<int32_t*>(meta_.tokens());
  tokens.dtype = DType::kI32;
  tokens.rank = 1;
  tokens.shape[0] = num_tokens;
  MG_ASSIGN_OR_RETURN(std::vector<HostTensor> outputs,
                      InterpretGraph(graph_, {{"T", num_tokens}, {"B", num_seqs}}, weights_,
                                     {tokens}, meta_.view(), kv_.view(), num_threads_));
  return std::move(outputs[0]);
}

}  // namespace moegraph
