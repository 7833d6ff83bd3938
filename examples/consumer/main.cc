// Uses the installed C++ API: checks a plan's key selection without a model.
#include <moegraph/moegraph.h>

#include <cstdio>

int main() {
  moegraph::KeySetOptions keys;
  moegraph::StatusOr<std::vector<moegraph::SpecKey>> all = moegraph::EnumerateKeys(keys);
  if (!all.ok()) return 1;
  const moegraph::SpecKey key = moegraph::KeyForStep(moegraph::MoePhase::kDecode, 3, 3, keys);
  std::printf("%zu keys; a 3-sequence decode step uses %s\n", all->size(), key.ToString().c_str());
  return key.token_bucket == 4 ? 0 : 1;
}
