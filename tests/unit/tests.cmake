# Unit tests: one flowlm_unit_test line per tests/unit/test_<name>.cpp.
