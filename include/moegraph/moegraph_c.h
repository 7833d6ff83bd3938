/* moegraph C API: compile a model into a plan, open the plan, generate (token
 * ids, or text through the plan's tokenizer).
 * Opaque handles, status codes, and a per-thread message for the last error.
 *
 * Ownership: mg_engine_open creates a handle, mg_engine_close destroys it;
 * every other pointer argument is borrowed for the duration of the call only.
 * A closed handle must not be used again (not even closed twice); closing is
 * the one call that must not overlap any other call on the same handle.
 *
 * Threading: a handle may be shared by several threads. Each call on a handle
 * holds the handle's lock for its whole duration, so calls on one handle run
 * one at a time (a long mg_generate delays the others); for parallel work
 * open one handle per thread. Errors are reported per thread (mg_last_error).
 *
 * Sequence ids: mg_engine_step takes ids in [0, MG_MAX_SEQ_ID]. Larger ids
 * are reserved for mg_generate and mg_generate_text, which run each call
 * under a fresh id of their own and release it before returning, so they
 * never touch a sequence that mg_engine_step started. */
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

/* The largest sequence id mg_engine_step accepts (2^62 - 1). */
#define MG_MAX_SEQ_ID INT64_C(0x3FFFFFFFFFFFFFFF)

typedef struct mg_engine mg_engine;

typedef struct mg_sampling {
  float temperature; /* 0: greedy; finite and >= 0 */
  int32_t top_k;     /* 0: all tokens; >= 0 */
  float top_p;       /* 1: no nucleus cut; in (0, 1] */
  uint64_t seed;
  int32_t max_new_tokens;     /* >= 1 */
  const int32_t* stop_tokens; /* may be NULL when num_stop_tokens is 0 */
  size_t num_stop_tokens;
} mg_sampling;

/* Greedy, 16 new tokens, no stop tokens. */
mg_sampling mg_sampling_default(void);

/* The message of the last failed call on this thread ("" if it succeeded).
 * Valid until the next moegraph call on this thread. */
const char* mg_last_error(void);

/* Compiles `model` (a Hugging Face model directory, or "demo" for the built-in
 * demo model, written into `demo_dir`) with the default key set into a plan
 * file at `plan_path`. */
mg_status mg_compile_model(const char* model, const char* plan_path, const char* demo_dir);

/* Opens a plan: binds weights and captures every key. num_threads 0: default.
 * On success `*engine` is a new handle for mg_engine_close; on failure NULL. */
mg_status mg_engine_open(const char* plan_path, int num_threads, mg_engine** engine);
/* Opens an expert-parallel plan (compile-model --ep N) as this process's rank of an
 * `mpirun -np N` job (MPI is initialized unless the process did it; the handle owns its
 * communicator). Every rank then calls mg_generate or mg_engine_step together, the same
 * number of times: a rank with nothing to run passes prompt_len 0 to mg_generate (it steps
 * until every rank is done; NULL prompt and outputs allowed) or num_tokens 0 to
 * mg_engine_step (the empty forward; tokens and logits may be NULL). An error on one rank's
 * input fails the call on every rank, with that rank's message. */
mg_status mg_engine_open_rank(const char* plan_path, int num_threads, mg_engine** engine);
/* The handle's rank and its job's ranks (0 and 1 for a handle of mg_engine_open). */
int mg_engine_rank(const mg_engine* engine);
int mg_engine_ranks(const mg_engine* engine);
/* Destroys a handle and everything it holds (NULL: nothing). */
void mg_engine_close(mg_engine* engine);
int32_t mg_engine_vocab_size(const mg_engine* engine);

/* One engine step for one sequence: feeds `tokens` and writes the logits of
 * the last one (vocab floats) to `logits`. A new seq_id starts a sequence;
 * seq_id must be in [0, MG_MAX_SEQ_ID]. */
mg_status mg_engine_step(mg_engine* engine, int64_t seq_id, const int32_t* tokens,
                         size_t num_tokens, float* logits);
