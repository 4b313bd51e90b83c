"""`vla-rl`: one command line over the library.

Every command takes an optional YAML config, ``dotted.key=value`` overrides and ``--key value`` flags
(the same keys), all validated by the command's schema:

    vla-rl eval --policy expert --task all --episodes 50 --split test
    vla-rl eval configs/eval_expert.yaml env.num_envs=16
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from vla_rl.availability import DependencyNotInstalled
from vla_rl.config import Config, ConfigError, describe, load_config
from vla_rl.policies.checkpoint import CheckpointError

COMMANDS: dict[str, tuple[str, Callable[[list[str]], int]]] = {}


def command(name: str, summary: str) -> Callable[[Callable[[list[str]], int]], Callable[[list[str]], int]]:
    def deco(fn: Callable[[list[str]], int]) -> Callable[[list[str]], int]:
        COMMANDS[name] = (summary, fn)
        return fn

    return deco


def parse_args(schema: type[Config], argv: list[str], prog: str) -> Config:
    """``[config.yaml] [key=value ...] [--key value ...] [--flag]`` -> a validated ``schema``."""
    if any(a in ("-h", "--help") for a in argv):
        print(f"usage: vla-rl {prog} [config.yaml] [key=value ...] [--key value ...]\n\n"
              f"{(schema.__doc__ or '').strip()}\n\nkeys:")
        print("\n".join("  " + line for line in describe(schema)))
        raise SystemExit(0)
    path, overrides, i = None, [], 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--"):
            key = a[2:].replace("-", "_")
            if "=" in key:
                overrides.append(key)
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                overrides.append(f"{key}={argv[i + 1]}")
                i += 1
            else:
                overrides.append(f"{key}=true")
        elif "=" in a:
            overrides.append(a)
        elif a.endswith((".yaml", ".yml")) and path is None:
            path = a
        else:
            raise ConfigError(f"unexpected argument {a!r}: give a config.yaml, key=value or --key value")
        i += 1
    return load_config(schema, path, overrides)


def _console() -> Any:
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=120)  # logs and CI: no truncated names


@command("tasks", "list the registered robot tasks")
def _tasks(argv: list[str]) -> int:
    from vla_rl.envs import robot_task_ids

    print("\n".join(robot_task_ids()))
    return 0


@command("sim", "run one episode of a task (expert or random) and save an mp4 of both cameras")
def _sim(argv: list[str]) -> int:
    from vla_rl.evaluation import SimConfig, run_sim

    cfg = parse_args(SimConfig, argv, "sim")
    r = run_sim(cfg)  # type: ignore[arg-type]
    print(f"{r['task']} seed {cfg.seed}: '{r['instruction']}' -> "
          f"{'success' if r['success'] else 'failure'} in {r['steps']} steps; video: {r['video']}")
    return 0


@command("eval", "evaluate a policy (expert, random or a checkpoint) on tasks over a seed split")
def _eval(argv: list[str]) -> int:
    from rich.table import Table

    from vla_rl.evaluation import EvalConfig, evaluate

    cfg = parse_args(EvalConfig, argv, "eval")
    console = _console()
    res = evaluate(cfg, console)  # type: ignore[arg-type]
    table = Table(title=f"policy={res['policy']} split={res['split']}")
    for col in ("task", "success", "95% CI", "episodes", "lost", "mean steps"):
        table.add_column(col)
    for task, r in res["tasks"].items():
        table.add_row(task, f"{r['success']:.1%}", f"[{r['ci95'][0]:.1%}, {r['ci95'][1]:.1%}]",
                      str(r["episodes"]), str(r["lost"]), f"{r['mean_steps']:.0f}")
    table.add_row("mean", f"{res['mean_success']:.1%}", "", "", "", "")
    console.print(table)
    console.print(f"wrote {cfg.out}/eval.json")
    return 0


class CollectConfig(Config):
    """`vla-rl collect`: record episodes of a task as a LeRobot v3 dataset (or a zarr replay buffer)."""

    task: str = Field("mujoco/PickCube-v1", description="robot task id")
    episodes: int = Field(50, ge=1)
    policy: str = Field("expert", description="'expert' or a checkpoint folder")
    out: str = Field("data/demos", description="dataset folder")
    format: Literal["lerobot", "zarr"] = "lerobot"
    split: Literal["train", "val", "test"] = "train"
    start: int = Field(0, ge=0, description="index of the first seed within the split")
    image_size: int = Field(128, ge=16, le=1024)
    only_success: bool | None = Field(None, description="keep successful episodes only (default: expert yes)")
    noise: float = Field(0.0, ge=0, description="expert only: DART noise std on the executed translation "
                         "(the recorded action stays the expert's; replay regenerates the noise from the seed)")
    overwrite: bool = False

    @field_validator("task")
    @classmethod
    def _known(cls, v: str) -> str:
        from vla_rl.envs import check_task_id

        return check_task_id(v)


@command("collect", "record episodes (expert or checkpoint) as a LeRobot v3 dataset or zarr buffer")
def _collect(argv: list[str]) -> int:
    from vla_rl.data.recorder import collect
    from vla_rl.evaluation import VLAChunkPolicy

    cfg = parse_args(CollectConfig, argv, "collect")
    policy: Any = cfg.policy if cfg.policy == "expert" else VLAChunkPolicy.from_pretrained(cfg.policy)  # greedy
    s = collect(cfg.task, cfg.episodes, policy, cfg.out, fmt=cfg.format, split=cfg.split, start=cfg.start,
                image_size=cfg.image_size, only_success=cfg.only_success, overwrite=cfg.overwrite,
                noise=cfg.noise)
    print(f"{s['task']}: kept {s['kept']}/{s['attempted']} episodes ({s['frames']} frames, "
          f"success {s['success_rate']:.0%}) -> {s['out']} in {s['elapsed_s']:.1f} s")
    return 0


class ReplayConfig(Config):
    """`vla-rl replay <dataset>`: re-execute a recorded episode from its seed; print the deviation."""

    dataset: str = Field(..., description="LeRobot dataset folder")
    episode: int = Field(0, ge=0)
    video: str | None = Field(None, description="write recorded | replayed side by side to this mp4")


@command("replay", "re-execute a recorded episode in the sim and print the largest state deviation")
def _replay(argv: list[str]) -> int:
    from vla_rl.data.replay import replay_episode

    if argv and not argv[0].startswith("-") and "=" not in argv[0]:
        argv = [f"dataset={argv[0]}", *argv[1:]]
    cfg = parse_args(ReplayConfig, argv, "replay")
    video = cfg.video if cfg.video not in (None, "true") else f"{cfg.dataset.rstrip('/')}_replay_{cfg.episode}.mp4"
    r = replay_episode(cfg.dataset, cfg.episode, video=video if cfg.video else None)
    print(f"{r['task']} episode {r['episode']} (seed {r['seed']}, {r['steps']} steps): max state deviation "
          f"{r['max_state_deviation']:.3g}, max pixel deviation {r['max_pixel_deviation']}, success recorded "
          f"{r['recorded_success']} replayed {r['replayed_success']}" + (f"; video: {r['video']}" if "video" in r
                                                                          else ""))
    return 0


TransportName = Literal["cyclone", "rclpy"]  # robots.ros2.transport.make_transport
TRANSPORT_DOC = ("cyclone: the cyclonedds wheel, no ROS install (on loopback unless CYCLONEDDS_URI names a network "
                 "config); rclpy: a sourced ROS 2 (docs/robots.md)")


class TwinConfig(Config):
    """`vla-rl twin`: the MuJoCo arm served as a ROS 2 robot (robots/ros2/twin.py) until `stop` on its reset topic."""

    task: str = Field(..., description="robot task id (an env spec)")
    seed: int | None = Field(None, description="the first episode's seed (None: wait for one on the reset topic)")
    robot: str = Field("configs/robots/twin.yaml", description="robot config: topics, cameras, limits")
    image_size: int | None = Field(None, ge=16, le=1024, description="camera size (None: the robot config's)")
    domain: int = Field(0, ge=0, le=232, description="DDS domain id (ROS_DOMAIN_ID)")
    max_s: float | None = Field(None, gt=0, description="exit after this many seconds (None: serve until stopped)")
    transport: TransportName = Field("cyclone", description=TRANSPORT_DOC)

    @field_validator("task")
    @classmethod
    def _known(cls, v: str) -> str:
        from vla_rl.envs import check_task_id

        return check_task_id(v)


@command("twin", "serve the MuJoCo arm as a ROS 2 robot over DDS (the ros2 extra), for `vla-rl deploy`")
def _twin(argv: list[str]) -> int:
    import logging

    from robots.config import load_robot_config
    from robots.ros2.transport import make_transport
    from robots.ros2.twin import run_twin

    cfg = parse_args(TwinConfig, argv, "twin")
    robot = load_robot_config(cfg.robot)
    if cfg.image_size is not None:
        robot = robot.with_image_size(cfg.image_size)
    logging.basicConfig(level=logging.INFO, format="twin %(levelname)s %(message)s")
    with make_transport(cfg.transport, cfg.domain, node_name="vla_rl_twin") as t:
        print(f"twin of {cfg.task} on DDS domain {cfg.domain} (topics: {cfg.robot})", flush=True)
        run_twin(cfg.task, cfg.seed, robot, t, cfg.max_s)
    return 0


class DeployConfig(Config):
    """`vla-rl deploy <checkpoint>`: the policy node (robots/ros2/node.py) drives a robot over ROS 2 topics, every
    command through the safety layer."""

    policy: str = Field(..., description="checkpoint folder (written by vla-rl sft / train)")
    robot: str = Field("configs/robots/twin.yaml", description="robot config: topics, cameras, limits")
    n_action_steps: int | None = Field(None, ge=1, description="steps of each chunk executed before the policy "
                                       "is called again (None: the checkpoint's)")
    image_size: int | None = Field(None, ge=16, le=1024, description="the cameras' image size (None: the robot "
                                   "config's); a twin serving a checkpoint renders at its size (vla-rl twin "
                                   "--image-size)")
    domain: int = Field(0, ge=0, le=232, description="DDS domain id (ROS_DOMAIN_ID)")
    max_s: float | None = Field(None, gt=0, description="stop after this many seconds (None: until Ctrl-C)")
    transport: TransportName = Field("cyclone", description=TRANSPORT_DOC)


@command("deploy", "run a checkpoint as a ROS 2 policy node with the safety layer (the ros2 extra)")
def _deploy(argv: list[str]) -> int:
    import logging
    import threading

    from robots.config import load_robot_config
    from robots.ros2.node import CheckpointPolicy, PolicyNode
    from robots.ros2.transport import make_transport, sigint_sets

    if argv and "=" not in argv[0] and not argv[0].startswith("-"):
        argv = [f"policy={argv[0]}", *argv[1:]]
    cfg = parse_args(DeployConfig, argv, "deploy")
    robot = load_robot_config(cfg.robot)
    if cfg.image_size is not None:
        robot = robot.with_image_size(cfg.image_size)
    logging.basicConfig(level=logging.INFO, format="deploy %(levelname)s %(message)s")
    with make_transport(cfg.transport, cfg.domain, node_name="vla_rl_deploy") as t:
        node = PolicyNode(robot, t, CheckpointPolicy(cfg.policy, cfg.n_action_steps))
        print(f"policy node for {cfg.policy} on DDS domain {cfg.domain} (topics: {cfg.robot})", flush=True)
        stop = threading.Event()
        with sigint_sets(stop), contextlib.suppress(KeyboardInterrupt):  # Ctrl-C stops the node; the transport closes
            node.run(stop=stop, max_s=cfg.max_s)
    lat = sorted(node.latencies)
    if lat:
        print(f"{len(node.sent)} commands; observation-to-command latency p50 {lat[len(lat) // 2] * 1e3:.2f} ms")
    return 0


class RecordBagConfig(Config):
    """`vla-rl record-bag`: a robot's topics (robots/ros2/bag.py) to a rosbag2 MCAP bag, until Ctrl-C or --max-s."""

    robot: str = Field("configs/robots/twin.yaml", description="robot config: topics, cameras, limits")
    out: str = Field("runs/bag", description="the bag folder (must not exist; written atomically)")
    max_s: float | None = Field(None, gt=0, description="stop after this many seconds (None: until Ctrl-C)")
    domain: int = Field(0, ge=0, le=232, description="DDS domain id (ROS_DOMAIN_ID)")
    transport: TransportName = Field("cyclone", description=TRANSPORT_DOC)


