"""Text-reasoning tasks: procedurally generated, automatically verified problems for RL on language models.

* `tasks.text.base` - `ProceduralTextTask`, the base class implementing the core's contract
  (`vla_rl.text_tasks`: `TextTask`, `Problem`, the `TEXT_TASKS` registry and `make_text_task`).
* `tasks.text.generators` - the built-in tasks (`make_text_task("countdown")`).
* `tasks.text.extract` / `tasks.text.equivalence` / `tasks.text.units` - answer extraction and checking.
* `tasks.text.reasoning_gym` - reasoning-gym datasets as tasks (`make_text_task("rg/<dataset>")`).
* `tasks.text.hipho` - HiPhO-style physics-olympiad exam grading (`vla-rl grade-exam`).

Nothing is imported here, so importing the package stays cheap.
"""
