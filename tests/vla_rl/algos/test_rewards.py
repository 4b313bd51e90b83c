"""RLCCF's collective vote against a hand-computed case."""

from vla_rl.algos.rewards import collective_vote_rewards


def test_collective_vote_weights_models_by_self_consistency():
    # prompt 0: model 0 always answers 5 (SC 1); models 1 and 2 lean to 7 (SC 0.75 and 0.5). Pooled, 7 has 5
    # votes to 5's 4, but weighted: V(5) = 1 * 4/4 = 1 > V(7) = 0.75 * 3/4 + 0.5 * 2/4 = 0.8125.
    answers = [5, 5, 5, 5, 7, 7, 7, 9, 7, 7, 8, 9, None, 3]
    model = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 0, 1]
    prompt = [0] * 12 + [1, 1]
    rewards, info = collective_vote_rewards(answers, model, prompt)
    assert info[0]["label"] == 5
    assert info[0]["self_consistency"] == {0: 1.0, 1: 0.75, 2: 0.5}
    assert rewards.tolist() == [1.0] * 4 + [0.0] * 8 + [0.0, 1.0]  # prompt 1: only model 1 voted (3)
    assert info[1]["self_consistency"] == {0: 0.0, 1: 1.0}
