"""The machine-translated baseline ("Japanese-Alpaca"): an English Alpaca-format dataset translated into Japanese.

Each English record (instruction, input, output) is translated through the LLM client exactly as the seed tasks are
(`jinstruct.seeds.translate`): protected spans (code, URLs, numbers, placeholders) are masked before sending and checked
after, the reply is constrained by a JSON schema, and each record ends "ok", "flagged" (kept, with its problems
listed) or "failed" (left out, with the reason in the progress log). A record is a one-instance seed task to that
machinery; only the prompt (`prompts/translate_alpaca_ja.txt`) is this recipe's own.

The output is resumable like generation's (`jinstruct.generate.self_instruct.ResumableOutput`): records appended in source order
to `translated.jsonl`, one progress line per source record, an atomic checkpoint; a killed run replays the file and
goes on, and the LLM cache answers what was already translated. Each record is
`{id, instruction, input, output, recipe: "translate", source: <index in the English data>, model, request_id,
status, problems}`.

English data. `english_alpaca("official")` reads Stanford Alpaca's `alpaca_data.json` (52,002 records) from
tatsu-lab/stanford_alpaca at a pinned commit, downloaded once into the user's cache. Its sha256 could not be
established where this was written (no internet), so the file is checked by what is known for sure, the pinned
commit URL and the record count (52,002, each with string instruction, input and output), and on first download
its sha256 is written next to it (`alpaca_data.json.sha256`); every later load is checked against that file,
so a cached copy that changes is caught. Pass `sha256=` to pin a checksum you trust instead; delete the `.sha256`
file to accept a new download. `english_alpaca("sample")` is the small English sample written for this project
(`data/alpaca/en_alpaca_sample.jsonl`), for offline runs and tests; it is used only when asked for.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

import pandas as pd

from jinstruct.progress import bar as progress_bar
from jinstruct import paths
from jinstruct.download import ChecksumError, DownloadError, fetch_checked  # noqa: F401 (errors re-exported)
from jinstruct.generate.self_instruct import ResumableOutput, endpoint_params, in_order
from jinstruct.io import DataError, atomic_write_text, iter_jsonl, sha256_file, validation_error
from jinstruct.llm.ledger import estimate_prompt_tokens
from jinstruct.llm.request import ChatRequest
from jinstruct.formats.seed_task import Instance, SeedTask
from jinstruct.seeds.translate import load_prompt, read_translation, translation_requests

if TYPE_CHECKING:
    from jinstruct.llm import Estimate, LLMClient

RECIPE = "translate"
DEFAULT_PROMPT = paths.prompt_path("translate_alpaca_ja.txt")

ALPACA_COMMIT = "761dc5bfbdeeffa89b8bff5d038781a4055f796a"
ALPACA_URL = f"https://raw.githubusercontent.com/tatsu-lab/stanford_alpaca/{ALPACA_COMMIT}/alpaca_data.json"
ALPACA_RECORDS = 52_002
ALPACA_CACHE_NAME = "alpaca_data.json"


class AlpacaRecord(BaseModel):
    """One English record: instruction, input ("" when none), output."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instruction: str
    input: str = ""
    output: str


# ----- the English data ---------------------------------------------------------------------------------------


