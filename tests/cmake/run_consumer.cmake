# Configure, build and run a consumer project of vitrify. Invoked by ctest as
#   cmake -DMODE=subdir|package -DCONSUMER_SOURCE=... -DWORK_DIR=... -DVITRIFY_SOURCE_DIR=...
#         -DVITRIFY_BINARY_DIR=... -DQUICKSTART=... -DGENERATOR=... -DCXX_COMPILER=... -DCONFIG=...
#         [-DSANITIZE=ON]
#         -P run_consumer.cmake
# MODE=package first installs the already-built vitrify tree into WORK_DIR/prefix.
cmake_minimum_required(VERSION 3.20)

foreach(v MODE CONSUMER_SOURCE WORK_DIR VITRIFY_SOURCE_DIR VITRIFY_BINARY_DIR QUICKSTART GENERATOR)
  if(NOT DEFINED ${v} OR "${${v}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer.cmake: ${v} is not set")
  endif()
endforeach()
if(NOT DEFINED CONFIG OR CONFIG STREQUAL "")
  set(CONFIG Release)
endif()

function(step what)
  message(STATUS "consumer (${MODE}): ${what}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc COMMAND_ECHO STDOUT)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer (${MODE}): ${what} failed (${rc})")
  endif()
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}/run")

set(configure_args
  -S "${CONSUMER_SOURCE}" -B "${WORK_DIR}/build" -G "${GENERATOR}"
  "-DCMAKE_BUILD_TYPE=${CONFIG}"
  "-DVITRIFY_QUICKSTART=${QUICKSTART}"
  # Never pick up a vitrify from the user's or system package registry.
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
  -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
if(DEFINED CXX_COMPILER AND NOT CXX_COMPILER STREQUAL "")
  list(APPEND configure_args "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
endif()

# A sanitized vitrify library needs a sanitized link (the flags are not part of its interface).
if(SANITIZE)
  set(san "-fsanitize=address,undefined -fno-omit-frame-pointer")
  list(APPEND configure_args "-DCMAKE_CXX_FLAGS=${san}" "-DCMAKE_EXE_LINKER_FLAGS=${san}")
endif()

if(MODE STREQUAL "subdir")
  list(APPEND configure_args "-DVITRIFY_SOURCE_DIR=${VITRIFY_SOURCE_DIR}")
elseif(MODE STREQUAL "package")
  set(prefix "${WORK_DIR}/prefix")
  step("install vitrify into ${prefix}"
       "${CMAKE_COMMAND}" --install "${VITRIFY_BINARY_DIR}" --prefix "${prefix}" --config "${CONFIG}")
  if(NOT EXISTS "${prefix}/include/vitrify/vitrify.hpp")
    message(FATAL_ERROR "consumer (package): install did not put the headers under ${prefix}/include")
  endif()
  list(APPEND configure_args "-DCMAKE_PREFIX_PATH=${prefix}" "-DVITRIFY_EXPECTED_PREFIX=${prefix}")
else()
  message(FATAL_ERROR "run_consumer.cmake: MODE must be subdir or package, not '${MODE}'")
endif()

step("configure" "${CMAKE_COMMAND}" ${configure_args})
step("build" "${CMAKE_COMMAND}" --build "${WORK_DIR}/build" --config "${CONFIG}" --parallel 2)

# Ninja/Makefiles put the program in the build folder, multi-config generators in a subfolder.
find_program(consumer_exe NAMES vitrify_consumer
             PATHS "${WORK_DIR}/build" "${WORK_DIR}/build/${CONFIG}" NO_DEFAULT_PATH REQUIRED)
execute_process(COMMAND "${consumer_exe}" WORKING_DIRECTORY "${WORK_DIR}/run"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message(STATUS "consumer (${MODE}) output:\n${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "consumer (${MODE}): the quickstart program failed (${rc})")
endif()
if(NOT EXISTS "${WORK_DIR}/run/quickstart.vit")
  message(FATAL_ERROR "consumer (${MODE}): the quickstart program wrote no quickstart.vit")
endif()
message(STATUS "consumer (${MODE}): OK")
