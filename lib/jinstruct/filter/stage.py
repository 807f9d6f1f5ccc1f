"""The filtering stage: heuristic filters, then exact ROUGE-L dedup, then the run's data files and dataset card.

    result = filter_records(load_records(run / "data/generated.jsonl"), seeds, FilterParams())
    write_outputs(result, run / "data")

Order (Alpaca's post-processing, then its similarity filter): every record goes through the heuristics of
`jinstruct.filter.heuristics` (the first failing one is its reason); the survivors go, in order, through the greedy ROUGE-L
filter on the instruction, with the seed instructions preloaded in the pool (`jinstruct.filter.dedup`). Every rejected
record is written with `reject_reason` (a code of `filters.REASONS`, or `rouge_duplicate`) and `reject_detail`.
Records made from a task template (those with a `template` field, e.g. recipe `from_datasets`) skip the ROUGE-L
filter: their instructions repeat by design, what differs is the input, and the recipe already dropped exact
duplicates.

Training records are TRL's conversational format. The user turn is the instruction, followed, when the record has
an input, by a blank line and the input (`instruction + "\\n\\n" + input`); the assistant turn is the output. The
record also keeps `id`, `instruction` and `input`, which the `alpaca_ja` training template reads.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from jinstruct.progress import bar as progress_bar
from jinstruct.filter.dedup import Deduper
from jinstruct.filter.heuristics import REASONS, FilterParams, Filters
from jinstruct.filter.stats import length_summary, rejection_table
from jinstruct.formats.records import InstructionRecord
from jinstruct.io import (
    DataError,
    atomic_write_text,
    iter_jsonl,
    validation_error,
    write_jsonl,
)

ROUGE_REASON = "rouge_duplicate"
OUTPUT_FILES = ("filtered.jsonl", "rejected.jsonl", "train.jsonl", "dataset_card.md")


def load_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read instruction records; a bad line is a DataError naming the file, the line and the field. Ids are unique:
    a repeated id means two writers appended to one file (two runs of one run folder at once) and is an error."""
    out = []
    first: dict[Any, int] = {}
    for line, obj in iter_jsonl(path):
        _validate(obj, path, line)
        rid = obj.get("id")
        if rid in first:
            raise DataError(path, line, "id", f"duplicate id {rid!r} (first on line {first[rid]}): the file was "
                            "written twice over (two runs at once?); regenerate it")
        first[rid] = line
        out.append(obj)
    return out


def _validate(obj: Mapping[str, Any], path: str | os.PathLike[str], line: int | None) -> None:
    try:
        InstructionRecord.model_validate(obj)
    except ValidationError as e:
        raise validation_error(path, line, e) from None


@dataclass
class FilterResult:
    """What `filter_records` decided: kept and rejected records (rejected ones with reject_reason/reject_detail)."""

    kept: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    params: FilterParams
    n_input: int
    n_seeds: int
    reasons: dict[str, int] = field(default_factory=dict)  # rejections by reason, in REASONS order

    @property
    def n_kept(self) -> int:
        return len(self.kept)


def _seed_text_and_id(seed: str | Mapping[str, Any], i: int) -> tuple[str, str]:
    if isinstance(seed, str):
        return seed, f"seed-{i}"
    text = seed.get("instruction")
    if not isinstance(text, str):
        raise DataError("<seeds>", i + 1, "instruction", "missing or not a string")
    return text, str(seed.get("id") or seed.get("name") or f"seed-{i}")


