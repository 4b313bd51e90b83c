"""Rollout engines: the robot loop (`robot`) turning a policy and a vector env into samples."""