@command("record-bag", "record a robot's ROS 2 topics to a rosbag2 MCAP bag (the ros2 extra)")
def _record_bag(argv: list[str]) -> int:
    import threading

    from robots.config import load_robot_config
    from robots.ros2.bag import record_bag
    from robots.ros2.transport import make_transport

    cfg = parse_args(RecordBagConfig, argv, "record-bag")
    robot = load_robot_config(cfg.robot)
    ready = threading.Event()

    def announce() -> None:  # once subscribed: from here Ctrl-C ends the recording cleanly
        if ready.wait(600):
            print(f"recording {robot.name}'s topics on DDS domain {cfg.domain} to {cfg.out} (Ctrl-C ends)", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    with make_transport(cfg.transport, cfg.domain, node_name="vla_rl_record_bag") as t:
        counts = record_bag(t, robot, cfg.out, max_s=cfg.max_s, ready=ready)
    print(f"{sum(counts.values())} messages: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


class ConvertBagConfig(Config):
    """`vla-rl convert-bag <bag>`: a rosbag2 bag to a LeRobot v3 dataset, one frame per commanded step."""

    bag: str = Field(..., description="the bag folder (vla-rl record-bag)")
    out: str = Field("data/from_bag", description="the dataset folder")
    task: str | None = Field(None, description="the env id the robot ran (a twin's task), for vla-rl replay")
    fps: int | None = Field(None, ge=1, description="the dataset's rate (None: the robot's control rate)")
    overwrite: bool = Field(False, description="replace an existing dataset at out")


@command("convert-bag", "turn a rosbag2 bag into a LeRobot v3 dataset for SFT and replay (the ros2 extra)")
def _convert_bag(argv: list[str]) -> int:
    from robots.ros2.bag import convert_bag

    if argv and "=" not in argv[0] and not argv[0].startswith("-"):
        argv = [f"bag={argv[0]}", *argv[1:]]
    cfg = parse_args(ConvertBagConfig, argv, "convert-bag")
    s = convert_bag(cfg.bag, cfg.out, task=cfg.task, fps=cfg.fps, overwrite=cfg.overwrite)
    print(f"{s['episodes']} episodes, {s['frames']} frames (seeds {s['seeds']}, successes {s['successes']}, "
          f"{s['dropped_commands']} commands not applied) -> {s['out']}")
    return 0


@command("sft", "supervised fine-tuning of the VLA on demonstrations (configs/sft_*.yaml)")
def _sft(argv: list[str]) -> int:
    from vla_rl.trainers.sft import SFTConfig, train_sft

    cfg = parse_args(SFTConfig, argv, "sft")
    s = train_sft(cfg, _console())  # type: ignore[arg-type]
    print(f"SFT done in {s['wall_s']:.0f} s; best val success {s['best_val_success']:.1%}; "
          f"checkpoint {s['checkpoint']}")
    return 0


@command("train", "RL training by the config's `type`: vla_grpo, quickstart, text_grpo, text_quickstart, text_rlccf")
def _train(argv: list[str]) -> int:
    from vla_rl.registry import RegistryError
    from vla_rl.trainers import TRAIN_JOBS

    try:
        schema = TRAIN_JOBS.get(_job_type(argv))
    except RegistryError as e:
        raise ConfigError(f"type: {e}") from None
    cfg = parse_args(schema, argv, "train")
    cfg.run(_console())  # type: ignore[attr-defined]
    return 0


def _job_type(argv: list[str]) -> str:
    """The ``type`` a `train` command line asks for: a ``type=`` override, else the YAML's, else vla_grpo."""
    import yaml

    for a in argv:
        if a.startswith(("type=", "--type=")):
            return a.split("=", 1)[1]
    for i, a in enumerate(argv[:-1]):
        if a == "--type":
            return argv[i + 1]
    path = next((a for a in argv if a.endswith((".yaml", ".yml")) and "=" not in a), None)
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError):
            return "vla_grpo"  # let the config loader report the problem with its usual message
        if isinstance(data, dict) and isinstance(data.get("type"), str):
            return data["type"]
    return "vla_grpo"


@command("export-openvla", "write an OpenVLA / OpenVLA-OFT checkpoint (trained here, or theirs) in OpenVLA's Hugging "
                          "Face layout, which their tools load")
def _export_openvla(argv: list[str]) -> int:
    import argparse

    import yaml

    from vla_rl.policies.openvla.configuration_openvla import OpenVLAFolderError
    from vla_rl.policies.openvla.modeling_openvla import OpenVLAPolicy

    ap = argparse.ArgumentParser(
        prog="vla-rl export-openvla",
        description="Write a checkpoint of an OpenVLA policy (e.g. runs/<run>/best) as an OpenVLA Hugging Face folder: "
                    "config.json with norm_stats, dataset_statistics.json, safetensors shards + index, OFT's component "
                    "files, tokenizer.")
    ap.add_argument("checkpoint", help="our checkpoint of an OpenVLA policy, or an OpenVLA folder")
    ap.add_argument("out", help="folder to write")
    ap.add_argument("settings", nargs="*", help="acting settings to bake in, key=value (unnorm_key=libero_10_no_noops "
                    "gripper=libero variant=oft chunk_size=8 cameras=[agentview,wrist] ...)")
    ap.add_argument("--max-shard-mb", type=float, default=5120.0, help="largest safetensors shard (MiB)")
    args = ap.parse_args(argv)
    try:
        bad = [s for s in args.settings if "=" not in s]
        if bad:
            raise OpenVLAFolderError(f"settings must be key=value, got {' '.join(bad)}")
        settings = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.settings)}
        policy = OpenVLAPolicy.from_pretrained(args.checkpoint, **settings)
        out = policy.save_openvla(args.out, int(args.max_shard_mb * 2**20))
    except (OpenVLAFolderError, ValueError) as e:  # an incomplete folder, an invalid setting
        print(f"vla-rl export-openvla: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({policy.num_parameters():,} parameters, unnorm_key {policy.config.unnorm_key})")
    return 0