def filter_records(
    records: Iterable[Mapping[str, Any]],
    seeds: Sequence[str | Mapping[str, Any]] = (),
    params: FilterParams | None = None,
    *,
    source: str = "<records>",
    progress: bool = False,
) -> FilterResult:
    """Heuristic filters, then greedy ROUGE-L dedup against the seeds and the records kept before.

    records: instruction records (id, instruction, input, output, ...), in generation order.
    seeds: seed tasks (dicts with `instruction`, and `id` or `name`) or plain instructions, preloaded in the pool.
    source: names the records in errors (a bad record is a DataError with its 1-based position and field).
    """
    params = params or FilterParams()
    records = list(records)
    for i, rec in enumerate(records):
        _validate(rec, source, i + 1)
    seed_pairs = [_seed_text_and_id(s, i) for i, s in enumerate(seeds)]
    filters = Filters(params)
    deduper = Deduper(threshold=params.rouge_threshold, tokens=params.rouge_tokens, k=1,  # type: ignore[arg-type]
                      floor=params.rouge_threshold)
    deduper.seed(text for text, _ in seed_pairs)
    pool_ids = [sid for _, sid in seed_pairs]
    kept: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    bar = None
    if progress:
        bar = progress_bar(total=len(records), desc="filtering", unit="rec")
    for rec in records:
        rejection = filters.check(rec)
        if rejection is not None:
            rejected.append({**rec, "reject_reason": rejection.reason, "reject_detail": rejection.detail})
        elif params.rouge_dedup and not rec.get("template"):
            decision = deduper.add(rec["instruction"])
            if decision.kept:
                pool_ids.append(str(rec["id"]))
                kept.append(dict(rec))
            else:
                index, score = decision.neighbours[0]
                similar = f"{pool_ids[index]}: {deduper.texts[index]}"
                detail = f"ROUGE-L {score:.3f} > {params.rouge_threshold} with {similar}"
                rejected.append({**rec, "reject_reason": ROUGE_REASON, "reject_detail": detail})
        else:
            kept.append(dict(rec))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    counts = Counter(r["reject_reason"] for r in rejected)
    reasons = {r: counts[r] for r in (*REASONS, ROUGE_REASON) if counts[r]}
    return FilterResult(kept, rejected, params, len(records), len(seed_pairs), reasons)


def user_message(instruction: str, input: str = "") -> str:
    """The user turn: the instruction, then a blank line and the input when there is one."""
    instruction, input = instruction.strip(), (input or "").strip()
    return f"{instruction}\n\n{input}" if input else instruction


def training_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """TRL's conversational format, plus id/instruction/input for the alpaca_ja template."""
    return {
        "messages": [
            {"role": "user", "content": user_message(record["instruction"], record.get("input", ""))},
            {"role": "assistant", "content": str(record["output"]).strip()},
        ],
        "id": str(record["id"]),
        "instruction": record["instruction"].strip(),
        "input": (record.get("input") or "").strip(),
    }


def write_outputs(
    result: FilterResult, out_dir: str | os.PathLike[str], title: str = "Japanese instructions",
    generation_card: str | os.PathLike[str] | None = None,
) -> dict[str, Path]:
    """Write filtered.jsonl, rejected.jsonl, train.jsonl and dataset_card.md into `out_dir` (each atomically).
    `generation_card`: what stage 02's recipe wrote for the card (`RunLayout.generation_card`), included when it
    exists."""
    out = Path(out_dir)
    paths = {
        "filtered": write_jsonl(out / "filtered.jsonl", result.kept),
        "rejected": write_jsonl(out / "rejected.jsonl", result.rejected),
        "train": write_jsonl(out / "train.jsonl", [training_record(r) for r in result.kept]),
    }
    generation = Path(generation_card).read_text(encoding="utf-8") if generation_card and Path(generation_card).exists() else ""
    paths["card"] = atomic_write_text(out / "dataset_card.md", dataset_card(result, title, generation))
    return paths


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


