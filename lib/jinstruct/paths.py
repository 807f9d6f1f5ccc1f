"""Where things are: the repository's shipped data and the user's cache."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent.parent
DATA_DIR = REPO_ROOT / "data"
CONFIGS_DIR = REPO_ROOT / "configs"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
PROMPTS_DIR = PACKAGE_DIR / "prompts"


def cache_dir() -> Path:
    """The user's cache (tiny models, downloads): $JINSTRUCT_CACHE, else ~/.cache/jinstruct."""
    root = Path(os.environ.get("JINSTRUCT_CACHE", Path.home() / ".cache" / "jinstruct"))
    root.mkdir(parents=True, exist_ok=True)
    return root
