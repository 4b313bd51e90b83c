"""Beyond one process: the data-parallel learner (`vla_rl.distributed.learner`)."""
