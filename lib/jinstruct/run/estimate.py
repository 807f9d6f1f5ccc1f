"""What a run's LLM stages would send and cost, calling nothing:

    python -m jinstruct estimate --config configs/paper.yaml [--set generate.self_instruct.target=5000] [--name RUN]

Seed translation and generation are estimated from the config (generation from the run's post-edited seeds when
they exist, else the shipped ones); judging from the answers in the run folder, once stage 05 has written them.
Answers already in the LLM cache cost nothing. No API key is needed and nothing is sent.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from jinstruct.formats.fastchat import load_benchmark
from jinstruct.download import DownloadError
from jinstruct.generate.recipes import describe, estimate_generation
from jinstruct.judge.stage import judging_requests, plan_judging
from jinstruct.llm import Estimate, LLMClient
from jinstruct.paths import resolve_path, runs_dir
from jinstruct.run.config import ConfigError
from jinstruct.run.runner import overrides_dict
from jinstruct.run.schema import load_config
from jinstruct.run.stage import Stage
from jinstruct.seeds.english import english_seeds
from jinstruct.seeds.translate import translation_requests


@dataclass
class StageEstimate:
    stage: str
    endpoint: str
    what: str
    estimate: Estimate | None  # None: not estimable yet (`what` says why)


def _client(st: Stage, endpoint: str, stage: str) -> LLMClient:
    # no key is needed to count: the client is never asked to send
    settings = st.endpoint(endpoint).model_copy(update={"api_key_env": None})
    return LLMClient(settings, resolve_path(st.cfg.llm.cache), stage=stage, progress=False)


class _Counting:
    """The stage as a recipe sees it, with clients that only count (no key, never sending)."""

    def __init__(self, st: Stage, stage: str):
        self.st, self.stage, self.layout, self.cfg = st, stage, st.layout, st.cfg

    def client(self, endpoint: str) -> LLMClient:
        return _client(self.st, endpoint, self.stage)


def estimate_run(st: Stage) -> list[StageEstimate]:
    cfg, out = st.cfg, []
    s = cfg.seeds
    try:
        english = english_seeds(s.english, limit=s.english_limit)
        requests = translation_requests(english, max_tokens=s.max_tokens, max_field_chars=s.max_field_chars)
        out.append(StageEstimate("01_seed_editing", s.endpoint, f"translate {len(english)} seed tasks",
                                 _client(st, s.endpoint, "01_seed_editing").estimate(requests)))
    except DownloadError as e:
        out.append(StageEstimate("01_seed_editing", s.endpoint, str(e), None))

    g = cfg.generate
    what = describe(g)
    try:
        est = estimate_generation(g, _Counting(st, "02_generation"))
        out.append(StageEstimate("02_generation", g.endpoint, what, est))
    except DownloadError as e:
        out.append(StageEstimate("02_generation", g.endpoint, str(e), None))

    j = cfg.judge
    answers = st.layout.answers
    if answers.is_dir() and any(answers.glob("*.jsonl")):
        questions, references = load_benchmark(cfg.answer.benchmark, cfg.answer.per_category)
        pairs, singles = plan_judging(j, questions, references, answers)
        requests = judging_requests(j, pairs, singles, cfg.seed)
        out.append(StageEstimate("06_judging", j.endpoint, f"{len(pairs)} games x 2 orders, {len(singles)} gradings",
                                 _client(st, j.endpoint, "06_judging").estimate(requests)))
    else:
        out.append(StageEstimate("06_judging", j.endpoint, f"no answers in {answers} yet: run stages up to 05", None))
    return out


def table(rows: list[StageEstimate]) -> str:
    """The estimates as a Markdown table (a stage that cannot be estimated yet says why)."""
    numbers = ("requests", "cached", "to send", "prompt tok", "completion tok", "cost $", "at most $")
    records = []
    for r in rows:
        e = r.estimate
        row: dict[str, object] = {"stage": r.stage, "endpoint": r.endpoint, "work": r.what, **dict.fromkeys(numbers, "-")}
        if e is not None:
            counts = (e.requests, e.cached, e.to_send, e.prompt_tokens, e.completion_tokens)
            row.update({name: f"{n:,}" for name, n in zip(numbers, counts)})
            row["cost $"] = f"{e.cost_usd:.2f}" + ("" if e.priced else " (no price)")
            row["at most $"] = f"{e.max_cost_usd:.2f}" if e.max_cost_usd is not None else "no bound"
        records.append(row)
    return pd.DataFrame(records).to_markdown(index=False, disable_numparse=True, colalign=["left"] * 3 + ["right"] * 7)


def _main(args: argparse.Namespace) -> int:
    try:
        overrides = overrides_dict(args.set)
        config_name = None
        if args.name is None:
            config_name = load_config(args.config, overrides).name
        runs = Path(args.runs_dir) if args.runs_dir else runs_dir()
        st = Stage.open("estimate", args.config, runs / (args.name or config_name), overrides, exclusive=False)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(table(estimate_run(st)))
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("estimate", help="requests, tokens and cost of a run's LLM stages, calling nothing")
    p.add_argument("--config", required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--name", help="the run whose seeds and answers to estimate from (default: the config's name)")
    p.add_argument("--runs-dir")
    p.set_defaults(func=_main)
