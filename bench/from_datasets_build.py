"""Benchmark: a from_datasets build of 20,000 and 200,000 records from a local JSON Lines file, time and peak memory.

    python bench/from_datasets_build.py                      # 20,000 and 200,000 records
    python bench/from_datasets_build.py --sizes 20000 2000000

The source is a synthetic review file (MARC-ja-shaped: `text` and `label`) written into a temporary folder: every
row distinct (a serial number in the text), 1-3 sentences, ~60-120 characters. Each size is a `sentiment` source capped
at that many records (`limit`) over a file of exactly that many rows, built by `jinstruct.generate.from_datasets.build`
with the exact-duplicate check on, as the recipe runs it. Each build runs in a fresh process, so its peak memory (max
RSS, which includes Python, pandas, jinja2 and the rest of the imports) is its own; the table also gives the growth
over the process's RSS just before the build. The output file is read back to check its record count.

The claim it checks: memory does not grow with the row count (the 200,000-record peak within 10% of the 20,000 one),
as a 2.5M-row build of llm-japanese-dataset needs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import resource
import tempfile
import time
from pathlib import Path

OPENINGS = ["届いた商品は", "先週買ったこの品は", "家族に頼まれて購入したものは", "二台目として選んだこれは", "セールで見つけた品は"]
MIDDLES = ["思っていたより軽く、", "説明書が分かりやすく、", "色が写真と少し違いましたが、", "音が静かで、", "作りがしっかりしていて、",
           "梱包が簡素でしたが、", "値段のわりに丈夫で、", "使い始めて一週間ですが、"]
ENDINGS_POS = ["毎日気持ちよく使えています。", "買ってよかったと思います。", "友人にも勧めました。", "期待以上の出来でした。"]
ENDINGS_NEG = ["すぐに壊れてしまいました。", "二度と買わないと思います。", "返品を考えています。", "期待外れでした。"]


def write_source(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            positive = rng.random() < 0.5
            text = (f"{rng.choice(OPENINGS)}{rng.choice(MIDDLES)}{rng.choice(MIDDLES)}"
                    f"{rng.choice(ENDINGS_POS if positive else ENDINGS_NEG)}（注文番号{i:07d}）")
            f.write(json.dumps({"id": f"r{i}", "text": text, "label": "positive" if positive else "negative"},
                               ensure_ascii=False) + "\n")


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def _build(source: str, n: int, out: str, queue: multiprocessing.Queue) -> None:
    from jinstruct.generate.from_datasets import Source, build, load_templates

    templates = load_templates()
    src = Source(name="reviews", template="sentiment", path=source, license="Apache-2.0", limit=n)
    before = _rss_kib()
    t0 = time.perf_counter()
    stats = build([src], templates, out, seed=0, progress=False)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    queue.put({"n": n, "records": stats.records, "wall_s": wall, "peak_mib": peak / 1024,
               "before_mib": before / 1024, "cpu_s": time.process_time()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    args = ap.parse_args()
    ctx = multiprocessing.get_context("spawn")
    rows = []
    with tempfile.TemporaryDirectory(prefix="fd-bench-") as tmp:
        for n in args.sizes:
            source = Path(tmp) / f"reviews_{n}.jsonl"
            write_source(source, n)
            out = Path(tmp) / f"generated_{n}.jsonl"
            queue = ctx.Queue()
            proc = ctx.Process(target=_build, args=(str(source), n, str(out), queue))
            proc.start()
            result = queue.get()
            proc.join()
            with out.open("rb") as f:
                result["lines"] = sum(1 for _ in f)
            result["source_mib"] = source.stat().st_size / 2**20
            rows.append(result)
            out.unlink()
            source.unlink()
    print(f"load average {os.getloadavg()[0]:.2f} (the machine is shared)")
    print(f"{'records':>9} {'source MiB':>10} {'wall s':>7} {'CPU s':>6} {'rec/s':>8} {'RSS before MiB':>14} "
          f"{'peak RSS MiB':>12} {'growth MiB':>10}")
    for r in rows:
        assert r["records"] == r["lines"] == r["n"], r
        print(f"{r['n']:>9,} {r['source_mib']:>10.1f} {r['wall_s']:>7.2f} {r['cpu_s']:>6.1f} "
              f"{r['n'] / r['wall_s']:>8,.0f} {r['before_mib']:>14.1f} {r['peak_mib']:>12.1f} "
              f"{r['peak_mib'] - r['before_mib']:>10.1f}")
    if len(rows) >= 2:
        ratio = rows[-1]["peak_mib"] / rows[0]["peak_mib"]
        print(f"peak RSS {rows[-1]['n']:,} / {rows[0]['n']:,}: {ratio:.3f} "
              f"({'within' if ratio <= 1.10 else 'NOT within'} 10%)")


if __name__ == "__main__":
    main()
