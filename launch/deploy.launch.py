"""ROS 2 launch file: the vla-rl policy node on a real arm's network (docs/robots.md).

    ros2 launch launch/deploy.launch.py checkpoint:=runs/sft/final robot:=configs/robots/franka.yaml \\
        instruction:="put the red cube in the bowl" vla_rl:=$PWD/.venv/bin/vla-rl

What it does:
- gives its processes ``CYCLONEDDS_URI`` = ``launch/cyclonedds.xml`` (the network, large images),
  ``RMW_IMPLEMENTATION`` = ``rmw_cyclonedds_cpp`` (for ``transport:=rclpy`` and ``ros2 topic pub``) and
  ``ROS_DOMAIN_ID`` = the deploy domain;
- runs ``vla-rl deploy`` with the settings of ``launch/params.yaml``, each overridden by a non-empty launch argument
  (``checkpoint`` sets ``--policy``, the others their own flag), from the repository root (relative paths resolve
  there); when it exits, the launch shuts down;
- given ``instruction``, publishes it once a second on the robot config's instruction topic (``ros2 topic pub``): the
  node acts on the latest one, and a volatile topic gives a late joiner nothing sent before it matched.

The ``launch`` packages are imported only inside ``generate_launch_description``, so the command line this file
builds (``deploy_settings``, ``deploy_command``) is checked without ROS by tests/robots/ros2/test_launch.py.
"""

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PARAMS = HERE / "params.yaml"
NODE = "vla_rl_deploy"  # the params file's node name
DEFAULT_INSTRUCTION_TOPIC = "/instruction"  # robots.config.Topics.instruction

# launch argument -> (vla-rl deploy config key, description). Empty: params.yaml's value, else deploy's default.
ARGUMENTS = {
    "checkpoint": ("policy", "the checkpoint folder (vla-rl sft / train)"),
    "robot": ("robot", "the robot config, configs/robots/<arm>.yaml"),
    "image_size": ("image_size", "the cameras' image size in pixels (empty: the robot config's)"),
    "n_action_steps": ("n_action_steps", "chunk steps run before replanning (empty: the checkpoint's)"),
    "transport": ("transport", "cyclone (no ROS needed) or rclpy"),
    "domain": ("domain", "DDS / ROS domain id: ROS_DOMAIN_ID of the arm's PC"),
    "max_s": ("max_s", "stop after this many seconds (empty: until Ctrl-C)"),
}


def read_params(path: str | Path = PARAMS) -> dict[str, Any]:
    """The ``ros__parameters`` of ``vla_rl_deploy`` in a ROS 2 params file: ``{deploy config key: value}``."""
    import yaml

    data = yaml.safe_load(Path(path).read_text()) or {}
    try:
        return dict(data[NODE]["ros__parameters"] or {})
    except (KeyError, TypeError):
        raise ValueError(f"{path}: expected {NODE}: ros__parameters: {{...}} (a ROS 2 params file)") from None


def deploy_settings(launch_args: dict[str, str], params: dict[str, Any]) -> dict[str, Any]:
    """params.yaml's settings, each overridden by a non-empty launch argument; empty values dropped."""
    settings = {k: v for k, v in params.items() if v not in ("", None)}
    for arg, (key, _) in ARGUMENTS.items():
        if launch_args.get(arg, "") != "":
            settings[key] = launch_args[arg]
    if "policy" not in settings:
        raise ValueError(f"no checkpoint: give checkpoint:=<folder>, or policy in {PARAMS.name}")
    return settings


def deploy_command(settings: dict[str, Any], executable: str = "vla-rl") -> list[str]:
    """``vla-rl deploy --policy ... --robot ...``: one ``--key value`` per setting."""
    cmd = [executable, "deploy"]
    for key, value in settings.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    return cmd


def instruction_topic(robot_config: str | Path) -> str:
    """The robot config's ``topics.instruction`` (read as plain YAML: the robots package may not import here)."""
    import yaml

    path = Path(robot_config)
    data = yaml.safe_load((path if path.is_absolute() else ROOT / path).read_text()) or {}
    return (data.get("topics") or {}).get("instruction", DEFAULT_INSTRUCTION_TOPIC)


def instruction_command(text: str, topic: str) -> list[str]:
    """``ros2 topic pub``: ``text`` as a std_msgs/String once a second, reliable and volatile like the node's
    subscription (the message as JSON, which is YAML, so quotes in the text are safe)."""
    return ["ros2", "topic", "pub", "--rate", "1", "--qos-reliability", "reliable", "--qos-durability", "volatile",
            topic, "std_msgs/msg/String", json.dumps({"data": text})]


def process_env(settings: dict[str, Any], cyclonedds_config: str | Path, rmw: str) -> dict[str, str]:
    """The environment added to the launched processes: the Cyclone XML (as an absolute file URI), the RMW, the
    domain."""
    config = Path(cyclonedds_config)
    config = config if config.is_absolute() else ROOT / config
    if not config.is_file():
        raise ValueError(f"cyclonedds_config {str(config)!r} does not exist")
    domain = str(settings.get("domain", 0))
    return {"CYCLONEDDS_URI": config.as_uri(), "RMW_IMPLEMENTATION": rmw, "ROS_DOMAIN_ID": domain}


def _processes(context: Any) -> list[Any]:
    """The launch's processes, from the launch arguments' values (an ``OpaqueFunction``)."""
    from launch.actions import ExecuteProcess, Shutdown
    from launch.substitutions import LaunchConfiguration

    def get(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    settings = deploy_settings({arg: get(arg) for arg in ARGUMENTS}, read_params(get("params_file")))
    env = process_env(settings, get("cyclonedds_config"), get("rmw"))
    actions = [ExecuteProcess(cmd=deploy_command(settings, get("vla_rl")), cwd=str(ROOT), name="vla_rl_deploy",
                              additional_env=env, output="screen", on_exit=[Shutdown(reason="vla-rl deploy exited")])]
    if get("instruction"):
        topic = instruction_topic(settings.get("robot", "configs/robots/twin.yaml"))
        actions.append(ExecuteProcess(cmd=instruction_command(get("instruction"), topic), name="instruction",
                                      additional_env=env, output="log"))
    return actions


def generate_launch_description() -> Any:
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.launch_description import LaunchDescription

    declared = [DeclareLaunchArgument(arg, default_value="", description=doc) for arg, (_, doc) in ARGUMENTS.items()]
    declared += [
        DeclareLaunchArgument("instruction", default_value="",
                              description="the task in words, published once a second (empty: publish it yourself)"),
        DeclareLaunchArgument("params_file", default_value=str(PARAMS), description="deploy settings (ROS 2 params)"),
        DeclareLaunchArgument("cyclonedds_config", default_value=str(HERE / "cyclonedds.xml"),
                              description="the Cyclone DDS XML (CYCLONEDDS_URI; relative: to the repository)"),
        DeclareLaunchArgument("rmw", default_value="rmw_cyclonedds_cpp", description="RMW_IMPLEMENTATION"),
        DeclareLaunchArgument("vla_rl", default_value="vla-rl", description="the vla-rl executable (its venv's)"),
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_processes)])
