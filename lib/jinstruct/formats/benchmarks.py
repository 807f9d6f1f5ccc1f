"""Benchmarks by name, and the published files that come with them, fetched once and pinned.

`answer.benchmark` in a config (and `load_benchmark`) takes a name or a folder:

| name | what | where it comes from |
|---|---|---|
| `ja_qa80` | the project's own 80 questions, 8 categories (the offline default) | `data/bench/ja_qa80`, shipped |
| `ja-vicuna` | ku-nlp/ja-vicuna-qa-benchmark, the paper's benchmark: 80 questions, 9 categories, its Japanese judge prompts, GPT-4 reference answers, the published text-davinci-003 answers | downloaded, pinned by commit and sha256 |
| `ja-mt-bench` | FastChat's Japanese MT-Bench: 80 two-turn questions, 8 categories, GPT-4 reference answers | downloaded, pinned by commit; the sha256 is yours to pin (below) |
| a folder | any FastChat (`question.jsonl`, `reference_answer/`, `model_answer/`) or ja-vicuna layout | as it is |

A downloaded file keeps the upstream repository's layout under `<cache>/benchmarks/<name>/<commit>/`, so the folder
loaders of `jinstruct.formats.fastchat` read it as they read a checkout, and it is fetched once. Every file is
checked against its sha256 before use, whether downloaded or put there by hand. Offline, the error names each
missing file's URL, its sha256 and the path to put it at.

Where the project could not check a file's sha256 itself (`ja-mt-bench`, answer files from a URL), nothing is
pinned and the file is refused until the user pins one: the refusal states the file's sha256, to be checked
and then written into the config (`answer.benchmark: {name: ja-mt-bench, sha256: {question.jsonl: ...}}`,
`answer.models[].answers_sha256`). A changed file upstream is never used silently.

Published answer files are answers of their model: `published_answers("ja-vicuna:openai--text-davinci-003")`
gives the checked file, which stage 05 copies into the run unchanged.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import BaseModel, ConfigDict, Field

from jinstruct import paths
from jinstruct.download import ChecksumError, DownloadError, fetch_checked, github_raw_url, sha256_check


@dataclass(frozen=True)
class Pinned:
    """A file of a benchmark: its path inside the benchmark's folder and its sha256 (None: not pinned here)."""

    path: str
    sha256: str | None


@dataclass(frozen=True)
class Local:
    """A benchmark shipped with the project."""

    name: str
    folder: str  # relative to the project root
    description: str


@dataclass(frozen=True)
class Remote:
    """A benchmark in a public GitHub repository, pinned by commit."""

    name: str
    repo: str
    commit: str
    license: str
    folder: str  # the benchmark's folder inside the repository (it holds question.jsonl)
    files: tuple[Pinned, ...]  # what the benchmark is: questions, judge prompts, reference answers
    answers: Mapping[str, Pinned] = field(default_factory=dict)  # published answers, by model id
    description: str = ""

    def url(self, f: Pinned) -> str:
        return github_raw_url(self.repo, self.commit, f"{self.folder}/{f.path}")

    def root(self) -> Path:
        """Where the repository's files go: `<cache>/benchmarks/<name>/<commit>/`."""
        return paths.cache_dir() / "benchmarks" / self.name / self.commit

    def local_folder(self) -> Path:
        return self.root() / self.folder

    def local(self, f: Pinned) -> Path:
        return self.local_folder() / f.path


Benchmark = Local | Remote

JA_VICUNA = Remote(
    name="ja-vicuna",
    repo="ku-nlp/ja-vicuna-qa-benchmark",
    commit="128a862da6a4478c3e80ab3c3b716d1417380751",
    license="Apache-2.0",
    folder="data/jp_bench",
    files=(
        Pinned("question.jsonl", "0a66a22e6c07773c35bfd2c12c1226ff2873d3e7b70981b9dec7ca8efb72b5d0"),
        Pinned("judge_prompts.jsonl", "429c07ec35405812b26e10273520d8cd6ffe923808ab6021d431d9ae537be684"),
        Pinned("reference_answer/gpt-4/results.jsonl",
               "078918a9138607b91e4614097c1f6b1208e9563616ef4a1cc0339aa6526e4427"),
    ),
    answers={
        "openai--text-davinci-003": Pinned("model_answer/openai--text-davinci-003/results.jsonl",
                                           "a50d7e090324f91e2c36c6d2cd6663b3d61c0b9ac252bd04962a19348915b334"),
    },
    description="80 questions in 9 categories (coding 7, math 3 judged against GPT-4 reference answers), its "
                "Japanese judge prompts (pair, pair-math, single, single-math), the published text-davinci-003 answers",
)

