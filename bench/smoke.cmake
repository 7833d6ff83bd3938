# bench.smoke: runs the driver and the kernel suite in smoke mode and fails
# only if either fails to run or prints no summary.
file(MAKE_DIRECTORY ${WORK_DIR})
execute_process(COMMAND ${DRIVER} --smoke --cache-dir ${WORK_DIR}
  RESULT_VARIABLE driver_result OUTPUT_VARIABLE driver_out ERROR_VARIABLE driver_err)
message("${driver_out}")
if(NOT driver_result EQUAL 0)
  message(FATAL_ERROR "moegraph-bench --smoke failed (${driver_result}): ${driver_err}")
endif()
if(NOT driver_out MATCHES "prefill MoE GEMMs" OR NOT driver_out MATCHES "peak RSS"
   OR NOT driver_out MATCHES "decode batch 1 \\(real\\)")
  message(FATAL_ERROR "moegraph-bench --smoke printed no summary")
endif()
if(KERNELS)
  execute_process(COMMAND ${KERNELS} --smoke --benchmark_out=${WORK_DIR}/kernels.json
                          --benchmark_out_format=json
    RESULT_VARIABLE kernels_result OUTPUT_VARIABLE kernels_out ERROR_VARIABLE kernels_err)
  message("${kernels_out}")
  if(NOT kernels_result EQUAL 0)
    message(FATAL_ERROR "moegraph-kernel-bench --smoke failed (${kernels_result}): ${kernels_err}")
  endif()
  if(NOT kernels_out MATCHES "grouped_matmul_silu_mul/prefill/")
    message(FATAL_ERROR "moegraph-kernel-bench --smoke ran no kernel benchmark")
  endif()
endif()