def load_alpaca(path: str | os.PathLike[str]) -> list[AlpacaRecord]:
    """Alpaca records from a JSON array (`alpaca_data.json`) or JSON Lines; a bad record is a DataError naming the
    file, the record (line for JSON Lines, 1-based position for an array) and the field."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, None, None, "file not found")
    head = path.read_bytes()[:64].lstrip()
    items: list[tuple[int, Any]]
    if head.startswith(b"["):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(path, e.lineno, None, f"not valid JSON ({e.msg})") from None
        items = list(enumerate(data, start=1))
        where = "record"
    else:
        items = list(iter_jsonl(path))
        where = "line"
    out = []
    for pos, obj in items:
        try:
            out.append(AlpacaRecord.model_validate(obj))
        except ValidationError as e:
            err = validation_error(path, pos, e)
            if where == "record":  # a position in the array, not a line of the file
                err = DataError(path, None, err.field, f"record {pos}: {err.problem}")
            raise err from None
    return out


def _check(data: bytes, source: str, sha256: str | None, records: int | None) -> None:
    if sha256 is not None and (got := hashlib.sha256(data).hexdigest()) != sha256:
        raise ChecksumError(f"{source}: sha256 {got} ({len(data):,} bytes), expected {sha256}. The file is not the "
                            "one pinned (changed upstream, or altered on the way). Check it; to accept it, delete "
                            "the recorded .sha256 file or pass the new sha256.")
    if records is not None:
        try:
            n = len(json.loads(data))
        except (json.JSONDecodeError, TypeError, UnicodeDecodeError):
            raise ChecksumError(f"{source}: not a JSON array of records") from None
        if n != records:
            raise ChecksumError(f"{source}: {n:,} records, expected {records:,}")


def fetch_alpaca(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    url: str = ALPACA_URL,
    sha256: str | None = None,
    expected_records: int | None = ALPACA_RECORDS,
    timeout_s: float = 120.0,
    http: httpx.Client | None = None,
) -> Path:
    """Stanford Alpaca's `alpaca_data.json` as a checked local file, downloaded once into `cache_dir`
    (default `<cache>/alpaca/`). A file already there (downloaded before, or put there by hand) is checked the same
    way; see the module docstring for what is checked. A download that fails the checks is not kept."""
    folder = Path(cache_dir) if cache_dir is not None else paths.cache_dir() / "alpaca"
    target = folder / ALPACA_CACHE_NAME
    recorded = target.with_name(target.name + ".sha256")
    pin = sha256 or (recorded.read_text(encoding="utf-8").split()[0] if recorded.exists() else None)
    target = fetch_checked(url, target, lambda data, source: _check(data, source, pin, expected_records),
                           what="the Alpaca data", expected_sha256=pin,
                           hint="Or use the English sample (source='sample').", timeout_s=timeout_s, http=http)
    if not recorded.exists():  # the first good copy pins every later load
        atomic_write_text(recorded, f"{sha256_file(target)}  {ALPACA_CACHE_NAME}\n")
    return target


def english_alpaca(
    source: Literal["sample", "official"] = "sample",
    *,
    limit: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    http: httpx.Client | None = None,
) -> list[AlpacaRecord]:
    """The English records from `source` (the first `limit`). "official" never falls back to the sample."""
    if source == "sample":
        records = load_alpaca(paths.data_dir() / "alpaca" / "en_alpaca_sample.jsonl")
    elif source == "official":
        records = load_alpaca(fetch_alpaca(cache_dir, http=http))
    else:
        raise ValueError(f"unknown Alpaca source {source!r}: use 'sample' or 'official'")
    return records[:limit] if limit is not None else records


# ----- translation --------------------------------------------------------------------------------------------


def as_task(index: int, record: AlpacaRecord) -> SeedTask | None:
    """The record as a one-instance task for `jinstruct.seeds.translate` (None when its instruction is blank)."""
    if not record.instruction.strip():
        return None
    name = f"alpaca-{index}"
    return SeedTask(id=name, name=name, instruction=record.instruction,
                    instances=[Instance(input=record.input, output=record.output)], is_classification=False)


def translation_request(index: int, record: AlpacaRecord, *, prompt_path: str | os.PathLike[str] = DEFAULT_PROMPT,
                        model: str | None = None, temperature: float = 0.0, max_tokens: int | None = None,
                        max_field_chars: int | None = None) -> ChatRequest | None:
    """The request that translates record `index` (None for a record that cannot be sent: a blank instruction).
    The arguments are `jinstruct.seeds.translate.translation_requests`'s (max_field_chars: tiny local models only)."""
    task = as_task(index, record)
    if task is None:
        return None
    return translation_requests([task], prompt_path=prompt_path, model=model, temperature=temperature,
                                max_tokens=max_tokens, max_field_chars=max_field_chars)[0]


