// Scheduling and sampling.
#include "runtime/generator.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace moegraph {

int32_t SampleToken(const float* logits, int32_t vocab, const SamplingParams& params,
                    std::mt19937_64& rng) {
  if (params.temperature <= 0.0f) {
    return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
  }
  std::vector<int32_t> ids(vocab);
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  size_t keep = params.top_k > 0 ? std::min<size_t>(params.top_k, vocab) : vocab;
  std::vector<double> probs(keep);
  const double max_logit = logits[ids[0]];
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) {
    probs[i] = std::exp((logits[ids[i]] - max_logit) / params.temperature);
    sum += probs[i];
  }
  if (params.top_p < 1.0f) {
    double mass = 0;
    size_t cut = 0;
    while (cut < keep) {
      mass += probs[cut] / sum;
      ++cut;
      if (mass >= params.top_p) break;
    }
    keep = std::max<size_t>(cut, 1);
    probs.resize(keep);
    sum = std::accumulate(probs.begin(), probs.end(), 0.0);
  }
  const double u = std::uniform_real_distribution<double>(0.0, sum)(rng);
  double acc = 0;
  for (size_t i = 0; i < keep; ++i) {
    acc += probs[i];
    if (u < acc) return ids[i];
  }
  return ids[keep - 1];
}

Status ValidateSamplingParams(const SamplingParams& params) {
  if (!std::isfinite(params.temperature) || params.temperature < 0.0f) {
    return InvalidArgument("temperature must be a finite number >= 0 (0 is greedy), got " +
                           std::to_string(params.temperature));
  }
  if (!(params.top_p > 0.0f && params.top_p <= 1.0f)) {  // NaN fails too
    return InvalidArgument("top_p must be in (0, 1], got " + std::to_string(params.top_p));
  }
  if (params.top_k < 0) {
    return InvalidArgument("top_k must be >= 0 (0 is no limit), got " +
                           std::to_string(params.top_k));
  }
  if (params.max_new_tokens < 1) {
    return InvalidArgument("max_new_tokens must be >= 1, got " +
                           std::to_string(params.max_new_tokens));
  }
  return Status::Ok();
}

Generator::Generator(Engine& engine) : engine_(engine) {
  for (const KeyProgram& p : engine.plan().programs) {
    if (p.key.phase == MoePhase::kPrefill) {
      max_prefill_tokens_ = std::max(max_prefill_tokens_, p.key.token_bucket);
      max_prefill_seqs_ = std::max(max_prefill_seqs_, p.key.seq_bucket);
    } else {
      max_decode_seqs_ = std::max(max_decode_seqs_, p.key.seq_bucket);
    }
  }
}

