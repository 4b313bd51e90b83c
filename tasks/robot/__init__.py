"""Robot tasks on the native MuJoCo arm: scenes, initial states, success predicates and scripted experts
(`sims.mujoco.task.ArmTask` subclasses). Their ids, step limits and variants are env specs in `vla_rl.envs`."""
