# Tokenizers against the Hugging Face `tokenizers` and `sentencepiece` libraries (tests/hf/tokenizers):
# each kind of tokenizer file is trained in the test on tests/data/tokenizer_corpus.txt, and
# flowlm's encodings (through tok_tool) must equal the library's.
add_executable(tok_tool hf/tokenizers/tok_tool.cpp)
target_link_libraries(tok_tool PRIVATE flowlm_data)
target_compile_options(tok_tool PRIVATE ${FLOWLM_WARNINGS})

flowlm_unit_test(tokenizer LIBS flowlm_data)

if(FLOWLM_HF_PYTHON)
  # One CTest test per kind, so each stays a few seconds and failures name the kind.
  foreach(kind gpt2json gpt2files llama3json qwen2json llama2json llama2model mistraljson gemmajson gemmamodel pretok prepare)
    add_test(NAME hf.tokenizers.${kind}
             COMMAND ${FLOWLM_HF_PYTHON} -m pytest -q -rs -p no:cacheprovider
                     ${CMAKE_CURRENT_SOURCE_DIR}/hf/tokenizers/check_tokenizers.py -k ${kind})
    set_tests_properties(hf.tokenizers.${kind} PROPERTIES
                         ENVIRONMENT "${FLOWLM_TEST_ENV};OMP_NUM_THREADS=1;FLOWLM_TOK_TOOL=$<TARGET_FILE:tok_tool>;FLOWLM_BIN=$<TARGET_FILE:flowlm>;PYTHONDONTWRITEBYTECODE=1;TRANSFORMERS_OFFLINE=1;HF_HUB_OFFLINE=1;TRANSFORMERS_VERBOSITY=error;TOKENIZERS_PARALLELISM=false"
                         LABELS hf TIMEOUT 300)
  endforeach()
endif()
