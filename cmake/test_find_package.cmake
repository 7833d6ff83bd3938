# Installs the build into a scratch prefix, then configures, builds and runs
# examples/consumer (a separate CMake project using find_package(moegraph)).
set(prefix ${BUILD_DIR}/test-tmp/install)
set(consumer ${BUILD_DIR}/test-tmp/consumer)
file(REMOVE_RECURSE ${prefix} ${consumer})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix}
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(rc)
  message(FATAL_ERROR "install failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/examples/consumer -B ${consumer} -G Ninja
                -DCMAKE_PREFIX_PATH=${prefix} RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "configuring the consumer failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${consumer} RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "building the consumer failed")
endif()
execute_process(COMMAND ${consumer}/consumer ${BUILD_DIR}/test-tmp RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "the consumer failed")
endif()
