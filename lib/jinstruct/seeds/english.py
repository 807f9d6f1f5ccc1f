"""The English seed tasks the Japanese ones start from, from one of two places chosen by the caller.

- `"official"`: the 175 seed tasks of self-instruct (Wang et al., 2023), downloaded once into the cache and checked
  against a pinned sha256 and line count (the upstream file is 110,934 bytes with LF line endings);
- `"sample"`: a 12-task English sample written for this project (`data/seeds/en_seed_sample.jsonl`), which works
  offline and is what the tests and the tiny config use.

The two are never swapped behind the caller's back: "official" fails loudly when it cannot be had.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal

import httpx

from jinstruct import paths
from jinstruct.download import ChecksumError, DownloadError, fetch_checked  # noqa: F401 (errors re-exported)
from jinstruct.formats.seed_task import SeedTask, load_seed_tasks
from jinstruct.io import DataError

OFFICIAL_URL = "https://raw.githubusercontent.com/yizhongw/self-instruct/main/data/seed_tasks.jsonl"
OFFICIAL_LINES = 175
OFFICIAL_SHA256 = "7779004fa198fdf27cf70a159363879d8a26c53329e11b436af17b3941875f48"
OFFICIAL_CACHE_NAME = "self_instruct_seed_tasks.jsonl"


def english_sample_path() -> Path:
    """The project's own English sample of seed tasks."""
    return paths.data_dir() / "seeds" / "en_seed_sample.jsonl"


def _verify(data: bytes, source: str, sha256: str | None, lines: int | None) -> None:
    if sha256 is not None and (got := hashlib.sha256(data).hexdigest()) != sha256:
        raise ChecksumError(
            f"{source}: checksum mismatch: expected sha256 {sha256}, got {got} ({len(data)} bytes). "
            "The file is not the pinned self-instruct seed set (changed upstream, or a proxy altered it). "
            "Check it, then pass sha256=<the new value> to accept it, or use the English sample (source='sample')."
        )
    if lines is not None and (n := len([ln for ln in data.splitlines() if ln.strip()])) != lines:
        raise ChecksumError(f"{source}: expected {lines} seed tasks (one per line), found {n}")


def fetch_official_seeds(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    url: str = OFFICIAL_URL,
    sha256: str | None = OFFICIAL_SHA256,
    expected_lines: int | None = OFFICIAL_LINES,
    timeout_s: float = 60.0,
    http: httpx.Client | None = None,
) -> Path:
    """The official 175 English seed tasks as a verified local file, downloaded once into `cache_dir`.

    A file already in the cache (downloaded before, or put there by hand where there is no internet) is
    checked the same way as a download. A download that fails the checks is not kept. `http` is an httpx
    client to use instead of a default one (a proxy, custom certificates).
    """
    folder = Path(cache_dir) if cache_dir is not None else paths.cache_dir() / "seeds"
    fresh = not (folder / OFFICIAL_CACHE_NAME).exists()
    target = fetch_checked(url, folder / OFFICIAL_CACHE_NAME,
                           lambda data, source: _verify(data, source, sha256, expected_lines),
                           what="the official seed tasks", expected_sha256=sha256,
                           hint="Or use the English sample (source='sample').", timeout_s=timeout_s, http=http)
    try:
        load_seed_tasks(target)
    except DataError:
        if fresh:  # a bad download is not kept; a file someone put there is theirs
            target.unlink()
        raise
    return target


def english_seeds(
    source: Literal["sample", "official"] = "sample",
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    http: httpx.Client | None = None,
) -> list[SeedTask]:
    """The English seed tasks from `source` (the first `limit` of them).

    "official" downloads (or reads from the cache) the 175 self-instruct seeds and fails loudly when it
    cannot: it never falls back to the sample. "sample" is the small English set shipped with the project.
    """
    if source == "sample":
        tasks = load_seed_tasks(english_sample_path())
    elif source == "official":
        tasks = load_seed_tasks(fetch_official_seeds(cache_dir, http=http))
    else:
        raise ValueError(f"unknown English seed source {source!r}: use 'sample' or 'official'")
    return tasks[:limit] if limit is not None else tasks


