// The C API over Engine and Generator.
#include <cstring>
#include <filesystem>
#include <string>

#include "moegraph/moegraph.h"
#include "moegraph/moegraph_c.h"

struct mg_engine {
  std::unique_ptr<moegraph::Engine> engine;
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

// The C API's error channel: one message per thread, like errno.
thread_local std::string last_error;

mg_status Report(const moegraph::Status& status) {
  last_error = status.ok() ? "" : status.ToString();
  return static_cast<mg_status>(status.code());
}

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
  if (!model || !plan_path) return Report(InvalidArgument("model and plan_path must not be NULL"));
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
}

mg_status mg_engine_open(const char* plan_path, int num_threads, mg_engine** engine) {
  using namespace moegraph;
  if (!plan_path || !engine)
    return Report(InvalidArgument("plan_path and engine must not be NULL"));
  *engine = nullptr;
  EngineOptions options;
  options.num_threads = num_threads;
  StatusOr<std::unique_ptr<Engine>> opened = Engine::Open(plan_path, options);
  if (!opened.ok()) return Report(opened.status());
  *engine = new mg_engine{std::move(*opened)};
  return Report(Status::Ok());
}

void mg_engine_close(mg_engine* engine) {
  delete engine;
}

int32_t mg_engine_vocab_size(const mg_engine* engine) {
  return engine ? engine->engine->plan().model.vocab_size : 0;
}

mg_status mg_engine_step(mg_engine* engine, int64_t seq_id, const int32_t* tokens,
                         size_t num_tokens, float* logits) {
  using namespace moegraph;
  if (!engine || !tokens || !logits) {
    return Report(InvalidArgument("engine, tokens and logits must not be NULL"));
  }
  SequenceStep step{seq_id, std::vector<int32_t>(tokens, tokens + num_tokens),
                    engine->engine->CachedTokens(seq_id)};
  StatusOr<StepLogits> out = engine->engine->Step({step});
  if (!out.ok()) return Report(out.status());
  std::memcpy(logits, out->row(0), sizeof(float) * static_cast<size_t>(out->vocab));
  return Report(Status::Ok());
}

void mg_engine_release(mg_engine* engine, int64_t seq_id) {
  if (engine) engine->engine->Release(seq_id);
}

mg_status mg_generate(mg_engine* engine, const int32_t* prompt, size_t prompt_len,
                      const mg_sampling* sampling, int32_t* out_tokens, size_t out_capacity,
                      size_t* out_len) {
  using namespace moegraph;
  if (!engine || !prompt || !sampling || !out_tokens || !out_len) {
    return Report(
        InvalidArgument("engine, prompt, sampling, out_tokens and out_len must not be NULL"));
  }
  if (sampling->max_new_tokens < 0 ||
      static_cast<size_t>(sampling->max_new_tokens) > out_capacity) {
    return Report(InvalidArgument("out_capacity (" + std::to_string(out_capacity) +
                                  ") is smaller than max_new_tokens (" +
                                  std::to_string(sampling->max_new_tokens) + ")"));
  }
  SamplingParams params;
  params.temperature = sampling->temperature;
  params.top_k = sampling->top_k;
  params.top_p = sampling->top_p;
  params.seed = sampling->seed;
  params.max_new_tokens = sampling->max_new_tokens;
  if (sampling->stop_tokens) {
    params.stop_tokens.assign(sampling->stop_tokens,
                              sampling->stop_tokens + sampling->num_stop_tokens);
  }
  Generator generator(*engine->engine);
  Status added = generator.Add({0, std::vector<int32_t>(prompt, prompt + prompt_len), params});
  if (!added.ok()) return Report(added);
  StatusOr<std::vector<GenerationResult>> results = generator.RunToCompletion();
  if (!results.ok()) return Report(results.status());
  const std::vector<int32_t>& tokens = (*results)[0].tokens;
  std::copy(tokens.begin(), tokens.end(), out_tokens);
  *out_len = tokens.size();
  return Report(Status::Ok());
}

}  // extern "C"
