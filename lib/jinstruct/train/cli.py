"""`jinstruct train --config FILE`: QLoRA training from a YAML file, on one process or under `accelerate launch`.

The YAML holds the `TrainParams` fields plus `train_file` and `out_dir` (relative paths are taken from the YAML's
own folder). Several GPUs:

    accelerate launch --config_file configs/accelerate/ddp.yaml -m jinstruct train --config FILE
    accelerate launch --config_file configs/accelerate/fsdp_qlora.yaml -m jinstruct train --config FILE
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml
from pydantic import ValidationError

from jinstruct.io import DataError, validation_error
from jinstruct.train.qlora import TrainParams


class TrainJob(TrainParams):
    """A training run as one YAML file: the parameters, the data and where results go."""

    train_file: Path
    out_dir: Path


def load_job(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainJob:
    """Read a job YAML; `overrides` are KEY=VALUE strings (VALUE read as YAML). Bad fields name the file and field."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, None, None, "file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DataError(path, mark.line + 1 if mark else None, None, f"invalid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise DataError(path, None, None, "expected a mapping of training fields")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise DataError(path, None, key, f"override {item!r} is not KEY=VALUE")
        raw[key.strip()] = yaml.safe_load(value)
    try:
        job = TrainJob.model_validate(raw)
    except ValidationError as e:
        raise validation_error(path, None, e) from None
    base = path.resolve().parent
    job.train_file = (base / job.train_file).resolve()  # an absolute path stays as it is
    job.out_dir = (base / job.out_dir).resolve()
    return job


def _handler(args: argparse.Namespace) -> int:
    from jinstruct.train.qlora import train

    try:
        job = load_job(args.config, args.set)
        params = TrainParams.model_validate(job.model_dump(exclude={"train_file", "out_dir"}))
        result = train(params, job.train_file, job.out_dir, resume=not args.no_resume)
    except (DataError, ValueError, FileExistsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(result.model_dump_json(indent=2))
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="QLoRA-tune a base model on conversational JSONL (see jinstruct.train.qlora)")
    p.add_argument("--config", required=True, help="YAML with the TrainParams fields, train_file and out_dir")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field, e.g. max_steps=10 (repeatable)")
    p.add_argument("--no-resume", action="store_true", help="refuse to continue from checkpoints in out_dir")
    p.set_defaults(func=_handler)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (`python -m jinstruct.train.cli train --config FILE`), same as `python -m jinstruct train`."""
    parser = argparse.ArgumentParser(prog="jinstruct.train.cli")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