def _fingerprint(records: Sequence[AlpacaRecord]) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps(r.model_dump(), ensure_ascii=False, sort_keys=True).encode())
        h.update(b"\n")
    return h.hexdigest()


@dataclass
class TranslationStats:
    """What one call of `translate_alpaca` did, and where the output stands."""

    total: int  # English records
    done: int  # processed so far, this call included
    resumed_from: int
    processed: int = 0
    sent: int = 0
    cached: int = 0
    written: int = 0  # records in the output now
    status: dict[str, int] = field(default_factory=dict)  # ok / flagged / failed, this call
    wall_s: float = 0.0
    settings_changed: list[str] = field(default_factory=list)  # what differed from the output found (started over)
    superseded: str | None = None  # where that output was moved

    @property
    def records_per_s(self) -> float:
        return self.processed / self.wall_s if self.wall_s > 0 else 0.0

    def table(self) -> pd.DataFrame:
        """One row per figure, for a notebook (as `GenerationStats.table`)."""
        rows = {"English records": self.total, "processed (all calls)": self.done, "resumed from": self.resumed_from,
                "processed now": self.processed, "sent": self.sent, "cached": self.cached,
                "records in output": self.written, **{f"status {k}": v for k, v in sorted(self.status.items())},
                "settings changed (started over)": ", ".join(self.settings_changed) or "-",
                "previous output moved to": self.superseded or "-",
                "wall s": round(self.wall_s, 2), "records/s": round(self.records_per_s, 2)}
        return pd.Series(rows, dtype=object).to_frame("value")  # counts stay integers


def translate_alpaca(
    records: Sequence[AlpacaRecord],
    client: LLMClient,
    out_path: str | os.PathLike[str],
    *,
    prompt_path: str | os.PathLike[str] = DEFAULT_PROMPT,
    model: str | None = None,
    temperature: float = 0.0,
    max_tokens: int | None = None,
    max_field_chars: int | None = None,
    keep_flagged: bool = True,
    flush_every_s: float = 1.0,
    progress: bool = True,
    supersede_dir: str | os.PathLike[str] | None = None,
) -> TranslationStats:
    """Translate every record into Japanese at `out_path` (resuming it if it exists), in source order.

    Flagged translations (a protected span lost or repeated, no Japanese where there should be some, ...) are
    written with their problems unless `keep_flagged` is False; failed ones are only logged.
    """
    prompt = load_prompt(prompt_path)
    params = {"recipe": RECIPE, "source_sha256": _fingerprint(records), "records": len(records),
              "prompt_sha256": hashlib.sha256(prompt.encode()).hexdigest(), "model": model,
              "temperature": temperature, "max_tokens": max_tokens, "max_field_chars": max_field_chars,
              "keep_flagged": keep_flagged, **endpoint_params(client)}
    out = ResumableOutput(out_path, params, flush_every_s)
    written, steps = out.open(supersede_dir)
    stats = TranslationStats(total=len(records), done=len(steps), resumed_from=len(steps), written=len(written),
                             settings_changed=out.changed, superseded=str(out.superseded) if out.superseded else None)
    t0 = time.perf_counter()
    status: Counter[str] = Counter()
    bar = None
    if progress:
        bar = progress_bar(total=len(records), initial=len(steps), desc=RECIPE, unit="rec")

    todo = [i for i in range(len(steps), len(records)) if as_task(i, records[i]) is not None]

    def make(k: int) -> ChatRequest:
        req = translation_request(todo[k], records[todo[k]], prompt_path=prompt_path, model=model,
                                  temperature=temperature, max_tokens=max_tokens, max_field_chars=max_field_chars)
        assert req is not None
        return req

    cursor = len(steps)  # the next source index to log
    try:
        with closing(in_order(client, make, 0, len(todo), desc=RECIPE)) as results:
            for k, result in results:
                i = todo[k]
                for blank in range(cursor, i):  # records with an empty instruction: never sent
                    _commit_blank(out, blank, status)
                cursor = i + 1
                stats.cached += result.cached
                stats.sent += not result.cached
                task = as_task(i, records[i])
                assert task is not None
                translated, report = read_translation(task, result)
                status[report.status] += 1
                rows = []
                if translated is not None and (report.status == "ok" or keep_flagged):
                    inst = translated.instances[0]
                    rows.append({"id": f"ja-alpaca-{i:05d}", "instruction": translated.instruction,
                                 "input": inst.input, "output": inst.output, "recipe": RECIPE, "source": i,
                                 "model": result.model, "request_id": result.request_id, "status": report.status,
                                 "problems": report.problems})
                out.commit(rows, {"source": i, "status": report.status, "problems": report.problems,
                                  "cached": result.cached, "written": bool(rows)})
                stats.written += len(rows)
                if bar is not None:
                    bar.update(i + 1 - bar.n)
        for blank in range(cursor, len(records)):
            _commit_blank(out, blank, status)
    finally:
        out.flush()
        stats.processed = sum(status.values())
        stats.done = stats.resumed_from + stats.processed
        stats.status = dict(status)
        stats.wall_s = time.perf_counter() - t0
        if bar is not None:
            bar.close()
    return stats


