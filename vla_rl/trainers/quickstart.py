"""The headline job (`make train`): ONE expert demo per task, SFT, then GRPO, judged on held-out seeds.

SimpleVLA-RL's phenomenon on a laptop: a policy cloned from one trajectory per task succeeds on a minority
of initial states; outcome-reward GRPO lifts it. Phases, each in its own sub-folder of ``out``:

1. ``data/<task>``: ``demos_per_task`` expert episodes from the train split (LeRobot v3 datasets);
2. ``sft``: behaviour cloning of the tiny VLA on them (`vla_rl.trainers.sft`);
3. success of the SFT policy on ``test_episodes`` test-split seeds per task (greedy, by the checkpoint's
   ``point_decoding``; ``also_test`` adds the other decoding's readings) -> ``success_before``;
4. ``grpo``: GRPO from the SFT checkpoint (`vla_rl.trainers.grpo`); its checkpoint is chosen on
   validation seeds only (``grpo/best``), never on test seeds; with ``time_budget_min`` it stops early
   (its ``max_wall_s``) so that the whole job ends within the budget;
5. the same test seeds again -> ``success_after``.

``results.json`` holds both readings per task and their mean (with 95% Wilson intervals), the env steps
of RL, and the wall time of each phase; ``curves.png`` is the GRPO run's plot.
"""

from __future__ import annotations

import copy
import shutil
import time
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import Field, ValidationError, create_model, field_validator, model_validator

from vla_rl.config import Config, format_validation_error
from vla_rl.envs import EnvConfig, check_task_id
from vla_rl.policies.vla.configuration_vla import PointDecoding
from vla_rl.trainers.grpo import GRPOConfig
from vla_rl.trainers.sft import SFTConfig


def section(schema: type[Config], fixed: tuple[str, ...], name: str) -> type[Config]:
    """The typed section of a job's YAML for one phase: ``schema``'s fields (nested groups, types, defaults and
    descriptions) less the top-level keys ``fixed`` that the job sets itself, unknown keys refused at load. The
    phase's own checks run when the job builds the phase's config (`sub_config`), also at load."""
    fields: dict[str, Any] = {k: (f.annotation, f) for k, f in schema.model_fields.items() if k not in fixed}

    def not_fixed(cls: type, data: Any) -> Any:
        clash = sorted(set(data) & set(fixed)) if isinstance(data, dict) else []
        if clash:
            raise ValueError(f"{clash} are set by the quickstart itself; remove them")
        return data

    return create_model(name, __base__=Config, __doc__=f"`{schema.__name__}` less {', '.join(fixed)}",
                        __validators__={"not_fixed": model_validator(mode="before")(not_fixed)}, **fields)


QuickstartSFT = section(SFTConfig, ("data", "out"), "QuickstartSFT")
QuickstartGRPO = section(GRPOConfig, ("type", "tasks", "init", "out"), "QuickstartGRPO")

C = TypeVar("C", bound=Config)

QUICKSTART_TASKS = ["mujoco/OpenDrawerNarrow-v1", "mujoco/PickCubeNarrow-v2", "mujoco/PushCubeNarrow-v2"]


