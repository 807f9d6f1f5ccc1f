"""Loss curves of QLoRA runs, read from each run's `train_log.jsonl`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from pydantic import BaseModel

from jinstruct.io import read_jsonl
from jinstruct.plotting import count_axis, empty_panel, label, new_figure


def loss_frame(logs: Mapping[str, Path]) -> pd.DataFrame:
    """One row per logged step and model: model, step, loss, eval_loss (NaN where not logged)."""
    frames = []
    for name, path in logs.items():
        df = pd.DataFrame(read_jsonl(path, tolerate_torn_tail=True))
        if df.empty:
            continue
        for col in ("loss", "eval_loss"):
            if col not in df:
                df[col] = float("nan")
        frames.append(df.assign(model=name)[["model", "step", "loss", "eval_loss"]])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["model", "step", "loss", "eval_loss"])


def loss_figure(losses: pd.DataFrame, title: str | None = None) -> Figure:
    """Training loss (lines) and held-out loss (markers) against the step, one colour per model."""
    fig, (ax,) = new_figure(6.4, 3.8)
    ax.set_title(title or label("QLoRA 学習曲線", "QLoRA training loss"))
    if losses.empty:
        empty_panel(ax, label("学習ログがありません", "no training log"))
        return fig
    for i, (name, df) in enumerate(losses.groupby("model", sort=False)):
        color = f"C{i}"
        train = df.dropna(subset=["loss"])
        ax.plot(train["step"], train["loss"], color=color, label=label(f"{name} 学習", f"{name} train"))
        held = df.dropna(subset=["eval_loss"])
        if not held.empty:
            ax.plot(held["step"], held["eval_loss"], "o--", color=color, label=label(f"{name} 検証", f"{name} held out"))
    ax.set_xlabel(label("ステップ", "step"))
    ax.set_ylabel(label("損失", "loss"))
    count_axis(ax, "x")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def params_table(models: Sequence[BaseModel]) -> pd.DataFrame:
    """The hyperparameters of each model to tune, one column per model."""
    return pd.DataFrame([m.model_dump() for m in models]).set_index("name").T


def results_table(results: Mapping[str, BaseModel]) -> pd.DataFrame:
    """What each training run did (steps, losses, time, whether an adapter was reused), one row per model."""
    return pd.DataFrame([r.model_dump(exclude={"out_dir", "merged_dir", "log_path"}) for r in results.values()],
                        index=list(results))
