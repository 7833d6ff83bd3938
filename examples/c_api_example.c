/* Embeds moegraph through its C API: compile the demo model, open the plan,
 * generate greedily, and show that a bad token id is a clean error. */
#include <moegraph/moegraph_c.h>
#include <stdio.h>
#include <stdlib.h>

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
  return (n == 8 && status == MG_INVALID_ARGUMENT && free_blocks == total_blocks) ? 0 : 1;
}
