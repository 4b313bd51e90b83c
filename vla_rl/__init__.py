"""vla-rl: reinforcement learning for robot Vision-Language-Action models.

`import vla_rl` stays light: no simulator, torch model or Ray is imported here. Heavy pieces are
imported where they are used (see `vla_rl.availability`).
"""

__version__ = "0.1.0"