def dataset_card(result: FilterResult, title: str = "Japanese instructions", generation: str = "") -> str:
    """A Hugging Face dataset card (markdown with YAML front matter): counts, reasons, lengths, format, settings,
    and what the generation recipe reported (`generation`, markdown), when it reported anything."""
    recipes = Counter(str(r.get("recipe")) for r in result.kept)
    models = Counter(str(r.get("model")) for r in result.kept)
    lines = [
        "---",
        "language:",
        "- ja",
        "task_categories:",
        "- text-generation",
        "size_categories:",
        f"- {_size_category(result.n_kept)}",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        "    path: train.jsonl",
        "---",
        "",
        f"# {title}",
        "",
        (f"{result.n_kept:,} instruction records kept of {result.n_input:,} "
         f"({result.n_kept / result.n_input:.1%} kept).") if result.n_input else "No input records.",
        "",
        ("Files: `filtered.jsonl` (kept instruction records), `rejected.jsonl` (each with `reject_reason` and "
         "`reject_detail`), `train.jsonl` (TRL conversational format)."),
        "",
        "## Counts",
        "",
        pd.DataFrame({"records": {"input": result.n_input, "kept": result.n_kept, "rejected": len(result.rejected),
                                  "seed instructions preloaded in the ROUGE-L pool": result.n_seeds}}
                     ).to_markdown(intfmt=","),
        "",
        "Recipes: " + ", ".join(f"{k} ({v:,})" for k, v in recipes.most_common()) + ".  ",
        "Models: " + ", ".join(f"{k} ({v:,})" for k, v in models.most_common()) + ".",
        "",
        *_sources_section(result.kept),
        *([generation.rstrip(), ""] if generation.strip() else []),
        "## Rejections by reason",
        "",
        "Checked in this order; a record counts under the first reason that rejects it.",
        "",
        rejection_table(result).to_markdown(index=False, floatfmt=".1%", intfmt=",") if result.rejected else "None.",
        "",
        "## Lengths of the kept records (characters)",
        "",
        # object columns: tabulate would turn the whole table into floats (30.0 records)
        length_summary(result.kept).astype(object).to_markdown(floatfmt=".1f", intfmt=",") if result.kept
        else "No records.",
        "",
        "## Training format",
        "",
        ('Each line of `train.jsonl` is `{"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}`. '
         "The user turn is the instruction, followed by a blank line and the input when the record has one; the "
         "assistant turn is the output. `id`, `instruction` and `input` are kept alongside."),
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("json", data_files="train.jsonl", split="train")',
        "```",
        "",
        "## Filter settings",
        "",
        (f"ROUGE-L dedup: {'on' if result.params.rouge_dedup else 'off'}; a record is kept iff its highest ROUGE-L "
         f"(F-measure, {result.params.rouge_tokens} tokens after NFKC) against the seeds and the records kept "
         f"before it is at most {result.params.rouge_threshold}."),
        "",
        "```json",
        json.dumps(result.params.model_dump(exclude={"template_phrases"}), ensure_ascii=False, indent=2),
        "```",
        "",
        f"Prompt phrases checked for copies: {len(result.params.template_phrases)}.",
        "",
    ]
    return "\n".join(lines)


def source_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Kept records per source dataset (records whose `source` is a mapping with `dataset`, e.g. from_datasets'),
    with the revision and licence the records carry: one row per (dataset, config, split, revision, licence)."""
    counts: Counter[tuple[str, str, str, str, str]] = Counter()
    for rec in records:
        src = rec.get("source")
        if isinstance(src, Mapping) and src.get("dataset"):
            key = tuple(str(src.get(k) or "") for k in ("dataset", "config", "split", "revision"))
            counts[(*key, str(rec.get("license") or "unknown"))] += 1  # type: ignore[arg-type]
    columns = ["dataset", "config", "split", "revision", "license", "records"]
    return pd.DataFrame([(*k, n) for k, n in counts.items()], columns=columns)


def _sources_section(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The card's list of source datasets with their licences and counts (none when the records name none)."""
    table = source_table(records)
    if table.empty:
        return []
    licenses = table.groupby("license")["records"].sum().sort_values(ascending=False)
    return [
        "## Sources",
        "",
        "Every dataset the kept records were made from, at the revision read (a local file's is its sha256), with "
        "the licence its records carry. Derived data follows each source's licence.",
        "",
        table.to_markdown(index=False, intfmt=","),
        "",
        "By licence: " + ", ".join(f"{k} ({v:,})" for k, v in licenses.items()) + ".",
        "",
    ]


def load_seed_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The Japanese seed tasks as plain records (what the ROUGE-L dedup compares against)."""
    return [obj for _, obj in iter_jsonl(path)]


def training_dataset(path: str | os.PathLike[str]) -> Any:
    """`data/train.jsonl` as a Hugging Face dataset (what stage 04 trains on)."""
    from datasets import load_dataset

    return load_dataset("json", data_files=str(path), split="train")
