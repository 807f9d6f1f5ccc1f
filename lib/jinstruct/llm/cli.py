"""`python -m jinstruct cache stats|export`: look into the LLM response cache."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tabulate import tabulate

from jinstruct.io import atomic_write_text, dumps

if TYPE_CHECKING:
    from jinstruct.llm.cache import ResponseCache

# what `jinstruct.llm.cache.default_cache_path` returns, the file every config's `llm.cache` names by default
DEFAULT_HELP = "runs/llm_cache.sqlite in the project folder (or --root / $JINSTRUCT_ROOT)"


def _open(args: argparse.Namespace) -> ResponseCache:
    from jinstruct.llm.cache import ResponseCache, default_cache_path  # imported here: the CLI starts fast

    path = Path(args.cache) if args.cache else default_cache_path()
    if not path.exists():
        raise SystemExit(f"no LLM cache at {path}")
    return ResponseCache(path)


def _stats(args: argparse.Namespace) -> int:
    cache = _open(args)
    try:
        s = cache.stats()
    finally:
        cache.close()
    if args.json:
        print(json.dumps(s, ensure_ascii=False, indent=2))
        return 0
    print(f"{s['path']}: {s['answers']:,} answers, {s['bytes'] / 1e6:.1f} MB")
    rows = [(m["model"], m["answers"], m["prompt_tokens"], m["completion_tokens"], m["first"] or "", m["last"] or "")
            for m in s["models"]]
    print(tabulate(rows, headers=("model", "answers", "prompt tok", "completion tok", "first", "last"),
                   intfmt=",", tablefmt="plain"))
    return 0


def _export(args: argparse.Namespace) -> int:
    cache = _open(args)
    try:
        lines = (dumps(row) + "\n" for row in cache.export(model=args.model))
        if args.out == "-":
            try:
                for line in lines:
                    sys.stdout.write(line)
                sys.stdout.flush()
            except BrokenPipeError:  # the reader stopped early (`| head`): that is fine, and no traceback
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's documented recipe
        else:
            text = "".join(lines)
            n = text.count("\n")
            atomic_write_text(args.out, text)
            print(f"exported {n:,} answers to {args.out}", file=sys.stderr)
    finally:
        cache.close()
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("cache", help="the LLM response cache: stats, export")
    commands = parser.add_subparsers(dest="cache_command", required=True)
    stats = commands.add_parser("stats", help="answers, tokens and dates per model")
    stats.add_argument("--cache", help=f"the cache file (default: {DEFAULT_HELP})")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(func=_stats)
    export = commands.add_parser("export", help="every answer as JSON Lines {key, model, request, response, created_at}")
    export.add_argument("--cache", help=f"the cache file (default: {DEFAULT_HELP})")
    export.add_argument("--model", help="only this model's answers")
    export.add_argument("--out", default="-", help="output file (default: stdout)")
    export.set_defaults(func=_export)
