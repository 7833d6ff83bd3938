/* moegraph C API: compile a model into a plan, open the plan, generate.
 * Opaque handles, status codes, and a per-thread message for the last error. */
#ifndef MOEGRAPH_MOEGRAPH_C_H_
#define MOEGRAPH_MOEGRAPH_C_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mg_status {
  MG_OK = 0,
  MG_INVALID_ARGUMENT = 1,
  MG_NOT_FOUND = 2,
  MG_DATA_LOSS = 3,
  MG_FAILED_PRECONDITION = 4,
  MG_RESOURCE_EXHAUSTED = 5,
  MG_UNIMPLEMENTED = 6,
  MG_INTERNAL = 7
} mg_status;

typedef struct mg_engine mg_engine;

typedef struct mg_sampling {
  float temperature; /* 0: greedy */
  int32_t top_k;     /* 0: all tokens */
  float top_p;       /* 1: no nucleus cut */
  uint64_t seed;
  int32_t max_new_tokens;
  const int32_t* stop_tokens; /* may be NULL */
  size_t num_stop_tokens;
} mg_sampling;

/* Greedy, 16 new tokens, no stop tokens. */
mg_sampling mg_sampling_default(void);

/* The message of the last failed call on this thread ("" if none). */
const char* mg_last_error(void);

/* Compiles `model` (a Hugging Face model directory, or "demo" for the built-in
 * demo model, written into `demo_dir`) with the default key set into a plan
 * file at `plan_path`. */
mg_status mg_compile_model(const char* model, const char* plan_path, const char* demo_dir);

/* Opens a plan: binds weights and captures every key. num_threads 0: default. */
mg_status mg_engine_open(const char* plan_path, int num_threads, mg_engine** engine);
void mg_engine_close(mg_engine* engine);
int32_t mg_engine_vocab_size(const mg_engine* engine);

/* One engine step for one sequence: feeds `tokens` and writes the logits of
 * the last one (vocab floats) to `logits`. A new seq_id starts a sequence. */
mg_status mg_engine_step(mg_engine* engine, int64_t seq_id, const int32_t* tokens,
                         size_t num_tokens, float* logits);
/* Forgets a sequence and frees its KV cache blocks. */
void mg_engine_release(mg_engine* engine, int64_t seq_id);

/* Generates up to sampling->max_new_tokens tokens after `prompt` into
 * `out_tokens` (capacity `out_capacity`); `*out_len` receives the count. */
mg_status mg_generate(mg_engine* engine, const int32_t* prompt, size_t prompt_len,
                      const mg_sampling* sampling, int32_t* out_tokens, size_t out_capacity,
                      size_t* out_len);

#ifdef __cplusplus
}
#endif

#endif /* MOEGRAPH_MOEGRAPH_C_H_ */
