"""Every notebook is committed without outputs, starts with a description and a `parameters` cell, and its
py:percent twin says the same thing."""

from pathlib import Path

import jupytext
import nbformat
import pytest

from jinstruct.paths import notebooks_dir
from jinstruct.run.runner import discover

NOTEBOOKS = sorted(notebooks_dir().glob("*.ipynb"))


def test_the_runner_finds_every_stage_notebook_in_number_order():
    stages = discover()
    numbers = [int(p.name[:2]) for p in stages]
    assert numbers == list(range(1, len(stages) + 1)), "stages are numbered 01, 02, ... without gaps or repeats"
    assert {p.name for p in stages} == {p.name for p in NOTEBOOKS if p.name[:2].isdigit()}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_outputs_and_parameters_cell(path: Path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and len(nb.cells[0].source) > 80, "first cell: what it does"
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in first_code.metadata.get("tags", []), "the first code cell is tagged parameters"
    for name in ("config_path", "run_dir", "overrides"):
        assert f"{name} =" in first_code.source
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "commit notebooks without outputs"
    # JupyterLab marks a notebook without them modified as soon as it opens it
    assert nb.metadata["kernelspec"]["name"] == "python3" and nb.metadata["language_info"]["name"] == "python"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_twin_in_sync(path: Path):
    twin = path.with_suffix(".py")
    assert twin.exists(), f"{twin.name} missing: run `jupytext --sync {path}`"
    nb = nbformat.read(path, as_version=4)
    py = jupytext.read(twin)
    pairs = list(zip(nb.cells, py.cells, strict=True))
    for a, b in pairs:
        assert (a.cell_type, a.source.strip()) == (b.cell_type, b.source.strip())
        assert a.metadata.get("tags", []) == b.metadata.get("tags", [])