class QuickstartConfig(Config):
    """`vla-rl train configs/quickstart.yaml`: one demo per task -> SFT -> GRPO, before/after on test seeds."""

    type: Literal["quickstart"] = "quickstart"
    tasks: list[str] = Field(default_factory=lambda: list(QUICKSTART_TASKS), min_length=1)
    demos_per_task: int = Field(1, ge=1, description="expert demos per task (train split, from its first seed)")
    demo_spread: float | None = Field(None, gt=0, le=1, description="draw the suite's demos from the centred "
                                      "fraction demo_spread of each initial-state range (`<task>@spread=<f>`: the "
                                      "demonstrator shows the task at its nominal set-up); None: from the task "
                                      "itself. Rollouts, validation and tests use the tasks as given")
    pretrain_tasks: list[str] = Field(
        default_factory=list, description="other tasks (not in `tasks`) whose demos join the SFT data, as a "
        "pretrained VLA's robot data would: never rolled out by GRPO nor tested")
    pretrain_demos: int = Field(20, ge=1, description="expert demos per pretraining task")
    image_size: int = Field(64, ge=16, description="camera resolution of the demos (and so of every rollout)")
    out: str = Field("runs/quickstart", description="run folder")
    sft: QuickstartSFT = Field(default_factory=QuickstartSFT,
                               description="`vla-rl sft` keys (data and out are set here)")
    grpo: QuickstartGRPO = Field(default_factory=QuickstartGRPO,
                                 description="`vla-rl train` GRPO keys (tasks, init and out are set here)")
    test_episodes: int = Field(200, ge=1, description="test-split seeds per task, before and after RL")
    env: EnvConfig = Field(default_factory=lambda: EnvConfig(num_envs=50), description="envs of the test evaluations")
    time_budget_min: float | None = Field(
        None, gt=0, description="wall budget of the whole job in minutes: GRPO stops after the iteration whose "
        "successor would leave too little time for the test after RL (its estimate: 1.2x the test before, + 15 s); "
        "null: GRPO runs all its iterations")
    also_test: list[PointDecoding] = Field(
        default_factory=list, description="other greedy point decodings to test before and after RL, reported "
        "beside the headline (which decodes as the policy's own `sft.policy.point_decoding`)")

    @field_validator("tasks", "pretrain_tasks")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        return [check_task_id(t) for t in v]

    @model_validator(mode="after")
    def _phases_valid(self) -> QuickstartConfig:
        if self.time_budget_min is not None and "max_wall_s" in self.grpo.model_fields_set:
            raise ValueError("set time_budget_min (the whole job's budget) or grpo.max_wall_s, not both")
        if self.demo_spread is not None:
            for t in self.tasks:
                check_task_id(self.demo_task(t))
        both = sorted(set(self.tasks) & set(self.pretrain_tasks))
        if both:
            raise ValueError(f"{both} are both suite and pretraining tasks: one demo per suite task is the point; "
                             "remove them from pretrain_tasks")
        self.sft_config()  # refuse bad phase keys at load, not twenty minutes in
        self.grpo_config()
        return self

    def demo_counts(self) -> dict[str, int]:
        """Expert demos to collect per task: the suite's, then the pretraining tasks' (the SFT data's order)."""
        return {t: self.demos_per_task for t in self.tasks} | {t: self.pretrain_demos for t in self.pretrain_tasks}

    def demo_task(self, task: str) -> str:
        """The env id ``task``'s demos are collected from (``demo_spread``'s variant of a suite task)."""
        from vla_rl.envs import variant_id

        if self.demo_spread is None or task not in self.tasks:
            return task
        return variant_id(task, spread=self.demo_spread)

    def dataset(self, task: str) -> Path:
        return Path(self.out) / "data" / task.split("/")[-1]

    def sft_config(self) -> SFTConfig:
        fixed = {"data": [str(self.dataset(t)) for t in self.demo_counts()], "out": str(Path(self.out) / "sft")}
        return sub_config(SFTConfig, self.sft.model_dump(exclude_unset=True), fixed, "sft")

    def grpo_config(self) -> GRPOConfig:
        out = Path(self.out)
        fixed = {"tasks": list(self.tasks), "init": str(out / "sft" / "best"), "out": str(out / "grpo")}
        return sub_config(GRPOConfig, self.grpo.model_dump(exclude_unset=True), fixed, "grpo")

    def run(self, console: Any = None) -> dict[str, Any]:
        return run_quickstart(self, console)


def sub_config(schema: type[C], keys: dict[str, Any], fixed: dict[str, Any], name: str) -> C:
    """``schema`` validated from a job's section ``keys`` (a nested dict) and the keys the job sets itself,
    ``fixed`` (dotted for a nested one: ``checkpoint.overwrite``), which the section may not set."""
    data = copy.deepcopy(keys)
    clash = []
    for dotted, value in fixed.items():
        *parents, leaf = dotted.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"{name}.{part} must be a mapping of keys")
        if leaf in node:
            clash.append(dotted)
        node[leaf] = value
    if clash:
        raise ValueError(f"{name}: {sorted(clash)} are set by the quickstart itself; remove them")
    try:
        return schema.model_validate(data)
    except ValidationError as e:  # name the keys as the quickstart's YAML spells them
        problems = format_validation_error(e, schema, name).splitlines()[1:]
        raise ValueError("; ".join(f"{name}.{p.strip()}" for p in problems)) from None


