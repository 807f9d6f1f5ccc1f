"""Notebook 03's worked example: the filter run on the first candidates, one rejected candidate per reason, each
beside its nearest kept neighbour.

The neighbour is the kept instruction (or seed) with the highest ROUGE-L against the rejected one, computed exactly
as the dedup computes it (`jinstruct.filter.stats.nearest_seed_scores` over the seeds and the kept records): for a
ROUGE-L rejection it is the near-duplicate that caused it; for a heuristic rejection it shows what a kept
instruction close to it looks like.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from jinstruct.filter.heuristics import FilterParams
from jinstruct.filter.stage import FilterResult, filter_records
from jinstruct.filter.stats import REASON_NAMES, nearest_seed_scores
from jinstruct.show import Part, Shown

COLUMNS = ["reason", "rejected instruction", "input", "output", "detail", "nearest kept", "rouge_l"]


@dataclass(repr=False)
class RejectionExamples(Shown):
    """One rejected candidate per reason (in the order the filters check), with its nearest kept neighbour."""

    examples: pd.DataFrame  # COLUMNS
    n_candidates: int
    n_kept: int

    @property
    def title(self) -> str:
        return (f"The filters on the first {self.n_candidates} candidates: {self.n_kept} kept, "
                f"{self.n_candidates - self.n_kept} rejected for {len(self.examples)} reason(s)")

    def parts(self) -> list[Part]:
        return [("One rejected candidate per reason, and the kept instruction closest to it", self.examples)]


def rejection_examples(records: Sequence[Mapping[str, Any]], seeds: Sequence[str | Mapping[str, Any]],
                       params: FilterParams, first: int = 2000, tokens: str = "char") -> RejectionExamples:
    """Filter the first `first` records (heuristics, then dedup against `seeds`) and show one rejection per reason."""
    result: FilterResult = filter_records(list(records)[:first], seeds, params)
    pool = [*({"id": str(s.get("id") or s.get("name") or f"seed-{i}"), "instruction": s["instruction"]}
              if isinstance(s, Mapping) else {"id": f"seed-{i}", "instruction": s} for i, s in enumerate(seeds)),
            *({"id": str(r.get("id")), "instruction": r["instruction"]} for r in result.kept)]
    firsts: dict[str, dict[str, Any]] = {}
    for rec in result.rejected:
        firsts.setdefault(rec["reject_reason"], rec)
    ordered = [firsts[r] for r in result.reasons if r in firsts]
    rows = []
    if ordered:
        near = nearest_seed_scores([{"id": r.get("id"), "instruction": r.get("instruction") or ""} for r in ordered],
                                   pool, tokens=tokens)  # type: ignore[arg-type]
        for rec, (_, n) in zip(ordered, near.iterrows()):
            reason = rec["reject_reason"]
            rows.append({
                "reason": REASON_NAMES[reason][1] if reason in REASON_NAMES else reason,
                "rejected instruction": rec.get("instruction") or "", "input": rec.get("input") or "",
                "output": rec.get("output") or "", "detail": rec.get("reject_detail") or "",
                "nearest kept": f"{n['nearest_seed_id']}: {n['nearest_seed']}" if n["nearest_seed"] else "",
                "rouge_l": round(float(n["rouge_l"]), 3)})
    return RejectionExamples(pd.DataFrame(rows, columns=COLUMNS), result.n_input, result.n_kept)
