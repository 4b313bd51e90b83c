"""Typed configs: pydantic schemas, YAML presets, dotted command-line overrides.

A run's config is a pydantic model (unknown keys refused, types checked) loaded once at start:

    cfg = load_config(EvalConfig, "configs/eval.yaml", ["env.num_envs=32", "episodes=100"])

Overrides are ``dotted.key=value``; the value is parsed as YAML (``32`` -> int, ``[a, b]`` -> list,
``null`` -> None). Errors name the key, the problem and the valid choices.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

C = TypeVar("C", bound="Config")


class ConfigError(ValueError):
    """A config that cannot be used; the message says which key and how to fix it."""


class Config(BaseModel):
    """Base of every config: unknown keys are errors, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"env.num_envs=32"`` -> (["env", "num_envs"], 32)."""
    key, sep, raw = item.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r} must look like dotted.key=value (e.g. env.num_envs=32)")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str], schema: type[Config]) -> dict[str, Any]:
    """Set each ``dotted.key=value`` in a nested dict, refusing keys the schema does not have."""
    data = dict(data)
    for item in overrides:
        path, value = parse_override(item)
        node, model = data, schema
        for i, part in enumerate(path):
            fields = model.model_fields if model is not None else None
            if fields is not None and part not in fields:
                where = ".".join(path[:i]) or "top level"
                raise ConfigError(
                    f"unknown config key {'.'.join(path)!r} ({part!r} is not a field at {where}); "
                    f"valid keys: {', '.join(sorted(fields))}"
                )
            sub_model = _sub_model(model, part) if model is not None else None
            if i == len(path) - 1:
                node[part] = value
            else:
                child = node.get(part)
                child = dict(child) if isinstance(child, dict) else {}
                node[part] = child
                node, model = child, sub_model
    return data


def deep_merge(base: dict[str, Any], *updates: dict[str, Any]) -> dict[str, Any]:
    """A new dict: ``base`` with the keys of each update set in turn, nested dicts merged key by key (a config's
    groups: ``{"optim": {"lr": 1e-4}}`` changes the lr and keeps the rest of ``optim``)."""
    out = dict(base)
    for upd in updates:
        for k, v in upd.items():
            out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(schema: type[C], path: str | Path | None = None, overrides: list[str] | None = None) -> C:
    """Load YAML (optional), apply overrides, validate into ``schema``.

    Raises:
        ConfigError: missing file, bad YAML, unknown key or wrong type, naming the key and the fix.
    """
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of keys, got {type(loaded).__name__}")
        data = loaded or {}
        source = str(p)
    data = apply_overrides(data, overrides or [], schema)
    try:
        return schema.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, schema, source)) from None


def format_validation_error(err: ValidationError, schema: type[Config], source: str) -> str:
    lines = [f"invalid config ({source}):"]
    for item in err.errors():
        key = ".".join(str(p) for p in item["loc"])
        if item["type"] == "extra_forbidden":
            parent = _model_at(schema, [str(p) for p in item["loc"][:-1]])
            valid = ", ".join(sorted(parent.model_fields)) if parent is not None else "?"
            lines.append(f"  {key}: unknown key; valid keys here: {valid}")
        elif not key:  # a check of the whole config: its message says what is wrong
            lines.append("  " + item["msg"].removeprefix("Value error, "))
        else:
            lines.append(f"  {key}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def _sub_model(model: type[BaseModel], field: str) -> type[BaseModel] | None:
    ann = model.model_fields[field].annotation
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _model_at(schema: type[BaseModel], path: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = schema
    for part in path:
        if model is None or part not in model.model_fields:
            return None
        model = _sub_model(model, part)
    return model


def describe(schema: type[BaseModel], prefix: str = "") -> list[str]:
    """One line per leaf key: ``name: type = default  # description`` (for ``--help``)."""
    out = []
    for name, f in schema.model_fields.items():
        sub = _sub_model(schema, name)
        if sub is not None:
            out.extend(describe(sub, prefix + name + "."))
            continue
        ann = getattr(f.annotation, "__name__", None) or str(f.annotation).replace("typing.", "")
        doc = f"  # {f.description}" if f.description else ""
        out.append(f"{prefix}{name}: {ann} = {f.default!r}{doc}")
    return out