def run_quickstart(cfg: QuickstartConfig, console: Any = None) -> dict[str, Any]:
    """Run the five phases; writes ``<out>/results.json`` and returns it."""
    from vla_rl.plot import plot_run
    from vla_rl.utils.io import atomic_write_json

    job = _Quickstart(cfg, console)
    job.collect()
    sft = job.sft()
    job.say(f"[bold]3/5 test[/] the SFT policy on {cfg.test_episodes} test seeds per task")
    before = job.test(sft["checkpoint"], "before")
    job.lap("test_before")
    grpo, chosen = job.grpo()
    job.say(f"[bold]5/5 test[/] the GRPO policy ({chosen.name}, chosen on validation seeds) on the same test seeds")
    after = job.test(chosen, "after")
    job.lap("test_after")
    results = job.results(before, after, sft, grpo, chosen)
    try:
        results["plot"] = str(plot_run(chosen.parent, job.out / "curves.png"))
    except (FileNotFoundError, ValueError) as e:  # a run too short to draw is not a failure of the job
        job.say(f"no plot: {e}")
    atomic_write_json(job.out / "results.json", results)
    if console is not None:
        console.print(results_table(results))
    return results


class _Quickstart:
    """The phases of one quickstart run, the wall clock of each (``walls``) and the test results of other point
    decodings (``others``)."""

    def __init__(self, cfg: QuickstartConfig, console: Any) -> None:
        self.cfg, self.console = cfg, console
        self.say = console.print if console is not None else (lambda *a, **k: None)
        self.out = Path(cfg.out)
        for old in ("sft", "grpo"):  # a fresh run: no metrics appended to, or checkpoints resumed from, an old one
            if (self.out / old).exists():
                shutil.rmtree(self.out / old)
        self.walls: dict[str, float] = {}
        self.others: dict[str, dict[str, Any]] = {}
        self.decoded: dict[str, str] = {}  # when -> the checkpoint's own point decoding
        self.t_all = self.t = time.time()

    def lap(self, phase: str) -> None:
        """The seconds since the last lap are ``phase``'s."""
        now = time.time()
        self.walls[phase], self.t = now - self.t, now

    def collect(self) -> None:
        from vla_rl.data.recorder import collect

        cfg = self.cfg
        self.say(f"[bold]1/5 collect[/]: {cfg.demos_per_task} expert demo(s) per task of {', '.join(cfg.tasks)}"
                 + (f" (from the centred {cfg.demo_spread:g} of their ranges)" if cfg.demo_spread is not None else "")
                 + (f"; {cfg.pretrain_demos} per pretraining task of {', '.join(cfg.pretrain_tasks)}"
                    if cfg.pretrain_tasks else ""))
        for task, n in cfg.demo_counts().items():
            collect(cfg.demo_task(task), n, out=cfg.dataset(task), image_size=cfg.image_size, progress=False,
                    overwrite=True)
        self.lap("collect")

    def sft(self) -> dict[str, Any]:
        from vla_rl.trainers.sft import train_sft

        self.say("[bold]2/5 SFT[/] on the demos")
        sft = train_sft(self.cfg.sft_config(), self.console)
        self.lap("sft")
        return sft

    def test(self, checkpoint: str | Path, when: str) -> dict[str, dict[str, Any]]:
        """Greedy success per task on the test seeds, by the checkpoint's own point decoding (and ``also_test``)."""
        from vla_rl.evaluation import evaluate_policy
        from vla_rl.policies.vla.modeling_vla import VLAPolicy

        cfg = self.cfg
        policy = VLAPolicy.from_pretrained(checkpoint).eval()
        own = self.decoded[when] = policy.config.point_decoding
        res = evaluate_policy(policy, cfg.tasks, "test", cfg.test_episodes, cfg.env)
        _say_success(self.say, f"{when} RL ({own})", res)
        for point in dict.fromkeys(p for p in cfg.also_test if p != own):
            other = evaluate_policy(policy, cfg.tasks, "test", cfg.test_episodes, cfg.env, point_decoding=point)
            _say_success(self.say, f"{when} RL ({point})", other)
            self.others.setdefault(point, {})[f"success_{when}"] = _rates(other)
            self.others[point][f"ci95_{when}"] = {k: v["ci95"] for k, v in other.items()}
        return res

    def grpo(self) -> tuple[dict[str, Any], Path]:
        """GRPO from the SFT policy within what the time budget leaves; returns its summary and the checkpoint
        chosen on validation (best/, else last/)."""
        from vla_rl.trainers.grpo import GRPOTrainer

        cfg = self.cfg
        grpo_cfg = cfg.grpo_config()
        if cfg.time_budget_min is not None:  # leave the test after RL the time the test before took, and a margin
            left = cfg.time_budget_min * 60 - (time.time() - self.t_all) - (1.2 * self.walls["test_before"] + 15)
            grpo_cfg = grpo_cfg.model_copy(update={"max_wall_s": max(left, 1.0)})
        self.say("[bold]4/5 GRPO[/] from the SFT policy"
                 + (f" (time budget {grpo_cfg.max_wall_s:.0f} s)" if grpo_cfg.max_wall_s else ""))
        trainer = GRPOTrainer(grpo_cfg, self.console)
        try:
            grpo = trainer.train()
        finally:
            trainer.close()
        self.lap("grpo")
        grpo_dir = self.out / "grpo"
        return grpo, grpo_dir / ("best" if (grpo_dir / "best").is_dir() else "last")

    def results(self, before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]], sft: dict[str, Any],
                grpo: dict[str, Any], chosen: Path) -> dict[str, Any]:
        """What ``results.json`` holds."""
        cfg = self.cfg
        results = {
            "tasks": list(cfg.tasks),
            "demos_per_task": cfg.demos_per_task,
            "pretrain_demos": {t: cfg.pretrain_demos for t in cfg.pretrain_tasks},
            "test_episodes": cfg.test_episodes,
            "point_decoding": self.decoded["after"],
            "success_before": _rates(before),
            "success_after": _rates(after),
            "ci95_before": {k: v["ci95"] for k, v in before.items()},
            "ci95_after": {k: v["ci95"] for k, v in after.items()},
            "env_steps": int(grpo["env_steps"]),
            "grpo_iterations": int(grpo["iterations"]),
            "grpo_stopped_by_time": bool(grpo["stopped_by_time"]),
            "time_budget_s": None if cfg.time_budget_min is None else cfg.time_budget_min * 60,
            "sft_checkpoint": str(sft["checkpoint"]),
            "grpo_checkpoint": str(chosen),
            "wall_s": time.time() - self.t_all,
            "phase_wall_s": self.walls,
        }
        results["improvement"] = results["success_after"]["mean"] - results["success_before"]["mean"]
        if self.others:
            results["other_decodings"] = self.others
        return results


