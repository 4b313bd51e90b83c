"""Text SFT: completion-only cross-entropy (checked against transformers' own loss) goes down; noisy
reference solutions are wrong at the asked rate."""

import random

import pytest
import torch

from vla_rl.policies.lm.modeling_lm import LMPolicy
from vla_rl.policies.lm.tokenization_lm import build_text_tokenizer, task_corpus
from vla_rl.text_tasks import make_text_task
from vla_rl.trainers.text_sft import corrupt_solution, noisy_solutions, text_sft, wrong_answer


@pytest.fixture(scope="module")
def tok():
    torch.set_num_threads(1)
    return build_text_tokenizer(task_corpus(("arithmetic",), n=40), vocab_size=400)


def test_sft_lowers_the_completion_loss_and_matches_transformers_loss(tok):
    task = make_text_task("arithmetic")
    examples = noisy_solutions(task, range(64), difficulty=1, noise=0.0)
    pol = LMPolicy.from_config("tiny", tok, seed=0)
    out = text_sft(pol, examples, steps=30, lr=3e-3, batch_size=16, seed=0)
    assert len(out["loss"]) == 30 and out["tokens"] > 0 and out["step_s"] > 0
    first, last = sum(out["loss"][:3]) / 3, sum(out["loss"][-3:]) / 3
    assert last < 0.6 * first, (first, last)
    # reference: Hugging Face's own loss with the prompt labelled -100, on one unpadded example
    fresh = LMPolicy.from_config("tiny", tok, seed=1)
    prompt, completion = examples[5]
    p_ids, c_ids = fresh.prompt_ids([prompt])[0], fresh.completion_ids([completion])[0]
    labels = torch.tensor([[-100] * len(p_ids) + c_ids])
    with torch.no_grad():
        ref = fresh.model(input_ids=torch.tensor([p_ids + c_ids]), labels=labels).loss
    got = text_sft(fresh, [(prompt, completion)], steps=1, lr=0.0, batch_size=1)["loss"][0]
    assert abs(got - float(ref)) < 1e-5


@pytest.mark.parametrize("name", ["arithmetic", "sorting", "countdown"])
def test_noisy_solutions_are_wrong_at_the_asked_rate(name):
    task = make_text_task(name)
    seeds = range(200)
    pairs = noisy_solutions(task, seeds, difficulty=2, noise=0.4, seed=1)
    scores = [task.verify(task.generate(s, 2), c) for s, (_, c) in zip(seeds, pairs, strict=True)]
    wrong = scores.count(0.0) / len(scores)
    assert 0.3 < wrong < 0.5 and set(scores) <= {0.0, 1.0}
    assert all(task.format_reward(c) == 1.0 for _, c in pairs)
    assert noisy_solutions(task, seeds, 2, 0.4, 1) == pairs  # deterministic
    assert all(
        task.verify(task.generate(s, 2), c) == 1.0
        for s, (_, c) in zip(seeds, noisy_solutions(task, seeds, 2, 0.0), strict=True)
    )


def test_corrupted_solution_is_self_consistent():
    task = make_text_task("arithmetic")
    p = task.generate(7, 1)
    bad = wrong_answer(task, p, random.Random(0))
    text = corrupt_solution(p, bad)
    assert text.endswith(f"\\boxed{{{bad}}}") and f"= {bad}." in text and task.verify(p, text) == 0.0
