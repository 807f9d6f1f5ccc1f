"""`runs/<name>/manifest.json`: what ran, on what, and what it wrote.

It records the resolved config, the git commit and dirty flag, Python and key package versions, and per stage:
start, end, status, duration, the fingerprint of its inputs, sha256 and size of every file it wrote, and the LLM
calls, tokens and cost from the stage's ledger.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from jinstruct.io import read_json, sha256_file, write_json
from jinstruct import paths
from jinstruct.formats.layout import RunLayout

KEY_PACKAGES = ("jinstruct", "torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "datasets",
                "openai", "papermill", "jupytext", "rapidfuzz", "fugashi", "xgrammar", "numpy", "pandas")

# files of the run folder that are records of the run, not outputs of a stage
NOT_OUTPUTS = ("manifest.json", "run.log", "run.lock", "config.yaml", "notebooks/", "ledger/", "batches/",
               "superseded/")


def git_state(repo: Path | None = None) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=30,
                                  check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    repo = repo if repo is not None else paths.project_root()
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def environment() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "git": git_state(),
    }


def is_output(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    if name.startswith(".") or name.endswith(".tmp"):
        return False
    return not any(rel == p or (p.endswith("/") and rel.startswith(p)) for p in NOT_OUTPUTS)


def snapshot(run_dir: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every output-like file under the run folder."""
    out: dict[str, tuple[int, int]] = {}
    if not run_dir.exists():
        return out
    for p in run_dir.rglob("*"):
        if p.is_file():
            rel = p.relative_to(run_dir).as_posix()
            if is_output(rel):
                st = p.stat()
                out[rel] = (st.st_size, st.st_mtime_ns)
    return out


def written_files(run_dir: Path, before: dict[str, tuple[int, int]]) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file new or changed since `before`."""
    after = snapshot(run_dir)
    return {rel: {"sha256": sha256_file(run_dir / rel), "size": size}
            for rel, (size, mtime) in sorted(after.items()) if before.get(rel) != (size, mtime)}


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names say they are secrets (KEY, TOKEN, SECRET)."""
    environ = dict(os.environ) if environ is None else environ
    names = [n for n in environ if re.search(r"KEY|TOKEN|SECRET|PASSWORD", n, re.IGNORECASE)]
    # short values ("1", "true") are not secrets and redacting them would mangle the text
    return sorted({environ[n] for n in names if len(environ[n]) >= 8}, key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    for s in secrets:
        text = text.replace(s, "***")
    return text


def load(run_dir: Path) -> dict[str, Any]:
    path = RunLayout(run_dir).manifest
    return read_json(path) if path.exists() else {}


def save(run_dir: Path, manifest: dict[str, Any]) -> None:
    import json

    secrets = secret_values()
    text = redact(json.dumps(manifest, ensure_ascii=False), secrets)
    write_json(RunLayout(run_dir).manifest, json.loads(text))