@command("plot", "draw a run's curves to PNG and print the entropy-performance fit R = -a exp(H) + b")
def _plot(argv: list[str]) -> int:
    from vla_rl.plot import plot_run
    from vla_rl.trainers.metrics import read_metrics
    from vla_rl.trainers.text_entropy import entropy_fit

    if not argv or argv[0].startswith("-"):
        print("usage: vla-rl plot <run folder> [out.png]")
        return 2
    print(f"wrote {plot_run(argv[0], argv[1] if len(argv) > 1 else None)}")
    rows = [r for r in read_metrics(argv[0]) if "rollout/policy_entropy" in r and "rollout/reward" in r]
    if len(rows) >= 3:  # the rollout's own entropy and reward, step by step (Cui et al. 2025)
        fit = entropy_fit([r["rollout/policy_entropy"] for r in rows], [r["rollout/reward"] for r in rows])
        print(f"entropy-performance fit over {len(rows)} steps: R = -a exp(H) + b with a = {fit['a']:.4g}, "
              f"b = {fit['b']:.4g} (R^2 {fit['r2']:.3f})")
    return 0


@command("grade-exam", "grade model answers against a HiPhO-style exam and print per-problem scores, total and medal")
def _grade_exam(argv: list[str]) -> int:
    import argparse

    from rich.table import Table

    from tasks.text.hipho import ExamFormatError, grade_exam, load_answers, load_exam

    ap = argparse.ArgumentParser(prog="vla-rl grade-exam", description="Grade a HiPhO-style exam.")
    ap.add_argument("exam", help="exam JSON (HiPhO layout)")
    ap.add_argument("answers", help='JSONL of {"id": problem id, "output": model text}')
    ap.add_argument("--exam-name", default=None, help="medal table to use, e.g. 'IPhO 2025' (default: the exam's)")
    args = ap.parse_args(argv)
    try:
        exam = load_exam(args.exam)
        res = grade_exam(exam, load_answers(args.answers, exam), exam_name=args.exam_name)
    except ExamFormatError as e:
        print(f"vla-rl grade-exam: {e}", file=sys.stderr)
        return 2
    console = _console()
    table = Table(title=f"{exam.name}: {len(res.problems)} problems")
    for col in ("problem", "answer level", "step level", "score", "max"):
        table.add_column(col)
    for g in res.problems:
        step = f"{g.step_score:.2f}" if g.answered else "no answer"
        table.add_row(g.id, f"{g.answer_score:.2f}", step, f"{g.score:.2f}", f"{g.max_points:.2f}")
    console.print(table)
    console.print(f"total: {res.total:.2f} / {res.max_total:.2f}")
    if res.thresholds is None:
        console.print(f"medal: n/a (no thresholds for {res.exam!r}; use --exam-name)")
    else:
        gold, silver, bronze = res.thresholds
        console.print(f"medal: {res.medal or 'none'} ({res.exam}: gold {gold:g}, silver {silver:g}, bronze {bronze:g})")
    return 0


@command("bench", "benchmarks: env, rollout, ablation (GRPO variants), update (vs TRL), vla7b (7B shape, GPU), "
                  "decoding (argmax vs median of action tokens), tokens (image-token merge vs compute), distributed "
                  "(Ray actors vs local workers), range (the quickstart at initial-state range fractions), recipe (a "
                  "quickstart-type recipe over seeds), phases (the long-horizon task's phases reached), micro (an "
                  "update whole vs in micro-batches)")
def _bench(argv: list[str]) -> int:
    import importlib

    names = {
        "env": "bench.env_bench",
        "rollout": "bench.rollout_bench",
        "ablation": "bench.ablation",
        "update": "bench.update_bench",
        "vla7b": "bench.vla7b_bench",
        "decoding": "bench.decoding_bench",
        "tokens": "bench.tokens_bench",
        "bridge": "bench.bridge_bench",
        "distributed": "bench.distributed_bench",
        "range": "bench.range_bench",
        "recipe": "bench.recipe_bench",
        "phases": "bench.phases_bench",
        "micro": "bench.micro_batch_bench",
    }
    if not argv or argv[0] not in names:
        print(f"usage: vla-rl bench {'|'.join(names)} [key=value ...]   (writes bench/results/<name>.json)")
        return 2
    importlib.import_module(names[argv[0]]).main(argv[1:])
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print("usage: vla-rl <command> [config.yaml] [key=value ...] [--key value ...]\n\ncommands:")
        for name, (summary, _) in COMMANDS.items():
            print(f"  {name:<12} {summary}")
        print("\n`vla-rl <command> --help` lists a command's keys.")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"vla-rl: unknown command {name!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[name][1](rest)
    except (ConfigError, CheckpointError, DependencyNotInstalled) as e:  # bad input or setup: one line
        print(f"vla-rl {name}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
