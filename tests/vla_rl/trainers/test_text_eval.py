"""Evaluating a text policy: greedy, sampled (avg@k) and majority-vote (maj@k) accuracy."""

from vla_rl.policies.lm.modeling_lm import LMPolicy
from vla_rl.text_tasks import make_text_task
from vla_rl.trainers.text_eval import evaluate_text


def test_sampled_accuracy_at_a_vanishing_temperature_is_the_greedy_accuracy():
    policy = LMPolicy.from_config("tiny", tasks=["sorting"], seed=0).eval()
    task = make_text_task("sorting")
    # a near-zero temperature samples the argmax: every sample is the greedy completion
    res = evaluate_text(policy, {"sorting": task}, "test", 5, 1, 12, samples=3, temperature=1e-4)["sorting"]
    assert res["sampled_success"] == res["success"] == res["majority_success"] and res["samples"] == 3
    low = evaluate_text(policy, {"sorting": task}, "test", 5, 1, 12, samples=4, temperature=5.0)["sorting"]
    assert low["success"] == res["success"] and "majority_success" in low
