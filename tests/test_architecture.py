"""The architecture document stays true: every package it maps exists, every package exists in the map, and the
import-linter contracts hold."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import jinstruct

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
PACKAGE = Path(jinstruct.__file__).parent


def mapped_packages() -> list[str]:
    return re.findall(r"^\| `jinstruct\.(\w+)` \|", DOC.read_text(encoding="utf-8"), flags=re.M)


def test_every_package_in_the_map_exists_and_every_package_is_mapped():
    mapped = mapped_packages()
    actual = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    assert sorted(mapped) == actual


def test_at_most_eight_modules_at_the_top():
    top = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert len(top) <= 8, top


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout
