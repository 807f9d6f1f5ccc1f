"""Statistics and figures of the filtering stage: one function per table (a DataFrame), one per figure (a Figure).

- `rejection_table` / `plot_rejections`: rejections by reason.
- `lengths`, `length_summary` / `plot_lengths`: character lengths of instruction, input and output.
- `nearest_seed_scores` / `plot_rouge_histogram`: each instruction's ROUGE-L with its most similar seed instruction
  (self-instruct's Figure 3).
- `predicate_objects`, `top_predicate_objects` / `plot_predicate_objects`: the main predicate of each instruction and
  its を-object from a morphological parse (fugashi + unidic-lite), the Japanese counterpart of self-instruct's
  verb-noun chart (its Figure 2: the 20 most common root verbs, each with its 4 most common direct objects).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from rapidfuzz import process
from rapidfuzz.distance import LCSseq

from jinstruct.plotting import PALETTE, count_axis, empty_panel, label, label_bars, names, new_figure
from jinstruct.filter.rouge import TokenKind, fmeasure_array, normalize, tagger, tokenize

FIELDS = ("instruction", "input", "output")
FIELD_NAMES = {"instruction": ("指示", "instruction"), "input": ("入力", "input"), "output": ("出力", "output")}
# rejection reasons (jinstruct.filter.heuristics.REASONS, the ROUGE-L dedup) and "kept", as figures name them
REASON_NAMES = {
    "empty_instruction": ("指示が空", "empty instruction"),
    "empty_output": ("出力が空", "empty output"),
    "instruction_too_short": ("指示が短すぎる", "instruction too short"),
    "instruction_too_long": ("指示が長すぎる", "instruction too long"),
    "output_too_short": ("出力が短すぎる", "output too short"),
    "output_too_long": ("出力が長すぎる", "output too long"),
    "copied_from_prompt": ("プロンプトの書式が混入", "copied from the prompt"),
    "starts_with_punctuation": ("句読点で始まる", "starts with punctuation"),
    "starts_with_list_marker": ("箇条書きの記号で始まる", "starts with a list marker"),
    "too_little_japanese": ("日本語が少なすぎる", "too little Japanese"),
    "unsupported_task": ("テキストでできない課題", "not a text task"),
    "input_equals_output": ("入力と出力が同じ", "input equals output"),
    "cut_off_output": ("出力が途中で切れている", "output cut off"),
    "exact_duplicate": ("完全な重複", "exact duplicate"),
    "rouge_duplicate": ("ROUGE-Lで近すぎる", "too close by ROUGE-L"),
    "kept": ("採用", "kept"),
}


# --- rejections -------------------------------------------------------------------------------------------------


def rejection_table(result: Any) -> pd.DataFrame:
    """Rejections by reason (in the order checked): reason, count, share of the input records."""
    n = max(result.n_input, 1)
    rows = [(reason, count, count / n) for reason, count in result.reasons.items()]
    rows.append(("kept", result.n_kept, result.n_kept / n))
    return pd.DataFrame(rows, columns=["reason", "count", "share"])


def plot_rejections(table: pd.DataFrame) -> Figure:
    """Horizontal bars: records per rejection reason, and kept."""
    fig, (ax,) = new_figure(6.5, 0.45 * len(table) + 1.2)
    colors = [PALETTE[2] if r == "kept" else PALETTE[3] for r in table["reason"]]
    ax.barh(names(table["reason"][::-1], REASON_NAMES), table["count"][::-1], color=colors[::-1])
    label_bars(ax)
    count_axis(ax, "x")
    ax.set_xlabel(label("件数", "records"))
    ax.set_title(label("フィルタの結果 (理由別)", "Filtering by reason"))
    ax.margins(x=0.15)
    return fig


# --- lengths ----------------------------------------------------------------------------------------------------


def lengths(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Characters of each record's instruction, input and output (NFKC, stripped), one row per record."""
    rows = [{"id": r.get("id"), **{f: len(normalize(r.get(f) or "").strip()) for f in FIELDS}} for r in records]
    return pd.DataFrame(rows, columns=["id", *FIELDS])


def length_summary(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Per field: records, empty ones, mean, median, 90th percentile and maximum length in characters."""
    df = lengths(records)
    out = pd.DataFrame({
        "records": [len(df)] * len(FIELDS),
        "empty": [int((df[f] == 0).sum()) for f in FIELDS],
        "mean": [float(df[f].mean()) if len(df) else 0.0 for f in FIELDS],
        "median": [float(df[f].median()) if len(df) else 0.0 for f in FIELDS],
        "p90": [float(df[f].quantile(0.9)) if len(df) else 0.0 for f in FIELDS],
        "max": [int(df[f].max()) if len(df) else 0 for f in FIELDS],
    }, index=pd.Index(FIELDS, name="field"))
    return out


def plot_lengths(df: pd.DataFrame, bins: int = 40) -> Figure:
    """Histograms of instruction, input and output length (the output of `lengths`); empty inputs left out, and a
    field with no text at all gets a note instead of an empty histogram."""
    fig, axes = new_figure(10, 3.2, ncols=3)
    for ax, f, color in zip(axes, FIELDS, PALETTE):
        values = df[f][df[f] > 0] if f == "input" else df[f]
        name = label(*FIELD_NAMES[f])
        ax.set_title(label(f"{name}の長さ (n={len(values):,})", f"{name} length (n={len(values):,})"))
        if len(values) == 0:
            empty_panel(ax, label(f"{name}のある記録はありません", f"no record has an {name}"))
            continue
        ax.hist(values, bins=bins, color=color, edgecolor="white")
        ax.set_xlabel(label("文字数", "characters"))
        count_axis(ax, "y")
    axes[0].set_ylabel(label("件数", "records"))
    return fig


# --- similarity to the seeds ------------------------------------------------------------------------------------


def nearest_seed_scores(
    records: Sequence[Mapping[str, Any]],
    seeds: Sequence[str | Mapping[str, Any]],
    tokens: TokenKind = "char",
    chunk: int = 4096,
) -> pd.DataFrame:
    """Each record's highest ROUGE-L (exact, rouge_score's F-measure) against the seed instructions, and which seed.

    Columns: id, instruction, rouge_l, nearest_seed_id, nearest_seed. Ties go to the earlier seed.
    """
    seed_texts = [s if isinstance(s, str) else s["instruction"] for s in seeds]
    seed_ids = [f"seed-{i}" if isinstance(s, str) else str(s.get("id") or s.get("name") or f"seed-{i}")
                for i, s in enumerate(seeds)]
    vocab: dict[str, str] = {}

    def encode(text: str) -> str:  # tokens as code points, so that rapidfuzz compares them as units
        out = []
        for t in tokenize(text, tokens):
            if t not in vocab:
                vocab[t] = chr(len(vocab) + (0x800 if len(vocab) >= 0xD800 else 0))  # no surrogates
            out.append(vocab[t])
        return "".join(out)

    seed_codes = [encode(t) for t in seed_texts]
    seed_lens = np.array([len(s) for s in seed_codes])
    texts = [r["instruction"] for r in records]
    best = np.zeros(len(texts))
    which = np.full(len(texts), -1)
    if seed_codes:
        for start in range(0, len(texts), chunk):
            codes = [encode(t) for t in texts[start:start + chunk]]
            lcs = process.cdist(codes, seed_codes, scorer=LCSseq.similarity, dtype=np.int32, workers=-1)
            f = fmeasure_array(lcs, np.array([len(c) for c in codes])[:, None], seed_lens[None, :])
            which[start:start + len(codes)] = f.argmax(axis=1)
            best[start:start + len(codes)] = f.max(axis=1)
    return pd.DataFrame({
        "id": [r.get("id") for r in records],
        "instruction": texts,
        "rouge_l": best,
        "nearest_seed_id": [seed_ids[i] if i >= 0 else None for i in which],
        "nearest_seed": [seed_texts[i] if i >= 0 else None for i in which],
    })


def plot_rouge_histogram(scores: pd.DataFrame, threshold: float | None = 0.7, bins: int = 20,
                         title: str | None = None) -> Figure:
    """Histogram of `rouge_l` (e.g. from `nearest_seed_scores`), with the dedup threshold marked."""
    fig, (ax,) = new_figure(6, 3.5)
    ax.hist(scores["rouge_l"], bins=bins, range=(0, 1), color=PALETTE[0], edgecolor="white")
    if threshold is not None:
        ax.axvline(threshold, color=PALETTE[3], linestyle="--", label=label(f"しきい値 {threshold}", f"threshold {threshold}"))
        ax.legend()
    ax.set_xlim(0, 1)
    count_axis(ax, "y")
    ax.set_xlabel("ROUGE-L")
    ax.set_ylabel(label("指示の数", "instructions"))
    ax.set_title(title or label("最も類似したシード指示とのROUGE-L", "ROUGE-L with the most similar seed instruction"))
    return fig


# --- predicate-object pairs -------------------------------------------------------------------------------------

_SENTENCE = re.compile(r"(?<=[。！？!?\n])")
_AUX_AFTER_TE = {"て", "で"}


def predicate_object(instruction: str) -> tuple[str | None, str | None]:
    """The main predicate of an instruction and its を-object, from a fugashi parse (None where there is none).

    Japanese is head-final, so the main predicate of a sentence is its last content verb: a verb that is not an
    auxiliary after て/で (ください, いる, みる...), or a サ変 noun with する (説明する). Its object is the noun
    compound before the last を between the previous predicate and it. The first sentence with a predicate and an
    object wins (else the first with a predicate): 「次の文章を読んで、その内容を要約してください。」 gives
    (要約する, 内容).
    """
    fallback: tuple[str | None, str | None] = (None, None)
    for sentence in _SENTENCE.split(normalize(instruction)):
        words = list(tagger()(sentence))
        pred, obj = _sentence_predicate_object(words)
        if pred and obj:
            return pred, obj
        if pred and fallback[0] is None:
            fallback = (pred, None)
    return fallback


def _sentence_predicate_object(words: list[Any]) -> tuple[str | None, str | None]:
    predicates: list[tuple[int, str]] = []  # (position, predicate)
    for i, w in enumerate(words):
        f = w.feature
        if f.pos1 != "動詞":
            continue
        prev = words[i - 1] if i > 0 else None
        base = f.orthBase or w.surface
        if f.lemma == "為る" and prev is not None and prev.feature.pos1 == "名詞" and prev.feature.pos3 == "サ変可能":
            predicates.append((i - 1, prev.surface + "する"))
        elif f.pos2 == "非自立可能" and prev is not None and (prev.surface in _AUX_AFTER_TE or prev.feature.pos1 == "動詞"):
            continue  # an auxiliary: 〜てください, 〜ている, 〜てみる
        else:
            predicates.append((i, base))
    if not predicates:
        return None, None
    pos, pred = predicates[-1]
    start = predicates[-2][0] + 1 if len(predicates) > 1 else 0
    wo = [j for j in range(start, pos) if words[j].surface == "を" and words[j].feature.pos1 == "助詞"]
    return pred, _noun_before(words, wo[-1]) if wo else None


def _noun_before(words: list[Any], j: int) -> str | None:
    parts: list[str] = []
    k = j - 1
    while k >= 0 and words[k].feature.pos1 in ("名詞", "接尾辞", "接頭辞"):
        parts.append(words[k].surface)
        k -= 1
    if parts and k >= 0 and words[k].feature.pos1 == "動詞" and words[k + 1].feature.pos1 == "接尾辞":
        parts.append(words[k].surface)  # 書き方, 読み方
    return "".join(reversed(parts)) or None


def predicate_objects(records: Iterable[Mapping[str, Any] | str]) -> pd.DataFrame:
    """One row per instruction: id, instruction, predicate, object (None where the parse finds none)."""
    rows = []
    for r in records:
        text = r if isinstance(r, str) else r["instruction"]
        pred, obj = predicate_object(text)
        rows.append({"id": None if isinstance(r, str) else r.get("id"), "instruction": text,
                     "predicate": pred, "object": obj})
    return pd.DataFrame(rows, columns=["id", "instruction", "predicate", "object"])


def top_predicate_objects(pairs: pd.DataFrame, n_predicates: int = 20, n_objects: int = 4) -> pd.DataFrame:
    """The most common predicates and, for each, its most common objects: predicate, object, count,
    predicate_count (all instructions with that predicate). Instructions without an object are counted in
    predicate_count only."""
    with_pred = pairs.dropna(subset=["predicate"])
    pred_counts = with_pred["predicate"].value_counts().head(n_predicates)
    rows = []
    for pred, total in pred_counts.items():
        objs = with_pred.loc[with_pred["predicate"] == pred, "object"].dropna().value_counts().head(n_objects)
        for obj, count in objs.items():
            rows.append((pred, obj, int(count), int(total)))
    return pd.DataFrame(rows, columns=["predicate", "object", "count", "predicate_count"])


def plot_predicate_objects(top: pd.DataFrame, title: str | None = None, min_label_share: float = 0.012) -> Figure:
    """Self-instruct's chart in two rings: predicates inside (sized by their instructions), their top objects
    outside (sized by their pairs; the rest of each predicate's share left blank). Wedges narrower than
    `min_label_share` of the circle go unlabelled."""
    title = title or label("指示の主な述語と目的語", "Main predicates of the instructions and their objects")
    fig, (ax,) = new_figure(7.5, 7.5)
    if top.empty:
        empty_panel(ax, label("述語と目的語の組がありません", "no predicate-object pairs"))
        ax.set_title(title)
        return fig
    preds = top.drop_duplicates("predicate")[["predicate", "predicate_count"]]
    colors = {p: PALETTE[i % len(PALETTE)] for i, p in enumerate(preds["predicate"])}
    total = max(int(preds["predicate_count"].sum()), 1)
    _, inner_texts = ax.pie(
        preds["predicate_count"], radius=0.62, labels=preds["predicate"], labeldistance=0.62,
        colors=[colors[p] for p in preds["predicate"]], startangle=90, counterclock=False, rotatelabels=True,
        wedgeprops={"width": 0.42, "edgecolor": "white"}, textprops={"fontsize": 8, "ha": "center", "va": "center"})
    sizes, labels, ring_colors = [], [], []
    for pred, count_all in zip(preds["predicate"], preds["predicate_count"]):
        objs = top[top["predicate"] == pred]
        for obj, count in zip(objs["object"], objs["count"]):
            sizes.append(count)
            labels.append(obj)
            ring_colors.append(colors[pred])
        rest = count_all - int(objs["count"].sum())
        if rest > 0:
            sizes.append(rest)
            labels.append("")
            ring_colors.append("#f2f2f2")
    _, outer_texts = ax.pie(
        sizes, radius=1.0, labels=labels, labeldistance=0.81, colors=ring_colors, startangle=90, counterclock=False,
        rotatelabels=True, wedgeprops={"width": 0.38, "edgecolor": "white", "alpha": 0.8},
        textprops={"fontsize": 7, "ha": "center", "va": "center"})
    for texts, values in ((inner_texts, list(preds["predicate_count"])), (outer_texts, sizes)):
        for text, value in zip(texts, values):
            text.set_visible(value / total >= min_label_share)
    ax.set(aspect="equal", title=title)
    return fig
