// moegraph C++ API: the public entry points for programs that embed the
// engine. Compile a model (CompileModel + WritePlanFile, or the compile-model
// tool), open a plan with Engine::Open, and step it directly or through a
// Generator. Errors are Status / StatusOr values.
#pragma once

#include "compiler/compile_model.h"  // IWYU pragma: export
#include "frontends/hf_model.h"      // IWYU pragma: export
#include "runtime/engine.h"          // IWYU pragma: export
#include "runtime/generator.h"       // IWYU pragma: export
#include "runtime/plan_file.h"       // IWYU pragma: export
