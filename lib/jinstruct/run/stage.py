"""What every notebook does first: read the config, find the run folder, seed the generators, open clients.

    st = Stage.open("03_filtering", config_path, run_dir, overrides)
    st.cfg.filter.rouge_threshold, st.layout.filtered, st.client("generator")

Run by the runner, a notebook gets the resolved config the runner recorded in the run folder (`config.yaml`, parsed
once by the runner with every override applied) and no overrides. Opened by hand, the defaults are the project's
`configs/tiny.yaml` and `runs/<config name>/`, and `overrides` (a dict, or a JSON string as `papermill -p` gives it)
apply on top.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinstruct import paths, progress
from jinstruct.formats.layout import RunLayout
from jinstruct.llm import LLMClient, open_client
from jinstruct.llm.settings import EndpointSettings
from jinstruct.llm.tinymodel import resolve_model
from jinstruct.plotting import enable_inline_figures, save_figures, set_language, setup_japanese_font, show_png
from jinstruct.io import write_json
from jinstruct.run.config import ConfigError
from jinstruct.run.lock import check_unlocked
from jinstruct.run.schema import RunConfig, load_config

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def parse_overrides(overrides: dict[str, Any] | str | None) -> dict[str, Any]:
    """Notebook overrides: a dict of dotted keys, or the same as a JSON object string (`papermill -p overrides`)."""
    if overrides is None or overrides == "":
        return {}
    if isinstance(overrides, str):
        try:
            overrides = json.loads(overrides)
        except json.JSONDecodeError as e:
            raise ConfigError(f"overrides {overrides!r}: not a JSON object ({e}); "
                              "write e.g. '{\"filter.rouge_threshold\": 0.6}'") from None
    if not isinstance(overrides, dict):
        raise ConfigError(f"overrides must be a mapping of dotted keys to values, got {type(overrides).__name__}")
    return overrides


@dataclass
class Stage:
    name: str
    cfg: RunConfig
    run_dir: Path
    _clients: dict[str, LLMClient] = field(default_factory=dict)

    @classmethod
    def open(cls, name: str, config_path: str | Path | None, run_dir: str | Path | None,
             overrides: dict[str, Any] | str | None = None, *, exclusive: bool = True) -> Stage:
        """`config_path`/`run_dir` None (a notebook opened by hand with its defaults) means configs/tiny.yaml and
        runs/<config name> of the project the user stands in. `exclusive`: refuse a run folder a runner is working
        on (a stage that only reads, as the estimate, passes False)."""
        cfg = load_config(paths.resolve_path(config_path) if config_path else paths.configs_dir() / "tiny.yaml",
                          parse_overrides(overrides))
        run = Path(run_dir) if run_dir else paths.runs_dir() / cfg.name
        if exclusive:
            check_unlocked(RunLayout(run.resolve()).lock)  # a runner working on this run folder: refuse
        run.mkdir(parents=True, exist_ok=True)
        seed_everything(cfg.seed)
        setup_japanese_font()
        set_language(cfg.figures.language)
        enable_inline_figures()
        if progress.in_kernel() and not progress.interactive():
            progress.quiet_third_party_bars()  # papermill would save their widgets at 0%
        return cls(name=name, cfg=cfg, run_dir=run.resolve())

    @property
    def layout(self) -> RunLayout:
        """Every path inside the run folder."""
        return RunLayout(self.run_dir)

    def path(self, target: Path) -> Path:
        """`target` (a path of the layout) with its parent folder created."""
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def dir(self, target: Path) -> Path:
        """`target` (a folder of the layout), created if needed."""
        target.mkdir(parents=True, exist_ok=True)
        return target

    def save_figure(self, fig: Figure, stem: str) -> None:
        """Save `fig` as `figures/<stem>.pdf` (vector) and `.png` (200 dpi) in the run folder, atomically, and show the
        saved PNG in the notebook, once. Returns nothing, so a cell that ends with it shows the figure once; the
        files are at `st.layout.figure(stem)` + `.pdf` / `.png`."""
        saved = save_figures(fig, self.path(self.layout.figure(stem)))
        show_png(saved[-1].read_bytes())

    def endpoint(self, name: str) -> EndpointSettings:
        """The named endpoint's settings, with `embedded_model: tiny` resolved to the built tiny model."""
        endpoints = self.cfg.llm.endpoints
        if name not in endpoints:
            raise KeyError(f"endpoint '{name}' is not defined under llm.endpoints (have: {', '.join(endpoints)})")
        settings = endpoints[name]
        if settings.embedded_model is not None:
            settings = settings.model_copy(update={"embedded_model": Path(resolve_model(settings.embedded_model))})
        return settings

    def client(self, name: str) -> LLMClient:
        """The LLM client for a named endpoint; its ledger goes to the layout's `ledger/<stage>.json`."""
        if name not in self._clients:
            self._clients[name] = open_client(self.endpoint(name), run_dir=self.run_dir, stage=self.name,
                                              cache_path=paths.resolve_path(self.cfg.llm.cache))
        return self._clients[name]

    def report_errors(self, errors: int, what: str) -> None:
        """Errors left in this stage's outputs (judgments recorded as errors, questions left unanswered): the
        runner reports the stage as "ok with N errors" instead of "ok", in its summary and in the manifest."""
        write_json(self.path(self.layout.errors_report(self.name)), {"stage": self.name, "errors": int(errors),
                                                                    "what": what})
        if errors:
            print(f"{self.name}: {errors} {what}")

    def close(self) -> None:
        for c in self._clients.values():
            c.close()
        self._clients.clear()
