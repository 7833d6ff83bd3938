# Checks that every #include "..." in a layer's files names a header of the
# same layer or of a layer it declares in cmake/layers.cmake (the `layers.includes`
# test). The libraries are static, so a call across a back-edge would only fail
# to link where a binary that lacks the upper layer uses it; this makes the
# include itself an error, naming the file, the line and the forbidden edge.
#
#   cmake -DSOURCE_DIR=<tree> [-DLAYERS_FILE=<table>] -P cmake/check_layers.cmake
#
# Folders that are not layers (tests/, tools/, bench/, fuzz/, examples/) may
# include any layer: they link the libraries they use.
cmake_minimum_required(VERSION 3.25)

if(NOT SOURCE_DIR)
  message(FATAL_ERROR "check_layers.cmake: pass -DSOURCE_DIR=<the source tree to check>")
endif()
if(NOT LAYERS_FILE)
  set(LAYERS_FILE ${CMAKE_CURRENT_LIST_DIR}/layers.cmake)
endif()
include(${LAYERS_FILE})
moegraph_check_layer_table(${LAYERS_FILE})

foreach(layer ${MOEGRAPH_LAYERS})
  foreach(dir ${MOEGRAPH_LAYER_DIRS_${layer}})
    set(layer_of_${dir} ${layer})
  endforeach()
  # Everything the layer reaches (the table is bottom-up: its deps' closures are known).
  set(closure_${layer} ${MOEGRAPH_LAYER_DEPS_${layer}})
  foreach(dep ${MOEGRAPH_LAYER_DEPS_${layer}})
    list(APPEND closure_${layer} ${closure_${dep}})
  endforeach()
  list(JOIN MOEGRAPH_LAYER_DEPS_${layer} ", " deps_text_${layer})
  if(deps_text_${layer} STREQUAL "")
    set(deps_text_${layer} "(none)")
  endif()
endforeach()

set(violations "")
set(num_files 0)
set(num_includes 0)
foreach(layer ${MOEGRAPH_LAYERS})
  foreach(dir ${MOEGRAPH_LAYER_DIRS_${layer}})
    file(GLOB files LIST_DIRECTORIES false RELATIVE ${SOURCE_DIR}
         ${SOURCE_DIR}/${dir}/*.h ${SOURCE_DIR}/${dir}/*.cc ${SOURCE_DIR}/${dir}/*.c
         ${SOURCE_DIR}/${dir}/*.cu ${SOURCE_DIR}/${dir}/*.cuh)
    list(SORT files)
    foreach(file ${files})
      math(EXPR num_files "${num_files} + 1")
      file(READ ${SOURCE_DIR}/${file} content)
      string(REGEX MATCHALL "(^|\n)[ \t]*#[ \t]*include[ \t]*\"[^\"\n]+\"" includes "${content}")
      foreach(include_line ${includes})
        math(EXPR num_includes "${num_includes} + 1")
        string(REGEX REPLACE ".*\"([^\"]+)\"$" "\\1" header "${include_line}")
        # The line number: newlines before the match, plus the one the match starts with.
        string(FIND "${content}" "${include_line}" pos)
        string(SUBSTRING "${content}" 0 ${pos} before)
        string(REGEX MATCHALL "\n" newlines "${before}")
        list(LENGTH newlines line)
        if(include_line MATCHES "^\n")
          math(EXPR line "${line} + 2")
        else()
          math(EXPR line "${line} + 1")
        endif()

        if(NOT header MATCHES "/")
          continue()  # next to the including file: the same layer
        endif()
        get_filename_component(header_dir ${header} DIRECTORY)
        if(EXISTS ${SOURCE_DIR}/include/${header})
          set(header_dir include/${header_dir})  # "moegraph/moegraph.h": the public headers
        endif()
        set(target_layer "${layer_of_${header_dir}}")
        if(target_layer STREQUAL layer)
          continue()
        endif()
        if(target_layer STREQUAL "")
          list(APPEND violations
               "${file}:${line}: includes \"${header}\": ${header_dir}/ is not a layer's folder in ${LAYERS_FILE}. ${layer} may use only its own folders and: ${deps_text_${layer}}")
          continue()
        endif()
        if(target_layer IN_LIST MOEGRAPH_LAYER_DEPS_${layer})
          continue()
        endif()
        if(layer IN_LIST closure_${target_layer})
          set(why "a back-edge: ${target_layer} is a layer above ${layer}, it uses ${layer}")
        else()
          set(why "${target_layer} is not among the layers ${layer} declares")
        endif()
        list(APPEND violations
             "${file}:${line}: includes \"${header}\": forbidden edge ${layer} -> ${target_layer} (${why}). ${layer} may use: ${deps_text_${layer}} (${LAYERS_FILE})")
      endforeach()
    endforeach()
  endforeach()
endforeach()

if(NOT violations STREQUAL "")
  list(LENGTH violations num_violations)
  foreach(violation ${violations})
    message("${violation}")  # one unwrapped line each, for editors to jump to
  endforeach()
  message(FATAL_ERROR "${num_violations} include(s) break the layer DAG (above)")
endif()
message(STATUS "layers: ${num_files} files, ${num_includes} includes, every one within the layer DAG")
