"""One registry pattern for every pluggable component.

Entries are keyed by versioned names (``mujoco/PickCube-v1``, loss ``grpo``). An entry is either an
object registered with the decorator, or a lazy ``"package.module:Attr"`` string resolved on first use,
so that listing the names never imports a heavy backend (the Gymnasium ``entry_point`` idea).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class RegistryError(KeyError, ValueError):
    """A name that is not registered, or registered twice (a KeyError, and a ValueError so that config
    validators report it as a bad value)."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly.
        return str(self.args[0]) if self.args else ""


def resolve_entry_point(spec: str) -> Any:
    """Import ``"package.module:Attr"`` and return the attribute."""
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"entry point {spec!r} must look like 'package.module:Attr'")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError as e:
        raise ImportError(f"entry point {spec!r}: module {module_name!r} has no {attr!r}") from e


class Registry(Generic[T]):
    """Name -> component, with lazy entry points and helpful errors.

    >>> losses = Registry("policy loss")
    >>> @losses.register("vanilla")
    ... def vanilla(x): return x
    >>> losses.get("vanilla") is vanilla
    True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = {}

    def register(self, name: str, obj: T | str | None = None) -> Callable[[T], T] | T | str:
        """Register ``obj`` (or use as a decorator). A name can be registered once only."""
        if name in self._entries:
            raise RegistryError(f"{self.kind} {name!r} is already registered")
        if obj is not None:
            self._entries[name] = obj
            return obj

        def decorator(fn: T) -> T:
            self._entries[name] = fn
            return fn

        return decorator

    def get(self, name: str) -> T:
        """Return the component for ``name``; a miss lists the valid names."""
        try:
            entry = self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise RegistryError(
                f"unknown {self.kind} {name!r}.{hint} Registered: {', '.join(sorted(self._entries))}"
            ) from None
        if isinstance(entry, str):
            entry = resolve_entry_point(entry)
            self._entries[name] = entry
        return entry  # type: ignore[return-value]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
