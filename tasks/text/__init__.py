"""Text-reasoning tasks: procedurally generated, automatically verified problems for RL on language models.

* `tasks.text.base` - the `TextTask` contract and the `Problem` record.
* `tasks.text.generators` - built-in tasks registered in `TEXT_TASKS` (`make_text_task("countdown")`).
* `tasks.text.extract` / `tasks.text.equivalence` / `tasks.text.units` - answer extraction and checking.
* `tasks.text.reasoning_gym` - reasoning-gym datasets as tasks (`make_text_task("rg/<dataset>")`).
* `tasks.text.hipho` - HiPhO-style physics-olympiad exam grading (`vla-rl grade-exam`).

Nothing is imported here, so importing the package stays cheap.
"""
