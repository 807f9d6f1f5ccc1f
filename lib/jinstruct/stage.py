"""What every notebook does first: read the config, find the run folder, seed the generators, open clients.

    st = Stage.open("03_filtering", config_path, run_dir, overrides)
    st.cfg.filter.threshold, st.path("data", "filtered.jsonl"), st.client("generator")
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinstruct.config import load_config, resolve_path
from jinstruct.paths import REPO_ROOT
from jinstruct.plotting import setup_japanese_font

TINY_MODELS = {"tiny": "base", "tiny-base": "base"}


def resolve_model(name: str | Path) -> str:
    """A model name from a config: `tiny` is the project's own tiny model (built offline once); a path relative to the
    repository root is made absolute; anything else is a Hugging Face name, returned as it is."""
    name = str(name)
    if name in TINY_MODELS:
        from jinstruct.tinymodel import build_tiny_model

        return str(build_tiny_model(variant=TINY_MODELS[name]))
    local = resolve_path(name)
    return str(local) if local.exists() else name


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Stage:
    name: str
    cfg: Any  # jinstruct.settings.RunConfig
    run_dir: Path
    _clients: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, name: str, config_path: str | Path | None, run_dir: str | Path | None,
             overrides: dict[str, Any] | None = None) -> Stage:
        """`config_path`/`run_dir` None (a notebook opened by hand with its defaults) means configs/tiny.yaml and
        runs/<config name>."""
        cfg = load_config(config_path or REPO_ROOT / "configs" / "tiny.yaml", overrides or {})
        run = Path(run_dir) if run_dir else REPO_ROOT / "runs" / cfg.name
        run.mkdir(parents=True, exist_ok=True)
        seed_everything(cfg.seed)
        setup_japanese_font()
        return cls(name=name, cfg=cfg, run_dir=run.resolve())

    def path(self, *parts: str) -> Path:
        """A path inside the run folder; its parent folder exists."""
        p = self.run_dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def dir(self, *parts: str) -> Path:
        """A folder inside the run folder, created if needed."""
        p = self.run_dir.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p

    def endpoint(self, name: str):
        """The named endpoint's settings, with `embedded_model: tiny` resolved to the built tiny model."""
        endpoints = self.cfg.llm.endpoints
        if name not in endpoints:
            raise KeyError(f"endpoint '{name}' is not defined under llm.endpoints (have: {', '.join(endpoints)})")
        settings = endpoints[name]
        if settings.embedded_model is not None:
            settings = settings.model_copy(update={"embedded_model": Path(resolve_model(settings.embedded_model))})
        return settings

    def client(self, name: str):
        """The LLM client for a named endpoint; its ledger goes to `<run>/ledger/<stage>.json` (the manifest reads it)."""
        if name not in self._clients:
            from jinstruct.llm import open_client

            self._clients[name] = open_client(self.endpoint(name), run_dir=self.run_dir, stage=self.name,
                                              cache_path=resolve_path(self.cfg.llm.cache))
        return self._clients[name]

    def close(self) -> None:
        for c in self._clients.values():
            c.close()
        self._clients.clear()