/* Forgets a sequence and frees its KV cache blocks (unknown ids: nothing). */
void mg_engine_release(mg_engine* engine, int64_t seq_id);

/* The KV cache's free and total blocks: how much room the open sequences
 * leave (after every sequence is released, free == total). */
mg_status mg_engine_kv_blocks(mg_engine* engine, int32_t* num_free, int32_t* num_total);

/* Generates up to sampling->max_new_tokens tokens after `prompt` into
 * `out_tokens` (capacity `out_capacity` >= max_new_tokens); `*out_len`
 * receives the count (0 on failure). Stops at sampling->stop_tokens only (not
 * at generation_config.json's eos ids; mg_generate_text adds those). Runs as
 * a sequence of its own and frees its KV cache blocks before returning,
 * whether it succeeds or fails. */
mg_status mg_generate(mg_engine* engine, const int32_t* prompt, size_t prompt_len,
                      const mg_sampling* sampling, int32_t* out_tokens, size_t out_capacity,
                      size_t* out_len);

/* ---- Text ------------------------------------------------------------------
 * The plan's tokenizer: the model directory's tokenizer.json (with
 * tokenizer_config.json and generation_config.json) that compile-model
 * recorded, read on the first text call on a handle and refused
 * (MG_FAILED_PRECONDITION) when a file changed since the compile. A plan
 * compiled without tokenizer.json gives MG_FAILED_PRECONDITION. Chat templates
 * are not applied: the raw text is tokenized. */

/* Encodes `text_len` bytes of UTF-8 at `text` as prompt ids (the tokenizer's
 * post-processor and tokenizer_config.json's add_bos_token apply). `*out_len`
 * receives the id count, also when it exceeds `out_capacity`: then nothing is
 * written and the call is MG_INVALID_ARGUMENT, so a caller can retry with room
 * for *out_len ids. `out_ids` may be NULL when out_capacity is 0. Invalid UTF-8
 * is MG_INVALID_ARGUMENT naming the byte offset. */
mg_status mg_tokenize(mg_engine* engine, const char* text, size_t text_len, int32_t* out_ids,
                      size_t out_capacity, size_t* out_len);

/* Decodes `num_ids` ids into `out_text` as UTF-8 and a terminating NUL
 * (special tokens left out when skip_special_tokens is nonzero). `*out_len`
 * receives the text's length in bytes without the NUL, also when
 * out_capacity < *out_len + 1: then nothing is written and the call is
 * MG_INVALID_ARGUMENT. An id no token has is MG_INVALID_ARGUMENT. */
mg_status mg_detokenize(mg_engine* engine, const int32_t* ids, size_t num_ids,
                        int skip_special_tokens, char* out_text, size_t out_capacity,
                        size_t* out_len);

/* Receives each piece of generated text once it is complete UTF-8: `piece` is
 * NUL-terminated, `piece_len` bytes long and valid during the call only.
 * Return 0 to go on, nonzero to stop the generation. */
typedef int (*mg_text_callback)(const char* piece, size_t piece_len, void* user_data);

/* Tokenizes the NUL-terminated `prompt` as mg_tokenize does and generates up
 * to sampling->max_new_tokens tokens, streaming their text to `on_text`
 * (special tokens such as the EOS token are not shown). Stops at
 * generation_config.json's eos_token_id, at sampling->stop_tokens, at the
 * model's context, or when on_text returns nonzero (still MG_OK).
 * `*out_num_tokens` (may be NULL) receives the number of tokens generated.
 * Like mg_generate it runs as a sequence of its own and frees its KV cache
 * blocks before returning. */
mg_status mg_generate_text(mg_engine* engine, const char* prompt, const mg_sampling* sampling,
                           mg_text_callback on_text, void* user_data, size_t* out_num_tokens);

#ifdef __cplusplus
}
#endif

#endif /* MOEGRAPH_MOEGRAPH_C_H_ */
