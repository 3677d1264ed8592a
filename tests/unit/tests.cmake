# Unit tests: one flowlm_unit_test line per tests/unit/test_<name>.cpp.
flowlm_unit_test(data LIBS flowlm_data)
flowlm_unit_test(model LIBS flowlm_model)
flowlm_unit_test(optim LIBS flowlm_train)
flowlm_unit_test(config LIBS flowlm_config)
flowlm_unit_test(checkpoint LIBS flowlm_io)
flowlm_unit_test(kernels LIBS flowlm_kernels_host flowlm_kernels_ref)
target_link_libraries(unit_kernels PRIVATE flowlm_kernels)  # the Backend interface and make_backend
flowlm_unit_test(inherit LIBS flowlm_train)
flowlm_unit_test(flow LIBS flowlm_train)
flowlm_unit_test(sampleset LIBS flowlm_train)
flowlm_unit_test(recipes LIBS flowlm_train)
