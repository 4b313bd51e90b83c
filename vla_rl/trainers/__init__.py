"""Trainers: SFT on demonstrations and (one) GRPO trainer for both modalities.

`vla-rl train <config.yaml>` picks the job by the config's ``type`` key (default ``vla_grpo``); each entry
is a config schema whose ``run(console)`` runs the job.
"""

from vla_rl.registry import Registry

TRAIN_JOBS: Registry = Registry("training job type")
TRAIN_JOBS.register("vla_grpo", "vla_rl.trainers.grpo:GRPOConfig")
TRAIN_JOBS.register("quickstart", "vla_rl.trainers.quickstart:QuickstartConfig")
TRAIN_JOBS.register("text_grpo", "vla_rl.trainers.text_grpo:TextGRPOConfig")
TRAIN_JOBS.register("text_quickstart", "vla_rl.trainers.text_quickstart:TextQuickstartConfig")
TRAIN_JOBS.register("text_rlccf", "vla_rl.trainers.text_rlccf:RLCCFConfig")
