"""Paths follow the user: the project root is found from the working directory (or --root / JINSTRUCT_ROOT), never
from where the package is installed, and a command run in a second project writes only there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jinstruct import paths

ROOT = Path(__file__).resolve().parent.parent


def test_the_root_is_the_nearest_project_folder_at_or_above_the_working_directory(tmp_path, monkeypatch):
    project = tmp_path / "proj"
    (project / "configs").mkdir(parents=True)
    (project / "notebooks").mkdir()
    (project / "a" / "b").mkdir(parents=True)
    monkeypatch.delenv(paths.ROOT_ENV, raising=False)
    monkeypatch.chdir(project / "a" / "b")
    assert paths.project_root() == project.resolve()
    assert paths.resolve_path("data/x.jsonl") == project.resolve() / "data" / "x.jsonl"
    assert paths.resolve_path("/abs/file") == Path("/abs/file")
    monkeypatch.setenv(paths.ROOT_ENV, str(tmp_path))
    assert paths.project_root() == tmp_path.resolve()


def test_outside_a_project_the_error_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.ROOT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(paths.ProjectRootNotFound, match="--root"):
        paths.project_root()


def test_package_prompts_load_as_resources():
    assert paths.prompt_path("self_instruct_ja.txt").read_text(encoding="utf-8").strip()


@pytest.mark.slow
def test_estimate_in_a_second_project_writes_only_there(tmp_path):
    second = tmp_path / "second"
    for folder in ("configs", "data"):
        shutil.copytree(ROOT / folder, second / folder)
    (second / "notebooks").mkdir()
    before = sorted(p.name for p in (ROOT / "runs").iterdir()) if (ROOT / "runs").exists() else []
    env = {k: v for k, v in os.environ.items() if k != paths.ROOT_ENV}
    done = subprocess.run([sys.executable, "-m", "jinstruct", "estimate", "--config", "configs/tiny.yaml"],
                          cwd=second, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "| 02_generation" in done.stdout
    assert (second / "runs" / "tiny").is_dir()
    after = sorted(p.name for p in (ROOT / "runs").iterdir()) if (ROOT / "runs").exists() else []
    assert after == before, "nothing was written into the checkout the package is installed from"
