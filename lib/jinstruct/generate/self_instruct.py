"""Self-instruct in Japanese: grow seed tasks into thousands of instructions, filtered by ROUGE-L as replies arrive.

The recipe is the Alpaca bootstrap's. Each request shows k demonstrations (default 3, drawn from the seed tasks,
optionally some from the tasks generated so far), numbered 1..k in the format of `jinstruct.generate.self_instruct_format`,
under the editable prompt `prompts/self_instruct_ja.txt`, and asks the model to go on up to task 20 (the request
stops before "20."). In structured mode the reply is a JSON list of tasks instead (`TASKS_SCHEMA`).

    recipe = SelfInstructRecipe.from_seeds(load_seed_tasks(path), seed=0)
    print(recipe.estimate(client, target=52_000))
    stats = generate_self_instruct(recipe, client, run_dir / "data" / "generated.jsonl", target=52_000)

`prompt: alpaca` sends stanford_alpaca's own `prompt.txt` instead (downloaded once from tatsu-lab/stanford_alpaca
at commit 761dc5bf, Apache-2.0, checked against the sha256 the config pins in `prompt_sha256`: the project has not
checked one itself, so an unpinned file is refused with its sha256 shown), followed by the demonstrations in
Alpaca's format and its completion cue `<k+1>. Instruction:`, with Alpaca's stop sequences (newline + `20`, and
`20.`): the bootstrap as Alpaca ran it, e.g. to reproduce a paper that used it. The reply is parsed with the cue put back.

Growth: a parsed candidate joins the pool iff its highest ROUGE-L against the pool and the seeds is at most the
threshold (0.7), decided by `jinstruct.filter.dedup.Deduper` as each reply is processed. Replies are processed in request
order whatever order they arrive in (a reorder buffer), so the output is a function of the replies alone, not of
timing or concurrency. Generation stops pulling requests when the target is reached, and candidates beyond the
target (from the same reply, or from replies still in flight) are dropped: exactly `target` records. At most
2 x concurrency - 1 requests are ever ahead of the processing (`in_order`), which bounds that overshoot.

Each record: `id` (si-000001, ...), `instruction`, `input` ("" for none), `output`, `recipe` ("self_instruct"),
`source` (the ids of the demonstrations in its prompt, seed or generated), `model` (as the endpoint reported it),
`request` (the request number), `request_id` (the endpoint's completion id), `rouge_l` (its highest ROUGE-L against
the pool when it was kept; null when below the neighbour floor, where scores are not computed) and `most_similar`
(up to `neighbours` nearest pool entries at or above the floor: id, instruction, rouge_l; Alpaca's
`most_similar_instructions`).

Determinism and resume. Request r is a function of (recipe, r) and, when generated tasks are mixed into the
demonstrations, of the records produced by the requests before r's wave (`wave` requests per wave, so a wave's
requests can all be in flight at once). Each request has its own `sample_index` (= r), hence its own cache key.
The output is append-only (`generated.jsonl`, fsync'd) with a per-request log (`generated.progress.jsonl`) and an
atomic checkpoint (`generated.state.json`), written together about once a second. A killed run restarts by
replaying the checkpointed prefix of the files (rebuilding the pool and the Deduper), dropping anything written
after the last checkpoint, and carrying on: the requests it sends again were answered before, so the LLM cache
answers them and nothing is paid twice. The settings compared on resume are the recipe's and the endpoint's model
(and its extra request fields). Resuming with other settings is refused, unless `supersede_dir` is given (the
stage gives `superseded/` of the run folder): then the old output is moved there and generation starts over, the
cache answering whatever requests did not change. Resuming with a larger target first processes the last request
again (from the cache) if it stopped at the old target, so the result is the same file as a run that had the larger
target from the start.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from functools import partial
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from jinstruct.download import fetch_checked, github_raw_url, sha256_check
from jinstruct.progress import bar as progress_bar
from jinstruct.filter.dedup import DEFAULT_THRESHOLD, Deduper
from jinstruct.io import (
    DataError,
    append_jsonl,
    iter_jsonl,
    read_json,
    write_json,
    write_jsonl,
)
from jinstruct.llm.request import ChatRequest, ChatResult
from jinstruct import paths
from jinstruct.formats.seed_task import load_seed_tasks
from jinstruct.paths import resolve_path
from jinstruct.generate.self_instruct_format import (
    ParseResult,
    Task,
    alpaca_cue,
    format_tasks,
    format_tasks_alpaca,
    parse_json_reply,
    parse_reply,
    tasks_schema,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from jinstruct.llm import Estimate, LLMClient
    from jinstruct.formats.seed_task import SeedTask

RECIPE = "self_instruct"
DEFAULT_PROMPT = paths.prompt_path("self_instruct_ja.txt")
ALPACA_REPO = "tatsu-lab/stanford_alpaca"
ALPACA_COMMIT = "761dc5bfbdeeffa89b8bff5d038781a4055f796a"
ALPACA_PROMPT = "prompt.txt"
PromptStyle = Literal["project", "alpaca"]
PLACEHOLDERS = ("{demos}", "{next}", "{total}")

# A task filter looks at a candidate {"instruction", "input", "output"} and returns why it is rejected, or None.
TaskFilter = Callable[[Mapping[str, str]], str | None]


class GenerationStopped(RuntimeError):
    """Generation ended before its target (no progress for too long, or the request limit); the output so far is
    kept and checkpointed, and a later call resumes from it."""


# ----- the recipe: which demonstrations each request shows, and the request itself ------------------------------


@dataclass(frozen=True)
class Demo:
    """A task shown in a prompt: a seed task (its first instance) or a generated record."""

    id: str
    instruction: str
    input: str
    output: str

    @classmethod
    def from_seed(cls, task: SeedTask) -> Demo:
        first = task.instances[0]
        return cls(task.id, task.instruction, first.input, first.output)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Demo:
        return cls(record["id"], record["instruction"], record["input"], record["output"])


def load_prompt(path: str | os.PathLike[str] = DEFAULT_PROMPT) -> str:
    """The prompt template; it must hold `{demos}`, `{next}` and `{total}` and is filled with str.format, so any
    other brace is written doubled (`{{`, `}}`)."""
    text = Path(path).read_text(encoding="utf-8")
    missing = [p for p in PLACEHOLDERS if p not in text]
    if missing:
        raise DataError(path, None, None, f"the prompt template lacks {', '.join(missing)}")
    try:
        text.format(demos="", next=1, total=2)
    except (KeyError, IndexError, ValueError) as e:
        raise DataError(path, None, None, f"the prompt template has a stray brace ({e!r}): write {{{{ and }}}} "
                        "for literal braces") from None
    return text


def fetch_alpaca_prompt(sha256: str | None, *, http: Any = None) -> Path:
    """stanford_alpaca's `prompt.txt` at the pinned commit, downloaded once into `<cache>/alpaca/<commit>/` and
    checked against `sha256` (a file without a pinned sha256 is refused, with its sha256 in the message)."""
    target = paths.cache_dir() / "alpaca" / ALPACA_COMMIT[:12] / ALPACA_PROMPT
    return fetch_checked(github_raw_url(ALPACA_REPO, ALPACA_COMMIT, ALPACA_PROMPT), target,
                         sha256_check(sha256, "Set generate.self_instruct.prompt_sha256 to it."),
                         what="stanford_alpaca's prompt.txt", expected_sha256=sha256, http=http)


@dataclass(frozen=True)
class SelfInstructRecipe:
    """What every request of a self-instruct run looks like.

    template: the prompt (see `load_prompt`). seeds: the seed demonstrations.
    seed: the run's seed: demonstrations are drawn with random.Random(f"{seed}:{r}") for request r, and it is sent
        as the sampling seed (endpoints that honour it make each draw reproducible).
    num_demos: k demonstrations per request; num_generated_demos of them come from generated records once there
        are any (self-instruct mixes some in; the default 0 shows seeds only, as Alpaca does).
    wave: with generated demonstrations, requests [w*wave, (w+1)*wave) draw them from the records of earlier waves.
    total: the list length asked for; the request stops before item `total`.
    structured: ask for `TASKS_SCHEMA` JSON (response_format json_schema) instead of a numbered list;
        max_tasks / max_field_chars bound that JSON (maxItems, maxLength) for weak local models only.
    """

    template: str
    seeds: tuple[Demo, ...]
    seed: int = 0
    num_demos: int = 3
    num_generated_demos: int = 0
    wave: int = 256
    total: int = 20
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 3072
    structured: bool = False
    max_tasks: int | None = None
    max_field_chars: int | None = None
    model: str | None = None
    style: PromptStyle = "project"  # "alpaca": `template` is stanford_alpaca's prompt.txt, shown as Alpaca shows it

    def __post_init__(self) -> None:
        if self.style == "alpaca" and self.structured:
            raise ValueError("stanford_alpaca's prompt asks for a numbered list: it cannot be used in structured mode")
        if self.num_demos < 1:
            raise ValueError(f"num_demos must be at least 1, got {self.num_demos}")
        if not 0 <= self.num_generated_demos <= self.num_demos:
            raise ValueError(f"num_generated_demos must be between 0 and num_demos, got {self.num_generated_demos}")
        if len(self.seeds) < self.num_demos:
            raise ValueError(f"{len(self.seeds)} seed tasks, fewer than num_demos={self.num_demos}")
        if self.total <= self.num_demos + 1:
            raise ValueError(f"total={self.total} leaves no task to generate after {self.num_demos} demonstrations")
        if self.wave < 1:
            raise ValueError(f"wave must be at least 1, got {self.wave}")
        if len({d.id for d in self.seeds}) != len(self.seeds):
            raise ValueError("seed ids must be unique")

    @classmethod
    def from_seeds(cls, seeds: Sequence[SeedTask], *, prompt_path: str | os.PathLike[str] = DEFAULT_PROMPT,
                   style: PromptStyle = "project", **settings: Any) -> SelfInstructRecipe:
        """The recipe over seed tasks (their first instance each) with the prompt file at `prompt_path` (with
        `style="alpaca"`, stanford_alpaca's prompt.txt, used as it is)."""
        template = load_prompt(prompt_path) if style == "project" else Path(prompt_path).read_text(encoding="utf-8")
        return cls(template=template, seeds=tuple(Demo.from_seed(t) for t in seeds), style=style, **settings)

    def wave_start(self, r: int) -> int:
        """The first request of request r's wave: r draws generated demonstrations from records before it."""
        return r - r % self.wave

    def demos(self, r: int, generated: Sequence[Demo] = ()) -> list[Demo]:
        """The demonstrations of request r, in prompt order; `generated` is what it may draw generated ones from."""
        rng = random.Random(f"{self.seed}:{r}")
        g = min(self.num_generated_demos, len(generated))
        chosen = rng.sample(self.seeds, self.num_demos - g) + rng.sample(list(generated), g)
        rng.shuffle(chosen)
        return chosen

    def prompt(self, demos: Sequence[Demo]) -> str:
        tasks = [(d.instruction, d.input, d.output) for d in demos]
        if self.style == "alpaca":  # prompt.txt, a newline, the demonstrations and the cue, as Alpaca's encoder
            return self.template + "\n" + format_tasks_alpaca(tasks)
        shown = format_tasks(tasks).rstrip("\n")
        return self.template.format(demos=shown, next=len(demos) + 1, total=self.total)

    def stop(self) -> list[str] | None:
        """Stop before item `total`: Alpaca's own stops in its style, the list numbers (also full-width) otherwise."""
        if self.structured:
            return None
        if self.style == "alpaca":
            return [f"\n{self.total}", f"{self.total}."]
        return [f"\n{self.total}.", f"\n{self.total}．", f"\n{_full_width(self.total)}．"]

    def request(self, r: int, generated: Sequence[Demo] = ()) -> ChatRequest:
        """Request r: its demonstrations' ids go in `tag` (not part of the cache key) as `self_instruct:r:id,id`."""
        demos = self.demos(r, generated)
        stop = self.stop()
        return ChatRequest(
            messages=[{"role": "user", "content": self.prompt(demos)}],
            model=self.model,
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            stop=stop,
            seed=self.seed,
            json_schema=tasks_schema(self.max_tasks, self.max_field_chars) if self.structured else None,
            sample_index=r,
            tag=f"{RECIPE}:{r}:" + ",".join(d.id for d in demos),
        )

    def tasks_per_request(self) -> int:
        """Tasks a full reply holds: k+1 .. total-1 (at most max_tasks in structured mode)."""
        n = self.total - 1 - self.num_demos
        return min(n, self.max_tasks) if self.structured and self.max_tasks is not None else n

    def parse(self, result: ChatResult) -> ParseResult:
        reason = result.finish_reasons[0] if result.finish_reasons else None
        if self.structured:
            return parse_json_reply(result.parsed if result.parsed is not None else result.text, reason)
        if self.style == "alpaca":  # the reply continues the cue
            return parse_reply(alpaca_cue(self.num_demos + 1) + result.text, reason)
        return parse_reply(result.text, reason)

    def params(self) -> dict[str, Any]:
        """What decides the requests (compared on resume): settings plus fingerprints of the template and seeds."""
        out = {k: v for k, v in asdict(self).items() if k not in ("template", "seeds")}
        out["template_sha256"] = hashlib.sha256(self.template.encode()).hexdigest()
        seeds = json.dumps([asdict(d) for d in self.seeds], ensure_ascii=False, sort_keys=True)
        out["seeds_sha256"] = hashlib.sha256(seeds.encode()).hexdigest()
        return out

    def estimate(self, client: LLMClient, target: int, *, keep_rate: float = 0.5,
                 tokens_per_task: int = 150) -> Estimate:
        """The client's no-call estimate for reaching `target`: ceil(target / (keep_rate * tasks per request))
        requests of `tokens_per_task` tokens per task (at most max_tokens per request). Requests after the first
        wave are priced with seed-only demonstrations (their generated ones are not known yet; as long)."""
        if not 0 < keep_rate <= 1:
            raise ValueError(f"keep_rate must be in (0, 1], got {keep_rate}")
        n = math.ceil(target / (keep_rate * self.tasks_per_request()))
        expected = min(tokens_per_task * self.tasks_per_request(), self.max_tokens)
        return client.estimate((self.request(r) for r in range(n)), expected)


def _full_width(n: int) -> str:
    return str(n).translate(str.maketrans("0123456789", "０１２３４５６７８９"))


# ----- the resumable output: append-only records + per-step log + atomic checkpoint ------------------------------


class ResumableOutput:
    """An output file that grows by appends and survives a kill at any moment.

    `<name>.jsonl` holds the records, `<name>.progress.jsonl` one line per finished step (a request, an item), and
    `<name>.state.json` the checkpoint: the parameters of the run and how many records and steps are final. Appends
    are buffered and written (records, then steps, each fsync'd, then the checkpoint, atomically) at most every
    `flush_every_s` seconds and on `flush()`. `open()` returns the checkpointed records and steps and cuts off
    whatever a killed run wrote after its last checkpoint (a torn line included). A file without a checkpoint is
    not ours: it is never overwritten. An output made with other parameters is refused, or, with `supersede_dir`,
    moved there (`superseded` then says where, `changed` which parameters) and started afresh.
    """

    def __init__(self, path: str | os.PathLike[str], params: Mapping[str, Any], flush_every_s: float = 1.0):
        self.path = Path(path)
        self.steps_path = self.path.with_name(self.path.stem + ".progress.jsonl")
        self.state_path = self.path.with_name(self.path.stem + ".state.json")
        self.params = json.loads(json.dumps(dict(params), ensure_ascii=False))
        self.flush_every_s = flush_every_s
        self.superseded: Path | None = None
        self.changed: list[str] = []
        self.n_records = 0
        self.n_steps = 0
        self._records: list[dict[str, Any]] = []
        self._steps: list[dict[str, Any]] = []
        self._flushed_at = time.monotonic()

    def open(self, supersede_dir: str | os.PathLike[str] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(records, steps) already final; a fresh output is started when there is none (or, with `supersede_dir`,
        when the one there was made with other parameters: it is moved into `supersede_dir/<time>/`)."""
        if self.state_path.exists() and supersede_dir is not None:
            state = read_json(self.state_path)
            if isinstance(state, dict) and state.get("params") not in (None, self.params):
                self.changed = sorted(k for k in set(state["params"]) | set(self.params)
                                      if state["params"].get(k) != self.params.get(k))
                self.superseded = Path(supersede_dir) / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
                self.superseded.mkdir(parents=True, exist_ok=True)
                for p in (self.path, self.steps_path, self.state_path):
                    if p.exists():
                        shutil.move(p, self.superseded / p.name)
        if not self.state_path.exists():
            for p in (self.path, self.steps_path):
                if p.exists() and p.stat().st_size > 0:
                    raise DataError(p, None, None, f"exists without its checkpoint {self.state_path.name}: it was "
                                    "not written by a resumable run; move it away or choose another output path")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for p in (self.path, self.steps_path):
                p.write_bytes(b"")
            self._checkpoint()
            return [], []
        state = read_json(self.state_path)
        if not isinstance(state, dict) or not {"params", "records", "steps"} <= state.keys():
            raise DataError(self.state_path, None, None, "not a checkpoint (needs params, records, steps)")
        if state["params"] != self.params:
            diff = sorted(k for k in set(state["params"]) | set(self.params)
                          if state["params"].get(k) != self.params.get(k))
            stored = ", ".join(f"{k}={state['params'].get(k)!r}" for k in diff)
            raise ValueError(f"{self.path} was made with other settings ({stored}): resume it with the same settings, "
                             "or write to another path")
        records = _final_prefix(self.path, int(state["records"]))
        steps = _final_prefix(self.steps_path, int(state["steps"]))
        self.n_records, self.n_steps = len(records), len(steps)
        return records, steps

    def rewind(self, n_records: int, n_steps: int) -> None:
        """Keep only the first n_records records and n_steps steps (atomic rewrites, then the checkpoint)."""
        self.flush()
        write_jsonl(self.path, _final_prefix(self.path, n_records))
        write_jsonl(self.steps_path, _final_prefix(self.steps_path, n_steps))
        self.n_records, self.n_steps = n_records, n_steps
        self._checkpoint()

    def commit(self, records: Iterable[Mapping[str, Any]], step: Mapping[str, Any]) -> None:
        """Add one step and its records; written by the next flush (due at most `flush_every_s` from now)."""
        self._records.extend(dict(r) for r in records)
        self._steps.append(dict(step))
        if time.monotonic() - self._flushed_at >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        self._flushed_at = time.monotonic()
        if not self._steps and not self._records:
            return
        if self._records:
            append_jsonl(self.path, self._records)
        append_jsonl(self.steps_path, self._steps)
        self.n_records += len(self._records)
        self.n_steps += len(self._steps)
        self._records, self._steps = [], []
        self._checkpoint()

    def _checkpoint(self) -> None:
        write_json(self.state_path, {"params": self.params, "records": self.n_records, "steps": self.n_steps,
                                     "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def _final_prefix(path: Path, n: int) -> list[dict[str, Any]]:
    """The first n objects of a JSON Lines file; anything after them (written after the checkpoint, or a torn
    line) is cut off by an atomic rewrite. Fewer than n is an error: the file was changed by hand."""
    if not path.exists():
        raise DataError(path, None, None, f"missing, but its checkpoint counts {n} lines")
    objs = [obj for _, obj in iter_jsonl(path, tolerate_torn_tail=True)]
    if len(objs) < n:
        raise DataError(path, None, None, f"has {len(objs)} complete lines, its checkpoint counts {n}: the file was "
                        "changed or truncated after it was written; restore it or start a new output")
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        ends_clean = size == 0 or (f.seek(size - 1) is not None and f.read(1) == b"\n")
    if len(objs) > n or not ends_clean:
        write_jsonl(path, objs[:n])
    return objs[:n]


# ----- growth ----------------------------------------------------------------------------------------------------


@dataclass
class GenerationStats:
    """What one call of `generate_self_instruct` did (this session) and where the whole output stands."""

    target: int
    kept: int  # records in the output now
    resumed_from_requests: int  # requests already done before this call
    resumed_from_records: int
    settings_changed: list[str] = field(default_factory=list)  # what differed from the output found (started over)
    superseded: str | None = None  # where that output was moved
    requests: int = 0  # requests processed in this call
    sent: int = 0  # of which answered by the endpoint (not the cache)
    cached: int = 0
    failed: int = 0
    replies: int = 0  # requests with a usable reply
    truncated: int = 0  # replies cut off at max_tokens
    candidates: int = 0  # parsed tasks
    new_records: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # by reason: "parse:…", "filter:…", "dedup", "over target"
    wall_s: float = 0.0
    dedup_s: float = 0.0  # in Deduper.add while growing
    replay_s: float = 0.0  # rebuilding the pool from the output at the start
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def dedup_share(self) -> float:
        """Share of the wall time spent deciding dedup (replay included)."""
        return (self.dedup_s + self.replay_s) / self.wall_s if self.wall_s > 0 else 0.0

    def rejected_by_kind(self) -> dict[str, int]:
        """Rejections grouped as parse / filter / dedup / over target."""
        out: Counter[str] = Counter()
        for reason, n in self.rejected.items():
            out[reason.split(":", 1)[0]] += n
        return dict(out)

    def table(self) -> pd.DataFrame:
        """One row per figure, for a notebook."""
        rows = {
            "target": self.target, "kept (output)": self.kept, "resumed from requests": self.resumed_from_requests,
            "reused records (same settings)": self.resumed_from_records,
            "settings changed (started over)": ", ".join(self.settings_changed) or "-",
            "previous output moved to": self.superseded or "-",
            "requests": self.requests, "sent": self.sent, "cached": self.cached, "failed": self.failed,
            "replies": self.replies, "truncated replies": self.truncated, "candidates": self.candidates,
            "new records": self.new_records,
            **{f"rejected: {k}": v for k, v in sorted(self.rejected.items())},
            "wall s": round(self.wall_s, 2), "requests / s": round(self.requests_per_s, 2),
            "dedup s": round(self.dedup_s, 2), "replay s": round(self.replay_s, 2),
            "dedup share": round(self.dedup_share, 3), "prompt tokens": self.prompt_tokens,
            "completion tokens": self.completion_tokens, "cost usd": round(self.cost_usd, 4),
        }
        return pd.Series(rows, dtype=object).to_frame("value")  # counts stay integers


class _Pool:
    """The Deduper plus the ids and texts of its entries (seeds first), and the generated demonstrations."""

    def __init__(self, seeds: Sequence[Demo], threshold: float, tokens: str, neighbours: int,
                 neighbour_floor: float | None):
        kw: dict[str, Any] = {"threshold": threshold, "tokens": tokens, "k": neighbours}
        if neighbour_floor is not None:
            kw["floor"] = neighbour_floor
        self.dedup = Deduper(**kw)
        self.dedup.seed(d.instruction for d in seeds)
        self.ids = [d.id for d in seeds]
        self.generated: list[Demo] = []
        self.generated_request: list[int] = []  # request number of each generated record, ascending

    def add(self, record: Mapping[str, Any], request: int) -> None:
        self.ids.append(record["id"])
        self.generated.append(Demo.from_record(record))
        self.generated_request.append(request)

    def before(self, r: int) -> list[Demo]:
        """Generated records of requests before r."""
        return self.generated[: bisect.bisect_left(self.generated_request, r)]

    def similar(self, neighbours: Sequence[tuple[int, float]]) -> list[dict[str, Any]]:
        return [{"id": self.ids[i], "instruction": self.dedup.texts[i], "rouge_l": round(s, 4)} for i, s in neighbours]


def endpoint_params(client: LLMClient) -> dict[str, Any]:
    """What the endpoint adds to every request's cache key: its model (unless a request names one) and its extra
    request fields; compared on resume with the recipe's own settings."""
    return {"endpoint_model": client.model, "extra_body": client.settings.extra_body,
            "max_tokens_param": client.settings.max_tokens_param}


def _output_params(recipe: SelfInstructRecipe, threshold: float, tokens: str, neighbours: int,
                   neighbour_floor: float | None, filter_name: str | None, client: LLMClient) -> dict[str, Any]:
    return {"recipe": RECIPE, **recipe.params(), "threshold": threshold, "tokens": tokens,
            "neighbours": neighbours, "neighbour_floor": neighbour_floor, "task_filter": filter_name,
            **endpoint_params(client)}


def generate_self_instruct(
    recipe: SelfInstructRecipe,
    client: LLMClient,
    out_path: str | os.PathLike[str],
    target: int,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    tokens: str = "char",
    neighbours: int = 10,
    neighbour_floor: float | None = None,
    task_filter: TaskFilter | None = None,
    max_requests: int | None = None,
    patience: int = 200,
    flush_every_s: float = 1.0,
    progress: bool = True,
    supersede_dir: str | os.PathLike[str] | None = None,
) -> GenerationStats:
    """Grow `recipe`'s seeds into exactly `target` instruction records at `out_path` (resuming it if it exists; an
    output made with other settings is refused, or moved into `supersede_dir` and started over).

    threshold / tokens: the ROUGE-L filter (keep iff best ROUGE-L against pool + seeds <= threshold).
    neighbours / neighbour_floor: how many nearest pool entries each record keeps in `most_similar` (those scoring
        at least the floor, the Deduper's default 0.5 when None).
    task_filter: an optional check run before dedup (e.g. the heuristic filters); its reason is counted.
    max_requests: a cap on request numbers; patience: stop after this many requests in a row kept nothing.
    Both raise GenerationStopped with the output checkpointed. BudgetExceeded from the client propagates the same way.
    """
    if target < 0:
        raise ValueError(f"target must be >= 0, got {target}")
    filter_name = None if task_filter is None else getattr(task_filter, "__qualname__", repr(task_filter))
    out = ResumableOutput(out_path, _output_params(recipe, threshold, tokens, neighbours, neighbour_floor,
                                                   filter_name, client), flush_every_s)
    records, steps = out.open(supersede_dir)
    if steps and steps[-1]["rejected"].get("over target") and target > len(records):
        # The last request stopped at a smaller target: process it again (from the cache) so that the candidates
        # it dropped get their chance, exactly as in a run that had the larger target from the start.
        last = steps[-1]["request"]
        records = [r for r in records if r["request"] != last]
        steps = steps[:-1]
        out.rewind(len(records), len(steps))
    if len(records) > target:
        raise ValueError(f"{out_path} already holds {len(records)} records, more than target={target}: take its "
                         f"first {target} lines, or write to another path")
    t0 = time.perf_counter()
    pool = _Pool(recipe.seeds, threshold, tokens, neighbours, neighbour_floor)
    for line, rec in enumerate(records, start=1):
        if rec.get("id") != f"si-{line:06d}" or not isinstance(rec.get("instruction"), str):
            raise DataError(out.path, line, "id", f"expected record si-{line:06d} with an instruction: the file was "
                            "edited after it was written; restore it or start a new output")
        pool.add(rec, rec["request"])
    # Kept records enter the pool exactly as `Deduper.add` put them there; no need to score them again.
    pool.dedup.seed(rec["instruction"] for rec in records)
    stats = GenerationStats(target=target, kept=len(records), resumed_from_requests=len(steps),
                            resumed_from_records=len(records), replay_s=time.perf_counter() - t0,
                            settings_changed=out.changed, superseded=str(out.superseded) if out.superseded else None)
    grower = _Grower(recipe, pool, out, stats, task_filter, target)
    bar = _progress_bar(progress, target, len(records))
    next_r = len(steps)
    idle = 0
    mixing = recipe.num_generated_demos > 0
    try:
        while stats.kept < target:
            if max_requests is not None and next_r >= max_requests:
                raise GenerationStopped(f"reached max_requests={max_requests} with {stats.kept} of {target} records "
                                        f"in {out.path}; raise it to go on")
            end = recipe.wave_start(next_r) + recipe.wave if mixing else None
            if max_requests is not None:
                end = max_requests if end is None else min(end, max_requests)
            shown = pool.before(recipe.wave_start(next_r)) if mixing else []
            make = partial(recipe.request, generated=shown)
            with closing(in_order(client, make, next_r, end, desc=RECIPE)) as replies:
                for r, result in replies:
                    kept_now = grower.process(r, result)
                    next_r = r + 1
                    idle = 0 if kept_now else idle + 1
                    if bar is not None:
                        bar.n = stats.kept
                        bar.set_postfix_str(f"{next_r:,} requests", refresh=False)
                        bar.update(0)
                    if idle >= patience:
                        raise GenerationStopped(
                            f"{patience} requests in a row kept nothing (last: request {r}, {stats.rejected}); "
                            f"{stats.kept} of {target} records in {out.path}. Check the endpoint and the replies "
                            "(a failing endpoint, an unparseable format, or a pool too full)")
                    if stats.kept >= target:
                        break
    finally:
        out.flush()
        stats.wall_s = time.perf_counter() - t0
        if bar is not None:
            bar.close()
    return stats


def in_order(client: LLMClient, make_request: Callable[[int], ChatRequest], start: int, end: int | None = None,
             desc: str = "") -> Generator[tuple[int, ChatResult], None, None]:
    """(r, result) for requests r = start, start+1, ... (up to `end`, or forever), in request order.

    Requests go through `client.stream` (so with the client's concurrency and cache) and are built lazily by
    `make_request(r)`. At most 2 x concurrency - 1 requests are ever ahead of what the caller has been given:
    when that many are out, the current stream is allowed to drain and the next one starts where it ended.
    This bounds what a caller that stops early (a reached target) leaves answered but unused, and keeps a
    caller slower than the endpoint from waiting on the client's window of untaken results. Stop by breaking.
    """
    lookahead = max(1, 2 * client.settings.concurrency - 1)
    next_r = start
    while end is None or next_r < end:
        feed = _Feed(make_request, next_r, end, lookahead)
        waiting: dict[int, ChatResult] = {}
        results = client.stream(feed, desc=desc, progress=False)
        try:
            for result in results:
                feed.taken += 1
                waiting[feed.start + result.index] = result
                while next_r in waiting:
                    yield next_r, waiting.pop(next_r)
                    next_r += 1
        finally:  # a caller that stops early stops the stream (and the requests in flight) now
            getattr(results, "close", lambda: None)()


class _Feed:
    """The requests of one `client.stream` call, pulled by the client (from its own thread) until `lookahead`
    of them are out that the caller has not taken yet."""

    def __init__(self, make_request: Callable[[int], ChatRequest], start: int, end: int | None, lookahead: int):
        self.make_request, self.start, self.end, self.lookahead = make_request, start, end, lookahead
        self.pulled = 0
        self.taken = 0  # counted by the caller as results arrive

    def __iter__(self) -> Iterator[ChatRequest]:
        numbers: Iterable[int] = count(self.start) if self.end is None else range(self.start, self.end)
        for r in numbers:
            if self.pulled - self.taken >= self.lookahead:
                return
            self.pulled += 1
            yield self.make_request(r)


class _Grower:
    """Turns each reply, in request order, into records and one progress line."""

    def __init__(self, recipe: SelfInstructRecipe, pool: _Pool, out: ResumableOutput, stats: GenerationStats,
                 task_filter: TaskFilter | None, target: int):
        self.recipe, self.pool, self.out, self.stats = recipe, pool, out, stats
        self.task_filter, self.target = task_filter, target

    def process(self, r: int, result: ChatResult) -> int:
        s = self.stats
        s.requests += 1
        s.cached += result.cached
        s.sent += not result.cached
        s.prompt_tokens += result.usage.prompt_tokens
        s.completion_tokens += result.usage.completion_tokens
        s.cost_usd += 0.0 if result.cached else result.cost_usd
        source = result.request.tag.split(":", 2)[2].split(",")
        rejected: Counter[str] = Counter()
        records: list[dict[str, Any]] = []
        dedup_s = 0.0
        tasks: list[Task] = []
        if result.error is not None:
            s.failed += 1
        else:
            s.replies += 1
            s.truncated += result.truncated
            parsed = self.recipe.parse(result)
            tasks = parsed.tasks
            rejected.update(f"parse:{x.reason}" for x in parsed.rejected)
            if not tasks and not parsed.rejected:
                rejected["parse:no tasks"] += 1
        for task in tasks:
            if s.kept >= self.target:
                rejected["over target"] += 1
                continue
            candidate = {"instruction": task.instruction, "input": task.input, "output": task.output}
            if self.task_filter is not None and (reason := self.task_filter(candidate)):
                rejected[f"filter:{reason}"] += 1
                continue
            t = time.perf_counter()
            decision = self.pool.dedup.add(task.instruction)
            dedup_s += time.perf_counter() - t
            if not decision.kept:
                rejected["dedup"] += 1
                continue
            s.kept += 1
            record = {
                "id": f"si-{s.kept:06d}",
                **candidate,
                "recipe": RECIPE,
                "source": source,
                "model": result.model,
                "request": r,
                "request_id": result.request_id,
                "rouge_l": round(decision.best_score, 4) if decision.best_score >= self.pool.dedup.floor else None,
                "most_similar": self.pool.similar(decision.neighbours),
            }
            self.pool.add(record, r)
            records.append(record)
        s.candidates += len(tasks)
        s.new_records += len(records)
        s.dedup_s += dedup_s
        for k, v in rejected.items():
            s.rejected[k] = s.rejected.get(k, 0) + v
        step = {
            "request": r, "source": source, "cached": result.cached, "error": result.error,
            "finish_reason": result.finish_reasons[0] if result.finish_reasons else None,
            "candidates": len(tasks), "kept": len(records), "rejected": dict(rejected),
            "kept_total": s.kept, "dedup_s": round(dedup_s, 6),
            "prompt_tokens": result.usage.prompt_tokens, "completion_tokens": result.usage.completion_tokens,
        }
        self.out.commit(records, step)
        return len(records)


def _progress_bar(progress: bool, total: int, initial: int) -> Any:
    if not progress:
        return None
    return progress_bar(total=total, initial=initial, desc=RECIPE, unit="inst")


# ----- reading a run back: the per-request series and its figure --------------------------------------------------


def progress_path(out_path: str | os.PathLike[str]) -> Path:
    """The per-request log next to an output (`generated.jsonl` -> `generated.progress.jsonl`)."""
    p = Path(out_path)
    return p.with_name(p.stem + ".progress.jsonl")


def request_series(out_path: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per processed request, in order: request, candidates (tasks parsed), kept, rejected by kind, and the
    running totals `generated` (candidates so far) and `kept_total`; for "kept versus generated over requests"."""
    path = progress_path(out_path)
    rows = []
    for _, step in iter_jsonl(path, tolerate_torn_tail=True):
        rej: Counter[str] = Counter()
        for reason, n in (step.get("rejected") or {}).items():
            rej[reason.split(":", 1)[0]] += n
        rows.append({"request": step["request"], "cached": step["cached"], "failed": step["error"] is not None,
                     "candidates": step["candidates"], "kept": step["kept"],
                     "rejected_parse": rej["parse"], "rejected_filter": rej["filter"], "rejected_dedup": rej["dedup"],
                     "dedup_s": step.get("dedup_s", 0.0)})
    columns = ["request", "cached", "failed", "candidates", "kept", "rejected_parse", "rejected_filter",
               "rejected_dedup", "dedup_s"]
    df = pd.DataFrame(rows, columns=columns)
    df["generated"] = df["candidates"].cumsum()
    df["kept_total"] = df["kept"].cumsum()
    df["keep_rate"] = (df["kept_total"] / df["generated"].where(df["generated"] > 0)).fillna(0.0)
    return df


def plot_kept_vs_generated(series: pd.DataFrame) -> Figure:
    """Generated candidates and kept instructions (cumulative) against requests, with the running keep rate.

    Where nothing was dropped the two lines coincide: kept is drawn as a filled area and generated as a dashed
    line over it, so both stay visible."""
    from jinstruct.plotting import PALETTE, count_axis, label, new_figure

    fig, (ax,) = new_figure(7, 4)
    x = series["request"] + 1
    ax.fill_between(x, series["kept_total"], color=PALETTE[2], alpha=0.25, linewidth=0)
    ax.plot(x, series["kept_total"], color=PALETTE[2], linewidth=2,
            label=label("採用 (ROUGE-L ≤ しきい値)", "kept (ROUGE-L <= threshold)"))
    ax.plot(x, series["generated"], color=PALETTE[0], linestyle="--", marker="o", markersize=3, zorder=3,
            label=label("生成 (解析できた候補)", "generated (parsed candidates)"))
    ax.set_xlabel(label("リクエスト数", "requests"))
    ax.set_ylabel(label("指示の数", "instructions"))
    ax.set_ylim(bottom=0)
    count_axis(ax, "x")
    count_axis(ax, "y")
    ax.grid(alpha=0.3)
    rate = ax.twinx()
    rate.plot(x, series["keep_rate"], color="grey", linestyle=":", label=label("採用率", "keep rate"))
    rate.set_ylim(0, 1.05)
    rate.set_ylabel(label("採用率", "keep rate"))
    lines = ax.get_legend_handles_labels()
    extra = rate.get_legend_handles_labels()
    ax.legend(lines[0] + extra[0], lines[1] + extra[1], loc="upper left")
    ax.set_title(label("リクエストごとの生成数と採用数", "Kept versus generated over requests"))
    return fig


def load_generated(out_path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The checkpointed records of an output (what a finished or interrupted run produced)."""
    path = Path(out_path)
    state_path = path.with_name(path.stem + ".state.json")
    n = int(read_json(state_path)["records"]) if state_path.exists() else None
    objs = [obj for _, obj in iter_jsonl(path, tolerate_torn_tail=True)]
    return objs if n is None else objs[:n]


def generated_frame(out_path: str | os.PathLike[str]) -> pd.DataFrame:
    """The generated records as a table: instruction, input, output (and the rest of each record's fields)."""
    records = load_generated(out_path)
    frame = pd.DataFrame(records)
    first = [c for c in ("instruction", "input", "output") if c in frame.columns]
    return frame[first + [c for c in frame.columns if c not in first]]


class SelfInstruct:
    """Recipe `self_instruct`: the Alpaca bootstrap in Japanese, from the run's post-edited seeds (stage 01)."""

    name = "self_instruct"
    size_field = "target"

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        target: int = Field(default=52_000, ge=1)  # exactly this many instructions
        num_demos: int = 3  # demonstrations per request (Alpaca: 3)
        num_generated_demos: int = 0  # of them, drawn from generated tasks (self-instruct mixes some in)
        temperature: float = 1.0
        top_p: float = 1.0
        max_tokens: int = 3072
        structured: bool = False  # ask for a JSON list of tasks (endpoints with structured outputs)
        max_tasks: int | None = None  # bound the JSON list (tiny models only)
        max_field_chars: int | None = None  # bound each JSON field (tiny models only)
        threshold: float = 0.7  # ROUGE-L: keep a candidate iff its best score against pool + seeds is at most this
        tokens: Literal["char", "word"] = "char"
        # project: the Japanese prompt shipped with the project; alpaca: stanford_alpaca's own prompt.txt (pinned
        # commit), its completion cue and stop sequences
        prompt: PromptStyle = "project"
        prompt_sha256: str | None = None  # pins stanford_alpaca's prompt.txt (prompt: alpaca); unpinned is refused

    @staticmethod
    def recipe(cfg: SelfInstruct.Config, seeds_path: Path, seed: int) -> SelfInstructRecipe:
        prompt = fetch_alpaca_prompt(cfg.prompt_sha256) if cfg.prompt == "alpaca" else DEFAULT_PROMPT
        return SelfInstructRecipe.from_seeds(
            load_seed_tasks(seeds_path), prompt_path=prompt, style=cfg.prompt, seed=seed, num_demos=cfg.num_demos,
            num_generated_demos=cfg.num_generated_demos, temperature=cfg.temperature, top_p=cfg.top_p,
            max_tokens=cfg.max_tokens, structured=cfg.structured, max_tasks=cfg.max_tasks,
            max_field_chars=cfg.max_field_chars)

    @staticmethod
    def describe(cfg: SelfInstruct.Config) -> str:
        style = " (stanford_alpaca's prompt)" if cfg.prompt == "alpaca" else ""
        return f"self-instruct to {cfg.target:,} instructions{style}"

    @staticmethod
    def estimate(cfg: SelfInstruct.Config, endpoint: str, stage: Any) -> Estimate:
        seeds = stage.layout.japanese_seeds
        seeds = seeds if seeds.exists() else resolve_path(stage.cfg.seeds.japanese)  # before stage 01 has run
        return SelfInstruct.recipe(cfg, seeds, stage.cfg.seed).estimate(stage.client(endpoint), cfg.target)

    @staticmethod
    def run(cfg: SelfInstruct.Config, endpoint: str, stage: Any) -> GenerationStats:
        recipe = SelfInstruct.recipe(cfg, stage.layout.japanese_seeds, stage.cfg.seed)
        stats = generate_self_instruct(recipe, stage.client(endpoint), stage.layout.generated, cfg.target,
                                       threshold=cfg.threshold, tokens=cfg.tokens,
                                       supersede_dir=stage.layout.superseded / "generated")
        if stats.superseded:
            print(f"settings changed ({', '.join(stats.settings_changed)}): started over; the previous output is "
                  f"kept in {stats.superseded}")
        return stats
