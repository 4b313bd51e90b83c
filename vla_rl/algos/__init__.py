"""The one algorithm core: pure tensor functions over samples, registered by name.

A sample is (context, response tokens, behaviour log-probs, response mask, group id, reward/advantage);
a robot step and a text answer look the same here. Nothing in this package imports a simulator,
tokenizer or model class.

* `advantages`: GRPO, Dr.GRPO, RLOO (``ADVANTAGES``)
* `losses`: policy losses (``POLICY_LOSSES``): PPO clip (+ clip-higher, dual clip), Clip-Cov, KL-Cov,
  NFT, LUFFY; KL estimators (``KL_ESTIMATORS``); aggregation (``agg_loss``)
* `sampling`: dynamic sampling filter, LUFFY group mixing
* `rewards`: outcome reward, TTRL majority vote, overlong shaping
"""

from vla_rl.algos.advantages import ADVANTAGES, compute_advantages
from vla_rl.algos.losses import AGG_MODES, KL_ESTIMATORS, POLICY_LOSSES, agg_loss, kl_penalty

__all__ = ["ADVANTAGES", "AGG_MODES", "KL_ESTIMATORS", "POLICY_LOSSES", "agg_loss", "compute_advantages",
           "kl_penalty"]