def _commit_blank(out: ResumableOutput, i: int, status: Counter[str]) -> None:
    status["failed"] += 1
    out.commit([], {"source": i, "status": "failed", "problems": ["the English instruction is empty"],
                    "cached": False, "written": False})


def estimate_translation(records: Sequence[AlpacaRecord], client: LLMClient, *,
                         prompt_path: str | os.PathLike[str] = DEFAULT_PROMPT, model: str | None = None,
                         temperature: float = 0.0, max_tokens: int | None = None,
                         max_field_chars: int | None = None) -> Estimate:
    """The client's no-call estimate for translating `records`: each completion is expected to take about as many
    tokens as the masked English JSON it translates (on average); cached translations cost nothing."""
    prompt = load_prompt(prompt_path)
    requests = [r for i, rec in enumerate(records)
                if (r := translation_request(i, rec, prompt_path=prompt_path, model=model, temperature=temperature,
                                             max_tokens=max_tokens, max_field_chars=max_field_chars)) is not None]
    payload_tokens = [estimate_prompt_tokens([{"content": r.messages[-1]["content"][len(prompt):]}]) for r in requests]
    per_request = max(1, round(sum(payload_tokens) / max(1, len(payload_tokens))))
    return client.estimate(requests, expected_output_tokens=per_request)


class TranslateAlpaca:
    """Recipe `translate`: the "Japanese-Alpaca" baseline, English Alpaca-format data machine-translated."""

    name = "translate"
    size_field = "english_limit"

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        english: Literal["sample", "official"] = "sample"  # the shipped sample, or Stanford Alpaca's 52K
        english_limit: int | None = None  # the first N records
        max_tokens: int | None = None
        max_field_chars: int | None = None  # bound each translated field (tiny models only)

    @staticmethod
    def describe(cfg: TranslateAlpaca.Config) -> str:
        return f"translate Alpaca data ({cfg.english}" + (f", first {cfg.english_limit:,})" if cfg.english_limit else ")")

    @staticmethod
    def estimate(cfg: TranslateAlpaca.Config, endpoint: str, stage: Any) -> Estimate:
        records = english_alpaca(cfg.english, limit=cfg.english_limit)
        return estimate_translation(records, stage.client(endpoint), max_tokens=cfg.max_tokens,
                                    max_field_chars=cfg.max_field_chars)

    @staticmethod
    def run(cfg: TranslateAlpaca.Config, endpoint: str, stage: Any) -> TranslationStats:
        records = english_alpaca(cfg.english, limit=cfg.english_limit)
        return translate_alpaca(records, stage.client(endpoint), stage.layout.generated, max_tokens=cfg.max_tokens,
                                max_field_chars=cfg.max_field_chars,
                                supersede_dir=stage.layout.superseded / "generated")
