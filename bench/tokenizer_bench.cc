// moegraph-tokenizer-bench: single-threaded encode throughput (MB/s) of a tokenizer.json on a
// text file, one Encode per line. tools/bench_tokenizer.py runs Hugging Face `tokenizers` on the
// same text and prints the ratio. It never asserts on time.
//
//   moegraph-tokenizer-bench TOKENIZER_JSON TEXT_FILE [PASSES]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "support/mapped_file.h"
#include "tokenizer/tokenizer.h"

namespace {

using Clock = std::chrono::steady_clock;

int Run(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s TOKENIZER_JSON TEXT_FILE [PASSES]\n", argv[0]);
    return 2;
  }
  const int passes = argc > 3 ? std::max(1, std::atoi(argv[3])) : 3;
  const auto load_start = Clock::now();
  auto tokenizer = moegraph::tokenizer::Tokenizer::FromFile(argv[1]);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "%s\n", tokenizer.status().ToString().c_str());
    return 1;
  }
  const double load_s = std::chrono::duration<double>(Clock::now() - load_start).count();
  auto text = moegraph::ReadFileToString(argv[2]);
  if (!text.ok()) {
    std::fprintf(stderr, "%s\n", text.status().ToString().c_str());
    return 1;
  }
  std::vector<std::string_view> lines;
  for (size_t begin = 0; begin < text->size();) {
    size_t end = text->find('\n', begin);
    if (end == std::string::npos) end = text->size();
    lines.push_back(std::string_view(*text).substr(begin, end - begin));
    begin = end + 1;
  }
  // Pass 0 warms the word cache, as a long-running server's would be; then the best pass.
  double best_s = 1e30;
  size_t num_tokens = 0;
  for (int pass = 0; pass <= passes; ++pass) {
    size_t tokens = 0;
    const auto start = Clock::now();
    for (const std::string_view line : lines) {
      auto ids = tokenizer->Encode(line, /*add_special_tokens=*/false);
      if (!ids.ok()) {
        std::fprintf(stderr, "%s\n", ids.status().ToString().c_str());
        return 1;
      }
      tokens += ids->size();
    }
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    if (pass > 0) best_s = std::min(best_s, s);
    num_tokens = tokens;
  }
  const double mb = static_cast<double>(text->size()) / 1e6;
  std::printf(
      "moegraph tokenizer: %s: %zu lines, %.2f MB, %zu tokens, load %.3f s, encode %.3f s, "
      "%.2f MB/s\n",
      argv[1], lines.size(), mb, num_tokens, load_s, best_s, mb / best_s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return Run(argc, argv);
}
