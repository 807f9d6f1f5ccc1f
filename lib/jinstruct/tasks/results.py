"""What notebook 08 reports: the machine-readable summary, the base-against-tuned table, the figure.

`tasks/summary.csv` has one row per (task, model, metric, few-shot count), with the columns of `SUMMARY_COLUMNS`:
`value`, `stderr` (lm-eval's standard error of the mean; empty where lm-eval gives none, as for perplexities),
`n` (documents scored) and `num_fewshot` (as lm-eval ran it: 0 for perplexity tasks). Other notebooks read this
file as it is.

The 95% interval of an accuracy is value +- 1.96 x stderr (the normal approximation; lm-eval's stderr of a mean is
the sample standard deviation over sqrt(n)), clipped to [0, 1].
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from jinstruct.io import atomic_write_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SUMMARY_COLUMNS = ["task", "model", "metric", "value", "stderr", "n", "num_fewshot"]
Z95 = 1.959963984540054
BOUNDED = ("acc", "acc_norm", "exact_match", "f1", "mcc")  # metrics that live in [0, 1]
SKIP = {"alias", "name", "sample_len", "samples"}


def _number(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):  # lm-eval writes "N/A" where it has no standard error
        return math.nan
    return out


def summary_rows(results: Mapping[str, Any], model_id: str,
                 token_perplexity: Mapping[str, Mapping[str, float]] | None = None) -> list[dict[str, Any]]:
    """The summary rows of one lm-eval results dict (groups left out: their subtasks are there), plus a
    `token_perplexity` row for each task given in `token_perplexity` (see `harness.token_perplexity`)."""
    rows = []
    for task, metrics in results["results"].items():
        if task in results.get("groups", {}):
            continue
        n = results.get("n-samples", {}).get(task, {}).get("effective", metrics.get("sample_len"))
        shots = results.get("n-shot", {}).get(task)
        for key, value in metrics.items():
            if key in SKIP or "," not in key or "_stderr," in key:
                continue
            metric, _, filt = key.partition(",")
            name = metric if filt == "none" else f"{metric} ({filt})"
            rows.append({"task": task, "model": model_id, "metric": name, "value": _number(value),
                         "stderr": _number(metrics.get(f"{metric}_stderr,{filt}")), "n": n, "num_fewshot": shots})
        if token_perplexity and task in token_perplexity:
            tp = token_perplexity[task]
            rows.append({"task": task, "model": model_id, "metric": "token_perplexity", "value": float(tp["value"]),
                         "stderr": math.nan, "n": int(tp["docs"]), "num_fewshot": shots})
    return rows


def summary_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows as the summary table, in the order of `SUMMARY_COLUMNS`, sorted, one row per key."""
    frame = pd.DataFrame(list(rows), columns=SUMMARY_COLUMNS)
    frame = frame.drop_duplicates(subset=["task", "model", "metric", "num_fewshot"], keep="last")
    frame["n"] = frame["n"].astype("Int64")
    frame["num_fewshot"] = frame["num_fewshot"].astype("Int64")
    return frame.sort_values(["task", "metric", "num_fewshot", "model"], kind="stable").reset_index(drop=True)


def write_summary(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """`summary.csv`, atomically."""
    return atomic_write_text(path, frame[SUMMARY_COLUMNS].to_csv(index=False))


def read_summary(path: str | os.PathLike[str]) -> pd.DataFrame:
    return summary_frame(pd.read_csv(path).to_dict("records"))


def interval(value: float, stderr: float, metric: str) -> tuple[float, float]:
    """The 95% interval (normal approximation), clipped to [0, 1] for bounded metrics; (nan, nan) without stderr."""
    if math.isnan(stderr):
        return math.nan, math.nan
    lo, hi = value - Z95 * stderr, value + Z95 * stderr
    if metric.split(" ")[0] in BOUNDED:
        lo, hi = max(0.0, lo), min(1.0, hi)
    return lo, hi


def with_intervals(frame: pd.DataFrame) -> pd.DataFrame:
    """The summary with `ci_low` and `ci_high` columns."""
    out = frame.copy()
    bounds = [interval(v, s, m) for v, s, m in zip(out["value"], out["stderr"], out["metric"])]
    out["ci_low"] = [b[0] for b in bounds]
    out["ci_high"] = [b[1] for b in bounds]
    return out


def _cell(value: float, lo: float, hi: float) -> str:
    if math.isnan(lo):
        return f"{value:.4g}"
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def comparison_table(frame: pd.DataFrame, models: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (task, metric, few-shot count), one column per model (in `models` order): "value [95% CI]"; and
    for two models, the second minus the first."""
    ci = with_intervals(frame)
    models = list(models) if models is not None else list(dict.fromkeys(ci["model"]))
    ci["cell"] = [_cell(v, lo, hi) for v, lo, hi in zip(ci["value"], ci["ci_low"], ci["ci_high"])]
    index = ["task", "metric", "num_fewshot"]
    table = ci.pivot_table(index=index, columns="model", values="cell", aggfunc="first")
    table = table.reindex(columns=[m for m in models if m in table.columns])
    if len(models) == 2 and all(m in table.columns for m in models):
        values = ci.pivot_table(index=index, columns="model", values="value", aggfunc="first")
        table[f"{models[1]} - {models[0]}"] = (values[models[1]] - values[models[0]]).map(lambda d: f"{d:+.4g}")
    table.columns.name = None
    return table


def plot_tasks(frame: pd.DataFrame, models: Sequence[str] | None = None) -> Figure:
    """Accuracy per task and few-shot count with 95% intervals (left), perplexities (right), one bar per model."""
    import numpy as np
    from matplotlib.figure import Figure

    ci = with_intervals(frame)
    models = list(models) if models is not None else list(dict.fromkeys(ci["model"]))
    acc = ci[ci["metric"] == "acc"]
    ppl = ci[ci["metric"].isin(["byte_perplexity", "token_perplexity"])]
    panels = [p for p in (acc, ppl) if not p.empty]
    fig = Figure(figsize=(6.5 * max(1, len(panels)), 4.2), layout="constrained")
    axes = fig.subplots(1, max(1, len(panels)), squeeze=False)
    width = 0.8 / max(1, len(models))
    for ax, part in zip(axes[0], panels):
        groups = list(dict.fromkeys(zip(part["task"], part["metric"], part["num_fewshot"])))
        x = np.arange(len(groups))
        for i, model in enumerate(models):
            rows = part[part["model"] == model].set_index(["task", "metric", "num_fewshot"])
            vals = [rows["value"].get(g, np.nan) for g in groups]
            lo = [rows["ci_low"].get(g, np.nan) for g in groups]
            hi = [rows["ci_high"].get(g, np.nan) for g in groups]
            err = np.array([[v - a if not math.isnan(a) else 0 for v, a in zip(vals, lo)],
                            [b - v if not math.isnan(b) else 0 for v, b in zip(vals, hi)]])
            ax.bar(x + (i - (len(models) - 1) / 2) * width, vals, width, yerr=err if err.any() else None, capsize=3,
                   label=model)
        is_acc = part is acc
        labels = [f"{t}\n{k}-shot" if is_acc else f"{t}\n{m}" for t, m, k in groups]
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_ylabel("accuracy (95% interval)" if is_acc else "perplexity (lower is better)")
        if is_acc:
            ax.set_ylim(0, 1)
        else:
            ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.set_title("few-shot accuracy" if is_acc else "perplexity on held-out answers")
    return fig
