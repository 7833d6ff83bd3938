// The C API over Engine and Generator: argument checks, the handle's lock,
// the sequence ids of mg_generate, and Status -> mg_status + message.
#include <cmath>
#include <cstring>
#include <exception>
#include <filesystem>
#include <mutex>
#include <new>
#include <optional>
#include <string>

#include "moegraph/moegraph.h"
#include "moegraph/moegraph_c.h"
#include "runtime/plan_tokenizer.h"

// Engine and Generator are single-threaded; `mu` makes the handle safe to
// share by running its calls one at a time.
struct mg_engine {
  // An expert-parallel rank's communicator (mg_engine_open_rank); declared first, so it
  // outlives the engine that uses it.
  std::unique_ptr<moegraph::Communicator> comm;
  std::unique_ptr<moegraph::Engine> engine;
  std::mutex mu;
  // mg_generate's ids: above MG_MAX_SEQ_ID, so mg_engine_step cannot reach them.
  int64_t next_generation_id = MG_MAX_SEQ_ID + 1;
  // The plan's tokenizer, loaded by the first text call that succeeds in loading it.
  std::optional<moegraph::PlanTokenizer> text;
};

static_assert(static_cast<int>(moegraph::StatusCode::kInvalidArgument) == MG_INVALID_ARGUMENT);
static_assert(static_cast<int>(moegraph::StatusCode::kNotFound) == MG_NOT_FOUND);
static_assert(static_cast<int>(moegraph::StatusCode::kDataLoss) == MG_DATA_LOSS);
static_assert(static_cast<int>(moegraph::StatusCode::kFailedPrecondition) ==
              MG_FAILED_PRECONDITION);
static_assert(static_cast<int>(moegraph::StatusCode::kResourceExhausted) == MG_RESOURCE_EXHAUSTED);
static_assert(static_cast<int>(moegraph::StatusCode::kUnimplemented) == MG_UNIMPLEMENTED);
static_assert(static_cast<int>(moegraph::StatusCode::kInternal) == MG_INTERNAL);

namespace {

using moegraph::InvalidArgument;
using moegraph::SamplingParams;
using moegraph::Status;
using moegraph::StatusOr;
using moegraph::ValidateSamplingParams;

// The C API's error channel: one message per thread, like errno.
thread_local std::string last_error;

mg_status Report(const Status& status) {
  last_error = status.ok() ? "" : status.ToString();
  return static_cast<mg_status>(status.code());
}

// Runs `body` (which reports its own status) so that no C++ exception
// crosses into C.
template <typename Body>
mg_status Guarded(Body&& body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return Report(moegraph::ResourceExhausted("out of host memory"));
  } catch (const std::exception& e) {
    return Report(moegraph::Internal(std::string("unexpected exception: ") + e.what()));
  }
}

// The C caller's sampling as SamplingParams, checked by the Generator's own
// rules (ValidateSamplingParams), with errors naming the C fields.
StatusOr<SamplingParams> ToSamplingParams(const mg_sampling& s, size_t out_capacity) {
  if (!s.stop_tokens && s.num_stop_tokens > 0) {
    return InvalidArgument("sampling->stop_tokens is NULL but num_stop_tokens is " +
                           std::to_string(s.num_stop_tokens));
  }
  SamplingParams params;
  params.temperature = s.temperature;
  params.top_k = s.top_k;
  params.top_p = s.top_p;
  params.seed = s.seed;
  params.max_new_tokens = s.max_new_tokens;
  if (s.stop_tokens) params.stop_tokens.assign(s.stop_tokens, s.stop_tokens + s.num_stop_tokens);
  if (Status valid = ValidateSamplingParams(params); !valid.ok()) {
    return Status(valid.code(), "sampling->" + valid.message());
  }
  if (static_cast<size_t>(s.max_new_tokens) > out_capacity) {
    return InvalidArgument("out_capacity (" + std::to_string(out_capacity) +
                           ") is smaller than sampling->max_new_tokens (" +
                           std::to_string(s.max_new_tokens) + ")");
  }
  return params;
}

// The handle's tokenizer, loaded on first use; `engine->mu` must be held.
StatusOr<const moegraph::PlanTokenizer*> HandleTokenizer(mg_engine* engine) {
  if (!engine->text) {
    StatusOr<moegraph::PlanTokenizer> loaded =
        moegraph::LoadPlanTokenizer(engine->engine->plan(), "", /*load_tokenizer=*/true);
    if (!loaded.ok()) return loaded.status();
    if (!loaded->tokenizer) {
      return moegraph::FailedPrecondition(
          "the plan has no tokenizer (its model directory " + engine->engine->plan().model_dir +
          " had no tokenizer.json when it was compiled); use the token id calls");
    }
    engine->text = std::move(*loaded);
  }
  return &*engine->text;
}