JA_MT_BENCH = Remote(
    name="ja-mt-bench",
    repo="lm-sys/FastChat",
    commit="aed16da2f75ba1374ad4f64a8323aa9fed22c6b9",
    license="Apache-2.0 (the FastChat repository's)",
    folder="fastchat/llm_judge/data/japanese_mt_bench",
    files=(Pinned("question.jsonl", None), Pinned("reference_answer/gpt-4.jsonl", None)),
    description="80 two-turn questions in 8 categories, GPT-4 reference answers for math, reasoning and coding; "
                "judged with the multi-turn prompts",
)

REGISTRY: dict[str, Benchmark] = {
    "ja_qa80": Local("ja_qa80", "data/bench/ja_qa80", "the project's own 80 questions (written for it), 8 categories"),
    JA_VICUNA.name: JA_VICUNA,
    JA_MT_BENCH.name: JA_MT_BENCH,
}


class BenchmarkRef(BaseModel):
    """A named benchmark with checksums the registry does not pin: `{name: ja-mt-bench, sha256: {question.jsonl: ...}}`
    (keys: paths inside the benchmark's folder)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    sha256: dict[str, str] = Field(default_factory=dict)


BenchmarkSpec = str | os.PathLike[str] | BenchmarkRef


def _parts(spec: BenchmarkSpec) -> tuple[str, dict[str, str]]:
    if isinstance(spec, BenchmarkRef):
        return spec.name, dict(spec.sha256)
    return os.fspath(spec), {}


def registered(spec: BenchmarkSpec, registry: Mapping[str, Benchmark] = REGISTRY) -> Benchmark | None:
    """The registry entry `spec` names, or None when it is a folder. A BenchmarkRef must name an entry."""
    name, _ = _parts(spec)
    if name in registry:
        return registry[name]
    if isinstance(spec, BenchmarkRef):
        raise KeyError(f"unknown benchmark {name!r}; known: {sorted(registry)}")
    return None


def _how_to_pin(bench: Remote, f: Pinned) -> str:
    return (f"Pin it in the config: answer.benchmark: {{name: {bench.name}, sha256: {{{f.path}: <sha256>}}}} "
            f"(and judge.prompts likewise if it names this benchmark).")


def _fetch(bench: Remote, files: list[Pinned], sha256: Mapping[str, str], http: httpx.Client | None) -> None:
    """Fetch and check `files`; every file that cannot be had is named in one error (DownloadError when any is
    missing, else ChecksumError)."""
    missing: list[str] = []
    refused: list[str] = []
    for f in files:
        pin = sha256.get(f.path) or f.sha256
        try:
            fetch_checked(bench.url(f), bench.local(f), sha256_check(pin, _how_to_pin(bench, f)),
                          what=f"{bench.name} {f.path}", expected_sha256=pin, http=http)
        except DownloadError:
            pinned = f"sha256 {pin}" if pin else "no sha256 pinned yet: pin the one you check"
            missing.append(f"  {bench.url(f)}\n    ({pinned})\n    -> {bench.local(f)}")
        except ChecksumError as e:
            refused.append(f"  {e}")
    if missing:
        raise DownloadError(
            f"benchmark {bench.name!r} ({bench.repo} at {bench.commit[:12]}): {len(missing)} file(s) could not be "
            "downloaded. Offline? Download each URL elsewhere and put it at the path after the arrow:\n"
            + "\n".join(missing) + ("\nAlso refused:\n" + "\n".join(refused) if refused else ""))
    if refused:
        raise ChecksumError(f"benchmark {bench.name!r}:\n" + "\n".join(refused))


def benchmark_folder(spec: BenchmarkSpec, *, registry: Mapping[str, Benchmark] = REGISTRY,
                     http: httpx.Client | None = None) -> Path:
    """The folder holding the benchmark's `question.jsonl` (and `reference_answer/`, `judge_prompts.jsonl`),
    its files fetched and checked first for a remote benchmark."""
    bench = registered(spec, registry)
    name, sha256 = _parts(spec)
    if isinstance(bench, Local):
        folder = paths.resolve_path(bench.folder)
    elif isinstance(bench, Remote):
        _fetch(bench, list(bench.files), sha256, http)
        return bench.local_folder()
    else:
        folder = paths.resolve_path(name)
    if not (folder / "question.jsonl").is_file():
        raise FileNotFoundError(f"{folder}: no question.jsonl there. answer.benchmark takes a folder in FastChat's "
                                f"layout or one of the names {sorted(registry)}")
    return folder


def judge_prompts_file(spec: BenchmarkSpec, *, registry: Mapping[str, Benchmark] = REGISTRY,
                       http: httpx.Client | None = None) -> Path:
    """`judge.prompts`: a FastChat judge-prompt file, or the name of a benchmark whose own prompts to use."""
    bench = registered(spec, registry)
    if bench is None:
        path = paths.resolve_path(_parts(spec)[0])
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such judge prompt file (judge.prompts takes a file or a benchmark "
                                    f"name: {sorted(n for n, b in registry.items() if _prompts_of(b))})")
        return path
    prompt = _prompts_of(bench)
    if prompt is None:
        raise KeyError(f"benchmark {bench.name!r} ships no judge prompts; leave judge.prompts unset for the "
                       "project's Japanese prompts, or give a file")
    if isinstance(bench, Remote):
        _fetch(bench, [prompt], _parts(spec)[1], http)
        return bench.local(prompt)
    return paths.resolve_path(bench.folder) / prompt.path


def _prompts_of(bench: Benchmark) -> Pinned | None:
    if isinstance(bench, Local):
        shipped = paths.resolve_path(bench.folder) / "judge_prompts.jsonl"
        return Pinned("judge_prompts.jsonl", None) if shipped.is_file() else None
    return next((f for f in bench.files if f.path == "judge_prompts.jsonl"), None)


def published_answers(source: str, sha256: str | None = None, *, registry: Mapping[str, Benchmark] = REGISTRY,
                      http: httpx.Client | None = None) -> Path:
    """A published answer file, checked: `<benchmark>:<model id>` (answers the registry pins, e.g.
    `ja-vicuna:openai--text-davinci-003`), an https URL (fetched once into `<cache>/answers/`; `sha256` must pin
    it), or a local path (FastChat's `model_answer/<model>.jsonl` or ja-vicuna's `model_answer/<model>/results.jsonl`;
    checked against `sha256` when one is given)."""
    if source.startswith(("https://", "http://")):
        name = source.rstrip("/").rsplit("/", 1)[-1] or "answers.jsonl"
        target = paths.cache_dir() / "answers" / hashlib.sha256(source.encode()).hexdigest()[:16] / name
        return fetch_checked(source, target, sha256_check(sha256, "Set answers_sha256 of this answer model."),
                             what=f"the answer file {name}", expected_sha256=sha256, http=http)
    bench_name, sep, model = source.partition(":")
    if sep and bench_name in registry:
        bench = registry[bench_name]
        if not isinstance(bench, Remote) or model not in bench.answers:
            have = sorted(bench.answers) if isinstance(bench, Remote) else []
            raise KeyError(f"{source!r}: benchmark {bench_name!r} has no published answers of {model!r} in the "
                           f"registry (it has {have}); give the file's path or URL instead")
        pinned = bench.answers[model]
        if sha256 is not None:
            pinned = Pinned(pinned.path, sha256)
        _fetch(bench, [pinned], {}, http)
        return bench.local(pinned)
    path = paths.resolve_path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such answer file (answers takes a path, an https URL, or "
                                "<benchmark>:<model id>)")
    if sha256 is not None:
        sha256_check(sha256)(path.read_bytes(), str(path))
    return path
