# One add_executable per benchmark program (tests/bench/bench_<name>.cpp); run by tests/bench/*.sh.
add_executable(bench_train bench/bench_train.cpp)
target_link_libraries(bench_train PRIVATE flowlm_train CLI11::CLI11)
target_compile_options(bench_train PRIVATE ${FLOWLM_WARNINGS})
add_executable(bench_average bench/bench_average.cpp)
target_link_libraries(bench_average PRIVATE flowlm_train CLI11::CLI11)
target_compile_options(bench_average PRIVATE ${FLOWLM_WARNINGS})
