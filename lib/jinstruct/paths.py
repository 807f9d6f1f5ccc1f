"""Where things are: the project root the user stands in, the data it ships, the package's own files, the cache.

Everything a run reads or writes (configs, notebooks, `data/`, `runs/`, the LLM cache, relative paths in configs)
resolves from the *project root*, never from where the package happens to be installed: a second checkout, or a
non-editable install, works on the folder the user is in. The root is `$JINSTRUCT_ROOT` (which the CLI's `--root`
sets), else the nearest folder at or above the working directory that holds both `configs/`
and `notebooks/`. Prompts and other files that belong to the code load through package resources.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

ROOT_ENV = "JINSTRUCT_ROOT"


class ProjectRootNotFound(RuntimeError):
    """No jinstruct project (a folder with configs/ and notebooks/) at or above the working directory."""


def set_project_root(root: str | os.PathLike[str]) -> None:
    """Fix the project root for this process and the processes it starts (kernels, sweep runs)."""
    os.environ[ROOT_ENV] = str(Path(root).expanduser().resolve())


def _is_project(folder: Path) -> bool:
    return (folder / "configs").is_dir() and (folder / "notebooks").is_dir()


def project_root() -> Path:
    """The project folder the user works in (see the module docstring for the search order)."""
    if env := os.environ.get(ROOT_ENV):
        return Path(env).expanduser().resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if _is_project(folder):
            return folder
    raise ProjectRootNotFound(
        f"{here}: not inside a jinstruct project (no folder at or above it holds configs/ and notebooks/). "
        f"cd into the project, or pass --root DIR, or set {ROOT_ENV}.")


def resolve_path(path: str | os.PathLike[str], base: Path | None = None) -> Path:
    """A path from a config or the command line: absolute as given, else relative to `base` (the project root)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base if base is not None else project_root()) / p


def data_dir() -> Path:
    """The data the project ships (seed tasks, benchmarks, small samples): `<root>/data`."""
    return project_root() / "data"


def configs_dir() -> Path:
    return project_root() / "configs"


def notebooks_dir() -> Path:
    return project_root() / "notebooks"


def runs_dir() -> Path:
    return project_root() / "runs"


def package_file(*parts: str) -> Path:
    """A file shipped inside the package (prompts, templates), as a real path."""
    return Path(str(resources.files("jinstruct").joinpath(*parts)))


def prompt_path(name: str) -> Path:
    """A prompt file shipped with the package (`jinstruct/prompts/<name>`)."""
    return package_file("prompts", name)


def cache_dir() -> Path:
    """The user's cache (tiny models, downloads): $JINSTRUCT_CACHE, else ~/.cache/jinstruct."""
    root = Path(os.environ.get("JINSTRUCT_CACHE", Path.home() / ".cache" / "jinstruct"))
    root.mkdir(parents=True, exist_ok=True)
    return root
