# Fails when any C++/CUDA source in the tree differs from clang-format's output.
file(GLOB_RECURSE files ${SOURCE_DIR}/src/*.cpp ${SOURCE_DIR}/src/*.hpp ${SOURCE_DIR}/kernels/*.cpp
     ${SOURCE_DIR}/kernels/*.hpp ${SOURCE_DIR}/kernels/*.cu ${SOURCE_DIR}/kernels/*.cuh ${SOURCE_DIR}/tests/*.cpp
     ${SOURCE_DIR}/tests/*.hpp)
list(LENGTH files n)
execute_process(COMMAND ${CLANG_FORMAT} --dry-run --Werror ${files} RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "clang-format: these files need formatting (run clang-format -i on them):\n${err}")
endif()
message(STATUS "clang-format: ${n} files clean")