Status Generator::Add(GenerationRequest request) {
  const std::string what = "request " + std::to_string(request.id);
  if (request.prompt.empty()) return InvalidArgument(what + " has an empty prompt");
  const auto same_id = [&](int64_t id) { return id == request.id; };
  if (std::any_of(running_.begin(), running_.end(),
                  [&](const Running& r) { return same_id(r.request.id); }) ||
      std::any_of(waiting_.begin(), waiting_.end(),
                  [&](const GenerationRequest& w) { return same_id(w.id); })) {
    return InvalidArgument("request id " + std::to_string(request.id) + " is already running");
  }
  const int32_t vocab = engine_.plan().model.vocab_size;
  for (int32_t t : request.prompt) {
    if (t < 0 || t >= vocab) {
      return InvalidArgument(what + ": token id " + std::to_string(t) +
                             " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
    }
  }
  MG_RETURN_IF_ERROR(ValidateSamplingParams(request.sampling).WithContext(what));
  if (max_prefill_tokens_ == 0) return FailedPrecondition("the plan has no prefill keys");
  const int64_t max_positions = engine_.plan().model.max_position_embeddings;
  if (static_cast<int64_t>(request.prompt.size()) > max_positions) {
    return InvalidArgument(what + ": its prompt of " + std::to_string(request.prompt.size()) +
                           " tokens does not fit the model's context of " +
                           std::to_string(max_positions) + " positions (max_position_embeddings)");
  }
  const KvCache& kv = engine_.kv_cache();
  const int64_t blocks = MaxBlocks(request);
  if (blocks > kv.config().num_blocks) {
    return InvalidArgument(what + " needs up to " + std::to_string(blocks) +
                           " KV cache blocks of " + std::to_string(kv.config().block_size) +
                           " tokens (a prompt of " + std::to_string(request.prompt.size()) +
                           " tokens and up to " + std::to_string(request.sampling.max_new_tokens) +
                           " new ones), but the whole cache has " +
                           std::to_string(kv.config().num_blocks) +
                           "; give a larger KV cache budget or ask for fewer new tokens");
  }
  order_.push_back(request.id);
  waiting_.push_back(std::move(request));
  return Status::Ok();
}

int64_t Generator::MaxBlocks(const GenerationRequest& request) const {
  const int64_t prompt = static_cast<int64_t>(request.prompt.size());
  const int64_t fed = std::min<int64_t>(prompt + request.sampling.max_new_tokens - 1,
                                        engine_.plan().model.max_position_embeddings);
  return engine_.kv_cache().BlocksFor(std::max(fed, prompt));
}

Status Generator::Admit() {
  const KvCache& kv = engine_.kv_cache();
  // Blocks the running sequences may still take.
  int64_t promised = 0;
  for (const Running& r : running_) {
    const int64_t held = static_cast<int64_t>(kv.BlockTable(r.request.id).size());
    promised += std::max<int64_t>(r.max_blocks - held, 0);
  }
  // Rings the running sequences will still take (one each, at their first step).
  int64_t promised_rings = 0;
  for (const Running& r : running_) {
    if (kv.has_rings() && kv.RingOf(r.request.id) < 0) ++promised_rings;
  }
  while (!waiting_.empty()) {
    const int64_t needed = MaxBlocks(waiting_.front());
    if (needed > kv.num_free_blocks() - promised) break;
    if (kv.has_rings() && promised_rings >= kv.num_free_rings()) break;
    if (kv.has_rings()) ++promised_rings;
    Running r;
    r.rng.seed(waiting_.front().sampling.seed);
    r.request = std::move(waiting_.front());
    r.max_blocks = needed;
    waiting_.pop_front();
    promised += needed;
    running_.push_back(std::move(r));
  }
  if (running_.empty() && !waiting_.empty()) {
    // Only blocks held outside this generator can be in the way.
    return ResourceExhausted("request " + std::to_string(waiting_.front().id) + " needs " +
                             std::to_string(MaxBlocks(waiting_.front())) +
                             " KV cache blocks; only " + std::to_string(kv.num_free_blocks()) +
                             " of " + std::to_string(kv.config().num_blocks) +
                             " are free and no sequence of this generator holds any");
  }
  return Status::Ok();
}

void Generator::Finish(Running& r, bool by_token, bool by_context,
                       std::vector<GenerationResult>& done) {
  done.push_back(GenerationResult{r.request.id, r.generated, by_token, by_context});
  engine_.Release(r.request.id);
}

StatusOr<std::vector<GenerationResult>> Generator::Step() {
  std::vector<GenerationResult> done;
  last_step_tokens_.clear();
  const Status admitted = Admit();
  const bool has_prefill = std::any_of(running_.begin(), running_.end(), [](const Running& r) {
    return r.prompt_done < r.request.prompt.size();
  });
  bool prefill_step = has_prefill;
  if (engine_.distributed()) {
    // Every rank steps together: they agree whether any has work (else all stop) and whether
    // any prefills (then this step is a prefill step everywhere); an error on one fails all.
    int64_t agreed[2] = {running_.empty() ? 0 : 1, has_prefill ? 1 : 0};
    MG_RETURN_IF_ERROR(engine_.AgreeAcrossRanks(admitted, agreed, 2));
    any_rank_busy_ = agreed[0] != 0;
    if (!any_rank_busy_) return done;
    prefill_step = agreed[1] != 0;
  } else {
    MG_RETURN_IF_ERROR(admitted);
    if (running_.empty()) return done;
  }
  // Prefill first: pack pending prompt pieces up to the largest prefill bucket.
  std::vector<SequenceStep> batch;
  std::vector<Running*> members;
  int32_t tokens = 0;
  for (Running& r : running_) {
    if (r.prompt_done >= r.request.prompt.size()) continue;
    if (static_cast<int32_t>(batch.size()) >= max_prefill_seqs_ || tokens >= max_prefill_tokens_) {
      break;
    }
    const size_t take = std::min<size_t>(r.request.prompt.size() - r.prompt_done,
                                         static_cast<size_t>(max_prefill_tokens_ - tokens));
    SequenceStep s;
    s.seq_id = r.request.id;
    s.num_cached = engine_.CachedTokens(r.request.id);
    s.tokens.assign(r.request.prompt.begin() + r.prompt_done,
                    r.request.prompt.begin() + r.prompt_done + take);
    tokens += static_cast<int32_t>(take);
    batch.push_back(std::move(s));
    members.push_back(&r);
  }
  const bool prefill = !batch.empty();
  if (!prefill && !running_.empty()) {
    // In the ranks' prefill step a rank with only decodes decodes in a prefill key, which
    // holds at most max_prefill_seqs_ sequences.
    const int32_t max_seqs = prefill_step ? max_prefill_seqs_ : max_decode_seqs_;
    if (max_seqs == 0) {
      return FailedPrecondition(std::string("the plan has no ") +
                                (prefill_step ? "prefill" : "decode") + " keys");
    }
    // More running sequences than the largest decode bucket: take turns,
    // starting where the previous decode step stopped.
    const size_t count = std::min(running_.size(), static_cast<size_t>(max_seqs));
    for (size_t i = 0; i < count; ++i) {
      Running& r = running_[(decode_cursor_ + i) % running_.size()];
      SequenceStep s;
      s.seq_id = r.request.id;
      s.num_cached = engine_.CachedTokens(r.request.id);
      s.tokens = {r.generated.back()};
      batch.push_back(std::move(s));
      members.push_back(&r);
    }
    decode_cursor_ = (decode_cursor_ + count) % running_.size();
  }
  MG_ASSIGN_OR_RETURN(StepLogits logits, engine_.Step(batch));
  ++num_steps_;
  std::vector<int64_t> finished;
  for (size_t i = 0; i < members.size(); ++i) {
    Running& r = *members[i];
    if (prefill) {
      r.prompt_done += batch[i].tokens.size();
      if (r.prompt_done < r.request.prompt.size()) continue;  // more prompt to feed
    }
    const int32_t token =
        SampleToken(logits.row(static_cast<int32_t>(i)), logits.vocab, r.request.sampling, r.rng);
    r.generated.push_back(token);
    last_step_tokens_.emplace_back(r.request.id, token);
    const auto& stops = r.request.sampling.stop_tokens;
    const bool by_token = std::find(stops.begin(), stops.end(), token) != stops.end();
    // Feeding the new token takes position `cached`: past the context, stop.
    const int32_t cached = engine_.CachedTokens(r.request.id);
    const bool at_max_new =
        static_cast<int32_t>(r.generated.size()) >= r.request.sampling.max_new_tokens;
    const bool at_context = cached >= engine_.plan().model.max_position_embeddings;
    if (by_token || at_max_new || at_context) {
      Finish(r, by_token, !by_token && !at_max_new && at_context, done);
      finished.push_back(r.request.id);
    }
  }
  std::erase_if(running_, [&](const Running& r) {
    return std::find(finished.begin(), finished.end(), r.request.id) != finished.end();
  });
  return done;
}

StatusOr<std::vector<GenerationResult>> Generator::RunToCompletion() {
  std::map<int64_t, GenerationResult> results;
  // On several ranks every rank steps until no rank has work (an idle one runs empty steps).
  any_rank_busy_ = true;
  while (engine_.distributed() ? any_rank_busy_ : !Idle()) {
    MG_ASSIGN_OR_RETURN(std::vector<GenerationResult> done, Step());
    for (GenerationResult& r : done)
      results[r.id] = std::move(r);
  }
  std::vector<GenerationResult> ordered;
  for (int64_t id : order_) {
    auto it = results.find(id);
    if (it != results.end()) ordered.push_back(std::move(it->second));
  }
  order_.clear();
  return ordered;
}

}  // namespace moegraph
