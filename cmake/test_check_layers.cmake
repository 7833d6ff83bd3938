# The `layers.checker` test: runs cmake/check_layers.cmake on small trees
# written under WORK_DIR, with the real layer table, and checks that it passes
# a tree within the DAG and rejects each kind of forbidden edge with the
# file, the line and the edge.
#
#   cmake -DSOURCE_DIR=<repo> -DWORK_DIR=<scratch> -P cmake/test_check_layers.cmake
cmake_minimum_required(VERSION 3.25)

set(checker ${SOURCE_DIR}/cmake/check_layers.cmake)
set(table ${SOURCE_DIR}/cmake/layers.cmake)
set(failures "")

# A tree within the DAG: each file's includes are its own layer's or declared ones.
function(write_clean_tree dir)
  file(REMOVE_RECURSE ${dir})
  file(WRITE ${dir}/support/status.h "#pragma once\n")
  file(WRITE ${dir}/ir/graph.h "// Graphs.\n#pragma once\n\n#include \"support/status.h\"\n")
  file(WRITE ${dir}/ir/graph.cc "#include \"ir/graph.h\"\n#include \"local.h\"\n")
  file(WRITE ${dir}/kernels/kernel_abi.h "#pragma once\n#include \"ir/graph.h\"\n")
  file(WRITE ${dir}/kernels/cpu/dispatch.h "#pragma once\n#include \"kernels/kernel_abi.h\"\n")
  file(WRITE ${dir}/plan/plan_file.cc "#include \"plan/plan_generated.h\"\n#include <vector>\n")
  file(WRITE ${dir}/runtime/engine.cc
       "// Engine.\n#include \"plan/plan_file.h\"\n  #  include \"kernels/cpu/dispatch.h\"\n"
       "// #include \"compiler/compile_model.h\" (a comment, not an include)\n")
  file(WRITE ${dir}/include/moegraph/moegraph.h "#pragma once\n#include \"runtime/engine.h\"\n")
  file(WRITE ${dir}/api/c_api.cc "#include \"moegraph/moegraph.h\"\n")
  # Not a layer: tests may include any layer.
  file(WRITE ${dir}/tests/engine_test.cc "#include \"interpreter/interpreter.h\"\n")
endfunction()

# Runs the checker on `dir` (with `table_file`); sets rc and out in the caller.
function(run_checker dir table_file)
  execute_process(COMMAND ${CMAKE_COMMAND} -DSOURCE_DIR=${dir} -DLAYERS_FILE=${table_file}
                          -P ${checker}
                  RESULT_VARIABLE code OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
  set(rc ${code} PARENT_SCOPE)
  set(out "${stdout}${stderr}" PARENT_SCOPE)
endfunction()

# `name`: the checker must fail on `dir` and print every one of the ARGN lines.
function(expect_rejected name dir table_file)
  run_checker(${dir} ${table_file})
  if(rc EQUAL 0)
    set(failures "${failures}\n${name}: the checker passed, expected it to fail:\n${out}" PARENT_SCOPE)
    return()
  endif()
  foreach(expected ${ARGN})
    string(FIND "${out}" "${expected}" at)
    if(at EQUAL -1)
      set(failures "${failures}\n${name}: expected '${expected}' in:\n${out}" PARENT_SCOPE)
      return()
    endif()
  endforeach()
endfunction()

set(clean ${WORK_DIR}/clean)
write_clean_tree(${clean})
run_checker(${clean} ${table})
if(NOT rc EQUAL 0)
  set(failures "${failures}\nclean tree: the checker failed:\n${out}")
elseif(NOT out MATCHES "layers: 9 files, 10 includes, every one within the layer DAG")
  set(failures "${failures}\nclean tree: expected 9 files and 10 includes checked:\n${out}")
endif()

# A back-edge: the checkpoint includes the compiler, which uses the checkpoint.
set(tree ${WORK_DIR}/back_edge)
write_clean_tree(${tree})
file(WRITE ${tree}/checkpoint/weights.cc "// Weights.\n#include \"plan/plan.h\"\n#include \"compiler/compile_model.h\"\n")
expect_rejected("back-edge" ${tree} ${table}
  "checkpoint/weights.cc:3: includes \"compiler/compile_model.h\": forbidden edge checkpoint -> compiler (a back-edge: compiler is a layer above checkpoint, it uses checkpoint)"
  "1 include(s) break the layer DAG")

# A layer below, but not declared: passes does not use the checkpoint.
set(tree ${WORK_DIR}/undeclared)
write_clean_tree(${tree})
file(WRITE ${tree}/passes/dce.cc "\n\n\n#include \"checkpoint/safetensors.h\"\n")
expect_rejected("undeclared layer" ${tree} ${table}
  "passes/dce.cc:4: includes \"checkpoint/safetensors.h\": forbidden edge passes -> checkpoint (checkpoint is not among the layers passes declares). passes may use: ir, support")

# The public headers belong to the api layer, above every other.
set(tree ${WORK_DIR}/public_header)
write_clean_tree(${tree})
file(WRITE ${tree}/frontends/family.cc "#include \"moegraph/moegraph.h\"\n")
expect_rejected("public header" ${tree} ${table}
  "frontends/family.cc:1: includes \"moegraph/moegraph.h\": forbidden edge frontends -> api (a back-edge")

# A folder that is no layer (tests/) included from a layer; two errors, both listed.
set(tree ${WORK_DIR}/not_a_layer)
write_clean_tree(${tree})
file(WRITE ${tree}/plan/plan_file.h "#pragma once\n#include \"tests/temp_dir_test.h\"\n")
file(APPEND ${tree}/kernels/kernel_abi.h "#include \"runtime/engine.h\"\n")
expect_rejected("not a layer" ${tree} ${table}
  "plan/plan_file.h:2: includes \"tests/temp_dir_test.h\": tests/ is not a layer's folder"
  "kernels/kernel_abi.h:3: includes \"runtime/engine.h\": forbidden edge kernel_abi -> runtime (a back-edge"
  "2 include(s) break the layer DAG")

# A table whose layer depends on one listed after it is no DAG.
set(cyclic_table ${WORK_DIR}/cyclic_layers.cmake)
file(WRITE ${cyclic_table} "include(${table})\nset(MOEGRAPH_LAYER_DEPS_ir support passes)\n")
expect_rejected("cyclic table" ${clean} ${cyclic_table}
  "layer ir depends on 'passes', which is not a layer listed before it in MOEGRAPH_LAYERS")

if(NOT failures STREQUAL "")
  message(FATAL_ERROR "check_layers.cmake misbehaved:${failures}")
endif()
message(STATUS "check_layers.cmake: passes a tree within the DAG, rejects 5 kinds of forbidden edge")
