"""Simulator backends behind one vector-env contract (see `vla_rl.envs`)."""
