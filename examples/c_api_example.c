/* Embeds moegraph through its C API: compile the demo model, open the plan,
 * generate greedily from ids and from text (streamed through a callback),
 * tokenize and detokenize, and show that a bad token id is a clean error. */
#include <moegraph/moegraph_c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prints each streamed piece and keeps the whole text in `user_data`. */
typedef struct {
  char text[4096];
  size_t len;
} streamed_text;

static int on_text(const char* piece, size_t piece_len, void* user_data) {
  streamed_text* out = (streamed_text*)user_data;
  fwrite(piece, 1, piece_len, stdout);
  fflush(stdout);
  if (out->len + piece_len >= sizeof(out->text)) return 1; /* full: stop generating */
  memcpy(out->text + out->len, piece, piece_len);
  out->len += piece_len;
  out->text[out->len] = '\0';
  return 0;
}

int main(int argc, char** argv) {
  const char* dir = argc > 1 ? argv[1] : ".";
  char plan[4096], demo[4096];
  snprintf(plan, sizeof(plan), "%s/c-api-demo.plan", dir);
  snprintf(demo, sizeof(demo), "%s/c-api-demo-model", dir);

  if (mg_compile_model("demo", plan, demo) != MG_OK) {
    fprintf(stderr, "compile failed: %s\n", mg_last_error());
    return 1;
  }
  mg_engine* engine = NULL;
  if (mg_engine_open(plan, 0, &engine) != MG_OK) {
    fprintf(stderr, "open failed: %s\n", mg_last_error());
    return 1;
  }
  const int32_t prompt[] = {1, 2, 3, 4, 5};
  mg_sampling sampling = mg_sampling_default();
  sampling.max_new_tokens = 8;
  int32_t tokens[8];
  size_t n = 0;
  if (mg_generate(engine, prompt, 5, &sampling, tokens, 8, &n) != MG_OK) {
    fprintf(stderr, "generate failed: %s\n", mg_last_error());
    return 1;
  }
  printf("generated:");
  for (size_t i = 0; i < n; ++i)
    printf(" %d", tokens[i]);
  printf("\n");

  /* Text in, text out: the demo model's tokenizer. */
  int32_t hello[64];
  size_t num_hello = 0;
  if (mg_tokenize(engine, "Hello world", strlen("Hello world"), hello, 64, &num_hello) != MG_OK) {
    fprintf(stderr, "tokenize failed: %s\n", mg_last_error());
    return 1;
  }
  char round_trip[256];
  size_t round_trip_len = 0;
  if (mg_detokenize(engine, hello, num_hello, /*skip_special_tokens=*/1, round_trip,
                    sizeof(round_trip), &round_trip_len) != MG_OK) {
    fprintf(stderr, "detokenize failed: %s\n", mg_last_error());
    return 1;
  }
  printf("'Hello world' -> %zu ids -> '%s'\n", num_hello, round_trip);
  streamed_text streamed = {{0}, 0};
  size_t num_text_tokens = 0;
  printf("text: ");
  if (mg_generate_text(engine, "Hello world", &sampling, on_text, &streamed, &num_text_tokens) !=
      MG_OK) {
    fprintf(stderr, "generate text failed: %s\n", mg_last_error());
    return 1;
  }
  printf("\n(%zu tokens)\n", num_text_tokens);

  const int32_t bad[] = {999999};
  float* logits = malloc(sizeof(float) * (size_t)mg_engine_vocab_size(engine));
  mg_status status = mg_engine_step(engine, 42, bad, 1, logits);
  printf("bad token id -> status %d: %s\n", (int)status, mg_last_error());
  free(logits);

  /* mg_generate released its sequence; the failed step reserved nothing. */
  int32_t free_blocks = 0, total_blocks = 0;
  if (mg_engine_kv_blocks(engine, &free_blocks, &total_blocks) != MG_OK) {
    fprintf(stderr, "kv blocks failed: %s\n", mg_last_error());
    return 1;
  }
  printf("KV cache: %d of %d blocks free\n", free_blocks, total_blocks);
  mg_engine_close(engine);
  return (n == 8 && status == MG_INVALID_ARGUMENT && free_blocks == total_blocks &&
          strcmp(round_trip, "Hello world") == 0 && num_text_tokens >= 1 && num_text_tokens <= 8)
             ? 0
             : 1;
}