def _rates(res: dict[str, dict[str, Any]]) -> dict[str, float]:
    rates = {task: float(v["success"]) for task, v in res.items()}
    return rates | {"mean": float(np.mean(list(rates.values())))}


def _say_success(say: Any, label: str, res: dict[str, dict[str, Any]]) -> None:
    say(f"{label}: " + ", ".join(f"{t.split('/')[-1]} {v['success']:.1%}" for t, v in res.items()))


def _pct(p: float, ci: list[float] | None) -> str:
    return f"{p:.1%}" + (f" [{ci[0]:.0%}, {ci[1]:.0%}]" if ci else "")


def results_table(results: dict[str, Any]) -> Any:
    """A rich table of success before / after RL per task and their mean."""
    from rich.table import Table

    table = Table(title=f"quickstart: {results['demos_per_task']} demo(s) per task, "
                        f"{results['test_episodes']} test seeds per task")
    for col in ("task", "success before RL", "success after RL", "change"):
        table.add_column(col, justify="left" if col == "task" else "right")
    own = results.get("point_decoding")
    readings = [(own, results)] + list(results.get("other_decodings", {}).items())
    for point, r in readings:
        before, after = r["success_before"], r["success_after"]
        for task in [*results["tasks"], "mean"]:
            ci_b, ci_a = r["ci95_before"].get(task), r["ci95_after"].get(task)
            name = task if point == own else f"{task} ({point})"
            table.add_row(name, _pct(before[task], ci_b), _pct(after[task], ci_a),
                          f"{after[task] - before[task]:+.1%}", end_section=task == "mean")
    table.caption = (f"greedy decoding: {own or 'argmax'}; "
                     f"{results['env_steps']} RL env steps, {results['grpo_iterations']} GRPO iterations"
                     + (" (time budget)" if results.get("grpo_stopped_by_time") else "") + "; "
                     f"wall {results['wall_s'] / 60:.1f} min")
    return table
