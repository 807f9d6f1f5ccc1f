"""What a run's LLM stages would send and cost, calling nothing:

    python -m jinstruct estimate --config configs/paper.yaml [--set generate.self_instruct.target=5000] [--name RUN]

Seed translation and generation are estimated from the config (generation from the run's post-edited seeds when
they exist, else the shipped ones); judging from the answers in the run folder and the published answer files the
config names (a model stage 05 has not answered yet is priced with another model's answers, and the table says
so). A benchmark or answer file that is not downloaded yet and cannot be (offline) is named with its URL, its
sha256 and where to put it, and the other stages are still estimated. A recipe with several LLM steps gets one row
per step; endpoints with a `tokens_per_s` (self-hosted vLLM) also show GPU-hours. Answers already in the LLM cache
cost nothing. No API key is needed and nothing is sent.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from jinstruct.download import ChecksumError, DownloadError
from jinstruct.formats.benchmarks import published_answers
from jinstruct.formats.fastchat import load_answer_dir, load_answers, load_benchmark
from jinstruct.generate.recipes import describe, estimate_parts
from jinstruct.judge.stage import judge_prompts, judging_requests, plan_judging
from jinstruct.llm import Estimate, LLMClient
from jinstruct.paths import resolve_path, runs_dir
from jinstruct.run.config import ConfigError
from jinstruct.run.runner import overrides_dict, stage_numbers
from jinstruct.run.schema import load_config
from jinstruct.run.stage import Stage
from jinstruct.seeds.english import english_seeds
from jinstruct.seeds.translate import translation_requests


@dataclass
class StageEstimate:
    stage: str
    endpoint: str
    what: str
    estimate: Estimate | None  # None: not estimable yet (`what` says why, `needs` in full)
    needs: str = ""  # what is missing and where to put it (printed under the table)


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


def estimate_run(st: Stage, stages: str | None = None) -> list[StageEstimate]:
    """One row per LLM stage among `stages` (default: the config's `stages`, else all)."""
    cfg, out = st.cfg, []
    spec = stages or cfg.stages
    wanted = stage_numbers(spec) if spec else {1, 2, 6}
    s = cfg.seeds
    if 1 in wanted:
        try:
            english = english_seeds(s.english, limit=s.english_limit)
            requests = translation_requests(english, max_tokens=s.max_tokens, max_field_chars=s.max_field_chars)
            out.append(StageEstimate("01_seed_editing", s.endpoint, f"translate {len(english)} seed tasks",
                                     _client(st, s.endpoint, "01_seed_editing").estimate(requests)))
        except (DownloadError, ChecksumError) as e:
            out.append(StageEstimate("01_seed_editing", s.endpoint, f"the {s.english} English seeds are not here",
                                     None, str(e)))

    g = cfg.generate
    if 2 in wanted:
        try:
            for part, endpoint, est in estimate_parts(g, _Counting(st, "02_generation")):
                out.append(StageEstimate("02_generation", endpoint, part, est))
        except (DownloadError, ChecksumError) as e:
            out.append(StageEstimate("02_generation", g.endpoint, f"{describe(g)}: a file is missing", None, str(e)))

    if 6 in wanted:
        out.append(_judging(st))
    return out


def _answers_for_judging(st: Stage) -> tuple[dict[str, dict], list[str], list[str]]:
    """{model: answers} that judging would see: the run's answer files, and the published answer files of models
    that have `answers:` (fetched and checked, or named as missing); the models without answers yet; and what
    could not be had, with where to put it."""
    layout, have = st.layout, {}
    if layout.answers.is_dir():
        have = load_answer_dir(layout.answers)
    pending, missing = [], []
    for spec in st.cfg.answer.models:
        key = layout.answer_file(spec.model_id).stem
        if key in have:
            continue
        if spec.answers:
            try:
                path = published_answers(spec.answers, spec.answers_sha256)
                have[key] = {a.question_id: a for a in load_answers(path, model_id=key)}
            except (DownloadError, ChecksumError, FileNotFoundError, KeyError) as e:
                missing.append(f"answers of {spec.model_id}: {e}")
        else:
            pending.append(key)
    return have, pending, missing


def _judging(st: Stage) -> StageEstimate:
    """Judging from the answers there are. A model whose answers stage 05 has not written yet is priced with the
    answers of a model that has them (the baseline's when it has), and the row says so. Every file that is missing
    (benchmark, judge prompts, published answers) is named at once."""
    cfg, j = st.cfg, st.cfg.judge
    needs: list[str] = []
    try:
        questions, references = load_benchmark(cfg.answer.benchmark, cfg.answer.per_category)
    except (DownloadError, ChecksumError) as e:
        needs.append(str(e))
    else:
        try:
            judge_prompts(j)
        except (DownloadError, ChecksumError) as e:
            needs.append(str(e))
    have, pending, missing = _answers_for_judging(st)
    needs += missing
    if needs:
        return StageEstimate("06_judging", j.endpoint, "files are missing (listed below)", None, "\n".join(needs))
    if not have:
        return StageEstimate("06_judging", j.endpoint, f"no answers in {st.layout.answers} yet: run stages up to 05",
                             None)
    note = ""
    if pending:
        stand_in = j.baseline if j.baseline in have else sorted(have)[0]
        have.update({m: have[stand_in] for m in pending})
        note = f" ({', '.join(pending)} not answered yet: priced with {stand_in}'s answers)"
    pairs, singles = plan_judging(j, questions, references, have)
    requests = judging_requests(j, pairs, singles, cfg.seed)
    return StageEstimate("06_judging", j.endpoint, f"{len(pairs)} games x 2 orders, {len(singles)} gradings{note}",
                         _client(st, j.endpoint, "06_judging").estimate(requests))


def table(rows: list[StageEstimate]) -> str:
    """The estimates as a Markdown table (a stage that cannot be estimated yet says why)."""
    numbers = ("requests", "cached", "to send", "prompt tok", "completion tok", "cost $", "at most $", "GPU h")
    records = []
    for r in rows:
        e = r.estimate
        row: dict[str, object] = {"stage": r.stage, "endpoint": r.endpoint, "work": r.what, **dict.fromkeys(numbers, "-")}
        if e is not None:
            counts = (e.requests, e.cached, e.to_send, e.prompt_tokens, e.completion_tokens)
            row.update({name: f"{n:,}" for name, n in zip(numbers, counts)})
            row["cost $"] = f"{e.cost_usd:.2f}" + ("" if e.priced else " (no price)")
            row["at most $"] = f"{e.max_cost_usd:.2f}" if e.max_cost_usd is not None else "no bound"
            row["GPU h"] = f"{e.gpu_hours:,.1f}" if e.gpu_hours is not None else "-"
        records.append(row)
    return pd.DataFrame(records).to_markdown(index=False, disable_numparse=True, colalign=["left"] * 3 + ["right"] * 8)


def notes(rows: list[StageEstimate]) -> str:
    """What the stages that could not be estimated need, in full (URLs, sha256, where to put each file)."""
    return "\n\n".join(f"{r.stage} needs:\n{r.needs}" for r in rows if r.needs)


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
    rows = estimate_run(st, args.stages)
    print(table(rows))
    if text := notes(rows):
        print("\n" + text)
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("estimate", help="requests, tokens and cost of a run's LLM stages, calling nothing")
    p.add_argument("--config", required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--name", help="the run whose seeds and answers to estimate from (default: the config's name)")
    p.add_argument("--stages", help="which stages to estimate: 01-06, 02, ... (default: the config's `stages`, "
                   "else all)")
    p.add_argument("--runs-dir")
    p.set_defaults(func=_main)
