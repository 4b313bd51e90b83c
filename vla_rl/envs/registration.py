"""Env specs by versioned id, Gymnasium style: an id (``mujoco/PickCube-v1``; room for ``libero/...``,
``maniskill/...``) maps to data, not code: an entry point string, its keyword arguments and a step limit.

A variant of a task is a spec with other kwargs (the quickstart's narrow tasks: a ``spread`` and a shorter
step limit), not a subclass; ``base@key=value`` names one without registering it (`env_spec`). The core
never imports a simulator or a task: `make_env` resolves the entry point when an env is built, in whatever
process builds it (the vector env's workers).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from vla_rl.registry import Registry, resolve_entry_point


@dataclass(frozen=True)
class EnvSpec:
    """One registered env.

    Attributes:
        id: ``backend/Name-vN``.
        entry_point: ``"package.module:Callable"`` returning a Gymnasium env (a class or a function).
        kwargs: passed to the entry point; `make_env`'s keyword arguments override them.
        max_episode_steps: control steps before an episode is truncated, passed as ``max_episode_steps``.
    """

    id: str
    entry_point: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    max_episode_steps: int | None = None


ENVS: Registry[EnvSpec] = Registry("robot task")


def register_env(id: str, entry_point: str, max_episode_steps: int | None = None, **kwargs: Any) -> EnvSpec:
    """Register a spec (a name can be registered once); returns it."""
    if ":" not in entry_point:
        raise ValueError(f"env {id!r}: entry point {entry_point!r} must look like 'package.module:Callable'")
    spec = EnvSpec(id, entry_point, dict(kwargs), max_episode_steps)
    ENVS.register(id, spec)
    return spec


def env_spec(id: str) -> EnvSpec:
    """The spec registered as ``id``; a miss lists the registered ids (and suggests close ones).

    ``id`` may name a variant of a registered spec without registering it: ``base@key=value,key=value`` updates the
    base spec's kwargs (``mujoco/PickCube-v1@spread=0.25``: the centred quarter of each initial-state range) or its
    step limit (``max_episode_steps=``). Values are read as int, float, bool or else text.

    Raises:
        RegistryError: the base id is not registered.
        ValueError: a malformed ``key=value``.
    """
    base, _, params = id.partition("@")
    spec = ENVS.get(base)
    if not params:
        return spec
    kwargs, steps = dict(spec.kwargs), spec.max_episode_steps
    for item in params.split(","):
        key, eq, text = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"env id {id!r}: {item!r} is not key=value (e.g. {base}@spread=0.25)")
        value = _scalar(text.strip())
        if key.strip() == "max_episode_steps":
            steps = int(value)
        else:
            kwargs[key.strip()] = value
    if "task_id" in kwargs:  # records and datasets name the variant, so a replay rebuilds it
        kwargs["task_id"] = id
    return EnvSpec(id, spec.entry_point, kwargs, steps)


def variant_id(id: str, **kwargs: Any) -> str:
    """The id of ``id`` with ``kwargs`` set, in the ``base@key=value`` form `env_spec` reads (a variant id gets more
    keys): ``variant_id("mujoco/PickCube-v1", spread=0.25) == "mujoco/PickCube-v1@spread=0.25"``. Floats as ``:g``."""
    items = ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in kwargs.items())
    return f"{id}{',' if '@' in id else '@'}{items}" if items else id


def _scalar(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def robot_task_ids(backend: str | None = None) -> list[str]:
    """Every registered env id, sorted; with ``backend`` (``mujoco``, ``libero``) only the ids under ``backend/``."""
    names = ENVS.names()
    return names if backend is None else [n for n in names if n.startswith(f"{backend}/")]


def check_task_id(id: str) -> str:
    """Return ``id`` if it is registered (or a ``base@key=value`` variant of one whose keys its entry point takes),
    else raise naming the valid ones (for config validators)."""
    spec = env_spec(id)
    if "@" in id:
        try:
            check_kwargs(id, resolve_entry_point(spec.entry_point), spec.kwargs)
        except TypeError as e:  # a config validator reports ValueErrors
            raise ValueError(str(e)) from None
    return id


def make_env(id: str, **kwargs: Any) -> Any:
    """Build the env registered as ``id``: its entry point called with the spec's kwargs updated by ``kwargs``
    and ``max_episode_steps``. Picklable as ``functools.partial(make_env, id, ...)`` (the vector env's factories).

    Raises:
        RegistryError: an unknown id, naming the registered ones.
        TypeError: a keyword the entry point does not take (a misspelt kwarg), naming the valid ones.
    """
    spec = env_spec(id)
    merged = {**spec.kwargs, **kwargs}
    if spec.max_episode_steps is not None:
        merged.setdefault("max_episode_steps", spec.max_episode_steps)
    factory = resolve_entry_point(spec.entry_point)
    check_kwargs(id, factory, merged)
    return factory(**merged)


def env_instructions(id: str) -> tuple[str, ...]:
    """The instruction templates of env ``id`` (an env's ``instructions``; building one renders nothing)."""
    env = make_env(id)
    try:
        return tuple(env.instructions)
    finally:
        env.close()


def check_kwargs(id: str, factory: Any, kwargs: dict[str, Any]) -> None:
    """Refuse keywords that ``factory`` does not take, naming the ones it does."""
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise TypeError(f"env {id!r} takes no argument {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")
