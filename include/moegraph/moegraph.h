// moegraph C++ API: the public entry points for programs that embed the
// engine. Compile a model (CompileModel + WritePlanFile, or the compile-model
// tool), open a plan with Engine::Open, and step it directly or through a
// Generator. Text: LoadPlanTokenizer (the plan's tokenizer.json, eos and bos
// settings), EncodePrompt, and tokenizer::Tokenizer / IncrementalDecoder for
// decoding and streaming. Errors are Status / StatusOr values. An engine of an
// expert-parallel plan (compile-model --ep N) is one rank of a Communicator
// (EngineOptions::communicator): CreateMpiCommunicator() under mpirun, or
// MakeLocalGroup(N) for N ranks that are threads of one process; its ranks
// call Engine::Step (or Generator::Step) together.
//
// Threading: an Engine, and every Generator over it, must be used by one
// thread at a time (each step writes the KV cache tables, the ForwardMeta
// buffers and the arena); the engine's kernels run on its own OpenMP threads.
// Share one between threads behind a lock, as the C API's handle does
// (moegraph_c.h).
#pragma once

#include "compiler/compile_model.h"      // IWYU pragma: export
#include "frontends/hf_model.h"          // IWYU pragma: export
#include "kernels/local_communicator.h"  // IWYU pragma: export
#include "plan/plan_file.h"              // IWYU pragma: export
#include "runtime/engine.h"              // IWYU pragma: export
#include "runtime/generator.h"           // IWYU pragma: export
#include "runtime/mpi_communicator.h"    // IWYU pragma: export
#include "runtime/plan_tokenizer.h"      // IWYU pragma: export
#include "tokenizer/tokenizer.h"         // IWYU pragma: export
