# The layers of moegraph and the layers each one may use: the one home of the
# dependency DAG (docs/DESIGN-NOTES.md, "Layers"). The top-level
# CMakeLists.txt builds one static library per layer from this table and links
# it PUBLIC to exactly the layers listed; cmake/check_layers.cmake (the
# `layers.includes` test) reads it too and fails on any #include "..." in a
# layer that names a header of a layer not listed here. Only variables are set,
# so both a project and a `cmake -P` script can include this file.
#
# A layer is
#   MOEGRAPH_LAYER_DIRS_<layer>  the folders whose files belong to it (not recursive:
#                                kernels/ holds the kernel ABI, kernels/cpu/ and
#                                kernels/cuda/ are layers of their own)
#   MOEGRAPH_LAYER_DEPS_<layer>  the layers its files may include and link, every one
#                                listed (no "transitively allowed": say what you use)
#   MOEGRAPH_LAYER_TARGET_<layer> its library (moegraph_<layer> unless set)
# Layers are listed bottom-up: each one uses only layers before it.

set(MOEGRAPH_LAYERS
  support tokenizer ir kernel_abi plan checkpoint frontends passes compiler
  kernels_cpu kernels_cuda runtime interpreter api)

# Status, logging, strings, hashing, JSON, mapped files, CLI helpers.
set(MOEGRAPH_LAYER_DIRS_support support)
set(MOEGRAPH_LAYER_DEPS_support "")

# tokenizer.json / generation_config.json: a library of its own beside the engine.
set(MOEGRAPH_LAYER_DIRS_tokenizer tokenizer)
set(MOEGRAPH_LAYER_DEPS_tokenizer support)

# Types, ops, graphs, parser/printer, spec keys, lowered programs.
set(MOEGRAPH_LAYER_DIRS_ir ir)
set(MOEGRAPH_LAYER_DEPS_ir support)

# The kernel ABI (TensorArg, KernelArgs, ForwardMeta's view): what a plan step
# passes to a kernel; every backend and the plan format agree on it.
set(MOEGRAPH_LAYER_DIRS_kernel_abi kernels)
set(MOEGRAPH_LAYER_DEPS_kernel_abi ir support)

# Plan structs, plan.fbs and plan file I/O.
set(MOEGRAPH_LAYER_DIRS_plan plan)
set(MOEGRAPH_LAYER_DEPS_plan kernel_abi ir support)

# Safetensors reading, weight resolution, checkpoint fingerprints, weight kernel arguments.
set(MOEGRAPH_LAYER_DIRS_checkpoint checkpoint)
set(MOEGRAPH_LAYER_DEPS_checkpoint plan kernel_abi ir support)

# Model families: config.json, the block library, the generic graph.
set(MOEGRAPH_LAYER_DIRS_frontends frontends)
set(MOEGRAPH_LAYER_DEPS_frontends checkpoint plan ir support)

# Graph-to-graph passes and lower-to-kernels.
set(MOEGRAPH_LAYER_DIRS_passes passes)
set(MOEGRAPH_LAYER_DEPS_passes ir support)

# The compile driver: pipeline assembly, CompileKeys, CompileModel and the weight manifest.
set(MOEGRAPH_LAYER_DIRS_compiler compiler)
set(MOEGRAPH_LAYER_DEPS_compiler frontends passes checkpoint plan ir tokenizer support)

# CPU kernels (reference and optimized) and their dispatch table.
set(MOEGRAPH_LAYER_DIRS_kernels_cpu kernels/cpu)
set(MOEGRAPH_LAYER_DEPS_kernels_cpu kernel_abi ir support)

# CUDA kernels, cuBLASLt GEMMs and the CUDA op table (built when nvcc is found).
set(MOEGRAPH_LAYER_DIRS_kernels_cuda kernels/cuda)
set(MOEGRAPH_LAYER_DEPS_kernels_cuda kernels_cpu kernel_abi ir support)

# Plan loading, backends (the CPU and CUDA backends adapt the kernel libraries
# to runtime/backend.h), Engine, KV cache, ForwardMeta, Generator, communicators.
set(MOEGRAPH_LAYER_DIRS_runtime runtime)
set(MOEGRAPH_LAYER_DEPS_runtime kernels_cpu kernels_cuda checkpoint plan kernel_abi ir tokenizer support)

# The eager IR interpreter: the tests' oracle, linked by the tests that need it,
# not part of the installed library.
set(MOEGRAPH_LAYER_DIRS_interpreter interpreter)
set(MOEGRAPH_LAYER_DEPS_interpreter runtime kernels_cpu checkpoint kernel_abi ir support)

# The public API (include/moegraph/: C++ and C) and the C API's implementation:
# the umbrella library `moegraph` that tools, examples and find_package users link.
set(MOEGRAPH_LAYER_DIRS_api api include/moegraph)
set(MOEGRAPH_LAYER_DEPS_api
  runtime compiler frontends checkpoint plan passes kernel_abi ir tokenizer support)
set(MOEGRAPH_LAYER_TARGET_api moegraph)

# Fails unless every layer's dependencies are layers listed before it (which
# makes the table a DAG) and every layer has its folders.
function(moegraph_check_layer_table table_file)
  set(seen "")
  foreach(layer ${MOEGRAPH_LAYERS})
    if(NOT MOEGRAPH_LAYER_DIRS_${layer})
      message("${table_file}: layer ${layer} has no MOEGRAPH_LAYER_DIRS_${layer}")
      message(FATAL_ERROR "the layer table is incomplete (above)")
    endif()
    foreach(dep ${MOEGRAPH_LAYER_DEPS_${layer}})
      if(NOT dep IN_LIST seen)
        list(JOIN seen ", " before)
        message("${table_file}: layer ${layer} depends on '${dep}', which is not a layer listed "
                "before it in MOEGRAPH_LAYERS (${before})")
        message(FATAL_ERROR "the layer table is not a DAG (above)")
      endif()
    endforeach()
    list(APPEND seen ${layer})
  endforeach()
endfunction()
