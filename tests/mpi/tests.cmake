# MPI tests: one flowlm_mpi_test line per tests/mpi/test_<name>.cpp (run at np 1, 2, 4).
flowlm_mpi_test(comm LIBS flowlm_comm)
flowlm_mpi_test(loader LIBS flowlm_data)
flowlm_mpi_test(checkpoint_mpi LIBS flowlm_io)
flowlm_mpi_test(train LIBS flowlm_train)
flowlm_mpi_test(average LIBS flowlm_train)
flowlm_mpi_test(score LIBS flowlm_train)
flowlm_mpi_test(flow LIBS flowlm_train NP 1)
flowlm_mpi_test(eval_tasks LIBS flowlm_eval)
