"""`python -m jinstruct <command>`: the runner, sweeps, and the tools each stage brings.

Only the chosen command's module is imported (the others bring torch, pandas or the LLM client), so every command,
and `--help`, starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from jinstruct import __version__, paths

# command -> (module, function that adds its parser, one line of help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("jinstruct.run.cli", "register_run", "run the numbered notebooks in order with papermill"),
    "sweep": ("jinstruct.run.cli", "register_sweep", "expand a grid of overrides into runs and execute them"),
    "estimate": ("jinstruct.run.estimate", "register_cli", "requests, tokens and cost of a run's LLM stages"),
    "dedup": ("jinstruct.filter.dedup", "register_cli", "greedy ROUGE-L dedup of a JSON Lines file"),
    "train": ("jinstruct.train.cli", "register_cli", "QLoRA-tune a base model on conversational JSONL"),
    "results": ("jinstruct.judge.cli", "register_cli", "win rates, scores and ratings from judgment files"),
    "agreement": ("jinstruct.agreement.cli", "register_cli", "judge-human agreement: FastChat's, kappa, alpha, intervals"),
    "figures": ("jinstruct.report.build", "register_cli", "the paper's tables and figures from runs or sweeps"),
    "serve": ("jinstruct.llm.serve_cli", "register_cli", "serve a local chat model over an OpenAI-compatible API"),
    "cache": ("jinstruct.llm.cli", "register_cli", "the LLM response cache: stats, export"),
    "vllm": ("jinstruct.llm.vllm_server", "register_cli", "install vLLM in its own virtualenv; serve a model with it"),
}


def chosen_command(argv: list[str]) -> str | None:
    """The first argument that names a command (options such as --root come before it)."""
    return next((a for a in argv if a in COMMANDS), None)


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser; only `command`'s module is imported, the others are listed by name and help."""
    p = argparse.ArgumentParser(prog="jinstruct", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"jinstruct {__version__}")
    p.add_argument("--root", help="the project folder (default: $JINSTRUCT_ROOT, else the nearest folder at or "
                                  "above the working directory with configs/ and notebooks/)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, function, help_) in COMMANDS.items():
        if name == command:
            getattr(importlib.import_module(module), function)(sub)
        else:
            sub.add_parser(name, help=help_, add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser(chosen_command(argv)).parse_args(argv)
    if args.root:
        paths.set_project_root(args.root)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
