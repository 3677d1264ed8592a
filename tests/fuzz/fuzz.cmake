# libFuzzer targets (FLOWLM_FUZZ=ON, clang; the sanitize preset adds ASan + UBSan): one program per
# reader of files that come from elsewhere. Each CTest test fuzz.<name> first runs every seed and
# regression input of tests/fuzz/corpus/<name>/ and then fuzzes for FLOWLM_FUZZ_SECONDS; a crash,
# sanitizer report, exception other than flowlm::Error, broken FLOWLM_FUZZ_CHECK or hang fails it
# and leaves the input in the build directory (see run_fuzz.sh).
add_library(flowlm_fuzz_support STATIC fuzz/fuzz.cpp fuzz/h5_spec.cpp)
target_link_libraries(flowlm_fuzz_support PUBLIC flowlm_io)
target_include_directories(flowlm_fuzz_support PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/fuzz)
target_compile_options(flowlm_fuzz_support PRIVATE -fsanitize=fuzzer-no-link ${FLOWLM_WARNINGS})

set(FLOWLM_FUZZ_SECONDS 7 CACHE STRING "Seconds each fuzz target fuzzes in its CTest test (after its corpus)")

# flowlm_fuzz_target(<name> LIBS ...): tests/fuzz/fuzz_<name>.cpp, corpus tests/fuzz/corpus/<name>/.
function(flowlm_fuzz_target name)
  cmake_parse_arguments(ARG "" "MAX_LEN" "LIBS" ${ARGN})
  add_executable(fuzz_${name} fuzz/fuzz_${name}.cpp)
  set_property(GLOBAL APPEND PROPERTY FLOWLM_TEST_PROGRAMS fuzz_${name})
  target_link_libraries(fuzz_${name} PRIVATE flowlm_fuzz_support ${ARG_LIBS})
  target_compile_options(fuzz_${name} PRIVATE -fsanitize=fuzzer ${FLOWLM_WARNINGS})
  target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer)
  add_test(NAME fuzz.${name}
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/run_fuzz.sh $<TARGET_FILE:fuzz_${name}>
                   ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/${name} ${CMAKE_CURRENT_BINARY_DIR}/fuzz/${name}
                   ${FLOWLM_FUZZ_SECONDS} ${ARG_MAX_LEN})
  set_tests_properties(fuzz.${name} PROPERTIES ENVIRONMENT "${FLOWLM_TEST_ENV};OMP_NUM_THREADS=1"
                       LABELS fuzz TIMEOUT 300)
endfunction()

flowlm_fuzz_target(job_toml LIBS flowlm_config MAX_LEN 8192)
flowlm_fuzz_target(token_shard LIBS flowlm_data MAX_LEN 4096)
flowlm_fuzz_target(sample_set LIBS flowlm_data MAX_LEN 4096)
flowlm_fuzz_target(scores LIBS flowlm_train MAX_LEN 4096)
flowlm_fuzz_target(safetensors LIBS flowlm_io MAX_LEN 65536)
flowlm_fuzz_target(tokenizer_json LIBS flowlm_data MAX_LEN 16384)
flowlm_fuzz_target(gpt2_bpe LIBS flowlm_data MAX_LEN 16384)
flowlm_fuzz_target(jsonl LIBS flowlm_data MAX_LEN 8192)