// Releases a generation's sequence when the C call returns, however it returns, so no call
// leaves anything cached: a prompt split over several prefill steps holds KV blocks when a later
// step fails, and the next call must start from a clean cache. (After a success the Generator
// has released the sequence already; releasing it again does nothing.)
struct ReleaseOnExit {
  moegraph::Engine& engine;
  int64_t id;
  ~ReleaseOnExit() { engine.Release(id); }
};

}  // namespace

extern "C" {

mg_sampling mg_sampling_default(void) {
  mg_sampling s;
  s.temperature = 0.0f;
  s.top_k = 0;
  s.top_p = 1.0f;
  s.seed = 0;
  s.max_new_tokens = 16;
  s.stop_tokens = nullptr;
  s.num_stop_tokens = 0;
  return s;
}

const char* mg_last_error(void) {
  return last_error.c_str();
}

mg_status mg_compile_model(const char* model, const char* plan_path, const char* demo_dir) {
  using namespace moegraph;
  return Guarded([&] {
    if (!model || !plan_path) {
      return Report(InvalidArgument("model and plan_path must not be NULL"));
    }
    const std::string demo =
        demo_dir ? demo_dir
                 : (std::filesystem::path(plan_path).parent_path() / "demo-model").string();
    StatusOr<std::string> dir = ResolveModelArgument(model, demo);
    if (!dir.ok()) return Report(dir.status());
    StatusOr<HfModel> loaded = LoadHfModel(*dir);
    if (!loaded.ok()) return Report(loaded.status());
    CompileModelOptions options;
    options.command_line = std::string("mg_compile_model ") + model;
    StatusOr<Plan> plan = CompileModel(*loaded, options);
    if (!plan.ok()) return Report(plan.status());
    return Report(WritePlanFile(*plan, plan_path));
  });
}

namespace {

// mg_engine_open and mg_engine_open_rank: a handle for the plan, as this process's rank of
// the mpirun job when `as_rank`.
mg_status OpenHandle(const char* plan_path, int num_threads, bool as_rank, mg_engine** engine) {
  using namespace moegraph;
  if (engine) *engine = nullptr;
  return Guarded([&] {
    if (!plan_path || !engine) {
      return Report(InvalidArgument("plan_path and engine must not be NULL"));
    }
    if (num_threads < 0) {
      return Report(
          InvalidArgument("num_threads must be >= 0, got " + std::to_string(num_threads)));
    }
    auto handle = std::make_unique<mg_engine>();
    EngineOptions options;
    options.num_threads = num_threads;
    if (as_rank) {
      StatusOr<std::unique_ptr<Communicator>> comm = CreateMpiCommunicator();
      if (!comm.ok()) return Report(comm.status().WithContext("mg_engine_open_rank"));
      handle->comm = std::move(*comm);
      options.communicator = handle->comm.get();
    }
    StatusOr<std::unique_ptr<Engine>> opened = Engine::Open(plan_path, options);
    if (!opened.ok()) return Report(opened.status());
    handle->engine = std::move(*opened);
    *engine = handle.release();
    return Report(Status::Ok());
  });
}

}  // namespace

mg_status mg_engine_open(const char* plan_path, int num_threads, mg_engine** engine) {
  return OpenHandle(plan_path, num_threads, /*as_rank=*/false, engine);
}

mg_status mg_engine_open_rank(const char* plan_path, int num_threads, mg_engine** engine) {
  return OpenHandle(plan_path, num_threads, /*as_rank=*/true, engine);
}

int mg_engine_rank(const mg_engine* engine) {
  return engine && engine->comm ? engine->comm->rank() : 0;
}

int mg_engine_ranks(const mg_engine* engine) {
  return engine && engine->comm ? engine->comm->world_size() : 1;
}

void mg_engine_close(mg_engine* engine) {
  delete engine;
}

int32_t mg_engine_vocab_size(const mg_engine* engine) {
  // The plan does not change after open: no lock needed.
  return engine ? engine->engine->plan().model.vocab_size : 0;
}

mg_status mg_engine_step(mg_engine* engine, int64_t seq_id, const int32_t* tokens,
                         size_t num_tokens, float* logits) {
  using namespace moegraph;
  return Guarded([&] {
    if (engine && engine->comm && num_tokens == 0) {
      // A rank with nothing to run still takes part in the step (the empty forward).
      std::lock_guard<std::mutex> lock(engine->mu);
      return Report(engine->engine->Step({}).status());
    }
    if (!engine || !tokens || !logits) {
      return Report(InvalidArgument("engine, tokens and logits must not be NULL"));
    }
    if (seq_id < 0 || seq_id > MG_MAX_SEQ_ID) {
      return Report(InvalidArgument("seq_id " + std::to_string(seq_id) +
                                    " is outside [0, MG_MAX_SEQ_ID]; larger ids are "
                                    "reserved for mg_generate"));
    }
    std::lock_guard<std::mutex> lock(engine->mu);
    SequenceStep step{seq_id, std::vector<int32_t>(tokens, tokens + num_tokens),
                      engine->engine->CachedTokens(seq_id)};
    StatusOr<StepLogits> out = engine->engine->Step({step});
    if (!out.ok()) return Report(out.status());
    std::memcpy(logits, out->row(0), sizeof(float) * static_cast<size_t>(out->vocab));
    return Report(Status::Ok());
  });
}

void mg_engine_release(mg_engine* engine, int64_t seq_id) {
  // A reserved id names no sequence between calls: mg_generate releases its own.
  if (!engine || seq_id < 0 || seq_id > MG_MAX_SEQ_ID) return;
  try {
    std::lock_guard<std::mutex> lock(engine->mu);
    engine->engine->Release(seq_id);
  } catch (const std::exception&) {
    // std::mutex::lock fails only on a broken handle; nothing to release then.
  }
}

mg_status mg_engine_kv_blocks(mg_engine* engine, int32_t* num_free, int32_t* num_total) {
  using namespace moegraph;
  return Guarded([&] {
    if (!engine || !num_free || !num_total) {
      return Report(InvalidArgument("engine, num_free and num_total must not be NULL"));
    }
    std::lock_guard<std::mutex> lock(engine->mu);
    *num_free = engine->engine->kv_cache().num_free_blocks();
    *num_total = engine->engine->kv_cache().config().num_blocks;
    return Report(Status::Ok());
  });
}

mg_status mg_generate(mg_engine* engine, const int32_t* prompt, size_t prompt_len,
                      const mg_sampling* sampling, int32_t* out_tokens, size_t out_capacity,
                      size_t* out_len) {
  using namespace moegraph;
  if (out_len) *out_len = 0;
  return Guarded([&] {
    if (!engine) {
      return Report(
          InvalidArgument("engine, prompt, sampling, out_tokens and out_len must not be NULL"));
    }
    // An expert-parallel rank with no prompt steps with the others until every rank is done.
    const bool rank = engine->comm != nullptr, idle = rank && prompt_len == 0;
    Status checked = Status::Ok();
    SamplingParams params;
    if (!idle) {
      if (!prompt || !sampling || !out_tokens || !out_len) {
        checked =
            InvalidArgument("engine, prompt, sampling, out_tokens and out_len must not be NULL");
      } else if (prompt_len == 0) {
        checked = InvalidArgument("prompt_len must be >= 1");
      } else {
        StatusOr<SamplingParams> parsed = ToSamplingParams(*sampling, out_capacity);
        checked = parsed.status();
        if (parsed.ok()) params = *parsed;
      }
    }
    std::lock_guard<std::mutex> lock(engine->mu);
    Engine& e = *engine->engine;
    const int64_t id = engine->next_generation_id++;
    const ReleaseOnExit release{e, id};
    Generator generator(e);
    if (checked.ok() && !idle) {
      checked = generator.Add({id, std::vector<int32_t>(prompt, prompt + prompt_len), params})
                    .WithContext("mg_generate");
    }
    // Every rank learns of one rank's bad call, so none waits for it in a step.
    if (rank) checked = e.AgreeAcrossRanks(checked);
    if (!checked.ok()) return Report(checked);
    StatusOr<std::vector<GenerationResult>> results = generator.RunToCompletion();
    if (!results.ok()) return Report(results.status().WithContext("mg_generate"));
    if (idle) return Report(Status::Ok());
    const std::vector<int32_t>& tokens = (*results)[0].tokens;
    std::copy(tokens.begin(), tokens.end(), out_tokens);
    *out_len = tokens.size();
    return Report(Status::Ok());
  });
}

mg_status mg_tokenize(mg_engine* engine, const char* text, size_t text_len, int32_t* out_ids,
                      size_t out_capacity, size_t* out_len) {
  using namespace moegraph;
  if (out_len) *out_len = 0;
  return Guarded([&] {
    if (!engine || (!text && text_len > 0) || (!out_ids && out_capacity > 0) || !out_len) {
      return Report(InvalidArgument(
          "engine and out_len must not be NULL, nor text when text_len > 0, nor out_ids when "
          "out_capacity > 0"));
    }
    std::lock_guard<std::mutex> lock(engine->mu);
    StatusOr<const PlanTokenizer*> tok = HandleTokenizer(engine);
    if (!tok.ok()) return Report(tok.status().WithContext("mg_tokenize"));
    StatusOr<std::vector<int32_t>> ids =
        EncodePrompt(**tok, std::string_view(text ? text : "", text_len), "mg_tokenize: text");
    if (!ids.ok()) return Report(ids.status());
    *out_len = ids->size();
    if (ids->size() > out_capacity) {
      return Report(InvalidArgument("mg_tokenize: out_capacity (" + std::to_string(out_capacity) +
                                    ") is smaller than the " + std::to_string(ids->size()) +
                                    " ids of the text (*out_len)"));
    }
    std::copy(ids->begin(), ids->end(), out_ids);
    return Report(Status::Ok());
  });
}

mg_status mg_detokenize(mg_engine* engine, const int32_t* ids, size_t num_ids,
                        int skip_special_tokens, char* out_text, size_t out_capacity,
                        size_t* out_len) {
  using namespace moegraph;
  if (out_len) *out_len = 0;
  return Guarded([&] {
    if (!engine || (!ids && num_ids > 0) || (!out_text && out_capacity > 0) || !out_len) {
      return Report(InvalidArgument(
          "engine and out_len must not be NULL, nor ids when num_ids > 0, nor out_text when "
          "out_capacity > 0"));
    }
    std::lock_guard<std::mutex> lock(engine->mu);
    StatusOr<const PlanTokenizer*> tok = HandleTokenizer(engine);
    if (!tok.ok()) return Report(tok.status().WithContext("mg_detokenize"));
    StatusOr<std::string> text =
        (*tok)->tokenizer->Decode(std::span<const int32_t>(ids, num_ids), skip_special_tokens != 0);
    if (!text.ok()) return Report(text.status().WithContext("mg_detokenize"));
    *out_len = text->size();
    if (text->size() >= out_capacity) {
      return Report(InvalidArgument("mg_detokenize: out_capacity (" + std::to_string(out_capacity) +
                                    ") is smaller than the " + std::to_string(text->size()) +
                                    " bytes of the text (*out_len) and its NUL"));
    }
    std::memcpy(out_text, text->data(), text->size());
    out_text[text->size()] = '\0';
    return Report(Status::Ok());
  });
}

mg_status mg_generate_text(mg_engine* engine, const char* prompt, const mg_sampling* sampling,
                           mg_text_callback on_text, void* user_data, size_t* out_num_tokens) {
  using namespace moegraph;
  if (out_num_tokens) *out_num_tokens = 0;
  return Guarded([&] {
    if (!engine || !prompt || !sampling || !on_text) {
      return Report(InvalidArgument("engine, prompt, sampling and on_text must not be NULL"));
    }
    StatusOr<SamplingParams> params =
        ToSamplingParams(*sampling, static_cast<size_t>(sampling->max_new_tokens));
    if (!params.ok()) return Report(params.status());
    std::lock_guard<std::mutex> lock(engine->mu);
    StatusOr<const PlanTokenizer*> tok = HandleTokenizer(engine);
    if (!tok.ok()) return Report(tok.status().WithContext("mg_generate_text"));
    StatusOr<std::vector<int32_t>> ids = EncodePrompt(**tok, prompt, "mg_generate_text: prompt");
    if (!ids.ok()) return Report(ids.status());
    for (int32_t eos : (*tok)->eos_token_ids)
      params->stop_tokens.push_back(eos);
    Engine& e = *engine->engine;
    const int64_t id = engine->next_generation_id++;
    const ReleaseOnExit release{e, id};
    Generator generator(e);
    if (Status added = generator.Add({id, std::move(*ids), *params}); !added.ok()) {
      return Report(added.WithContext("mg_generate_text"));
    }
    tokenizer::IncrementalDecoder decoder(*(*tok)->tokenizer, /*skip_special_tokens=*/true);
    auto emit = [&](const std::string& piece) {
      return piece.empty() || on_text(piece.c_str(), piece.size(), user_data) == 0;
    };
    size_t generated = 0;
    while (!generator.Idle()) {
      StatusOr<std::vector<GenerationResult>> done = generator.Step();
      if (!done.ok()) return Report(done.status().WithContext("mg_generate_text"));
      for (const auto& [seq, token] : generator.last_step_tokens()) {
        ++generated;
        if (out_num_tokens) *out_num_tokens = generated;
        StatusOr<std::string> piece = decoder.Push(token);
        if (!piece.ok()) return Report(piece.status().WithContext("mg_generate_text"));
        if (!emit(*piece)) return Report(Status::Ok());
      }
    }
    StatusOr<std::string> rest = decoder.Flush();
    if (!rest.ok()) return Report(rest.status().WithContext("mg_generate_text"));
    emit(*rest);
    return Report(Status::Ok());
  });
}

}  // extern "C"
