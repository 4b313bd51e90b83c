"""The tokenizer corpus: problems of train-split seeds only, so no validation or test problem shapes the
vocabulary (the corpus once drew seeds from 10**6, the first validation seed)."""

from vla_rl.policies.lm.tokenization_lm import corpus_seeds, task_corpus
from vla_rl.splits import split_of, split_seeds
from vla_rl.text_tasks import make_text_task, prompt_text


def test_corpus_seeds_are_train_seeds_far_from_where_training_draws():
    seeds = corpus_seeds(500)
    assert len(set(seeds)) == 500 and all(split_of(s) == "train" for s in seeds)
    assert min(seeds) > 900_000  # GRPO and the text SFT draw train seeds from 0 upward


def test_the_corpus_holds_the_problems_of_those_seeds_and_no_held_out_one():
    task = make_text_task("arithmetic")
    corpus = task_corpus(("arithmetic",), n=50, difficulties=(3,))
    problems = [task.generate(s, 3) for s in corpus_seeds(50)]
    assert corpus == [x for p in problems for x in (prompt_text(task, p), p.solution)]
    for split in ("val", "test"):
        held = [task.generate(s, 3) for s in split_seeds(split, 50)]
        assert not {prompt_text(task, p) for p in held} & set(corpus)
