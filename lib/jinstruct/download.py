"""Public data fetched once at run time, checked, and cached: the official seeds, Stanford Alpaca, benchmarks.

`fetch_checked` is the one download helper: a file is fetched unless it is already at its target (downloaded
before, or placed there by hand on a machine without internet), and every copy, downloaded or found, is checked
before use. `sha256_check` is the usual check: a pinned sha256, or, where nothing is pinned, a refusal that
names the file's sha256 so that a person can check the file and pin it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import httpx

from jinstruct.io import atomic_write_bytes


class DownloadError(RuntimeError):
    """The file could not be fetched (offline, moved upstream); the message says how to do without."""


class ChecksumError(ValueError):
    """The file is not the one pinned: its sha256, size or shape differ (or nothing is pinned)."""


Check = Callable[[bytes, str], None]


def github_raw_url(repo: str, commit: str, path: str) -> str:
    """The URL of `path` in GitHub repository `repo` ("owner/name") at `commit`."""
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


def sha256_check(expected: str | None, how_to_pin: str = "") -> Check:
    """A check that the data has sha256 `expected`. With `expected=None` (nothing pinned) every file is refused,
    and the message gives its sha256: check the file, then pin that value (`how_to_pin` says where)."""

    def check(data: bytes, source: str) -> None:
        got = hashlib.sha256(data).hexdigest()
        if expected is None:
            raise ChecksumError(f"{source}: no sha256 is pinned for this file, so it is not used. Its sha256 is {got} "
                                f"({len(data):,} bytes); check the file, then pin that value. {how_to_pin}".rstrip())
        if got != expected:
            raise ChecksumError(f"{source}: checksum mismatch: expected sha256 {expected}, got {got} ({len(data):,} "
                                "bytes). The file is not the one pinned (changed upstream, or altered on the way).")

    return check


def fetch_checked(url: str, target: Path, check: Check, *, what: str, expected_sha256: str | None = None,
                  hint: str = "", timeout_s: float = 60.0, http: httpx.Client | None = None) -> Path:
    """Download `url` to `target` unless it is there; `check(data, source)` raises ChecksumError on a bad file, and a
    file that fails it is never kept. A file already at `target` (downloaded before, or put there by hand on a machine
    without internet) is checked the same way. When the download fails, the DownloadError names the URL, the sha256
    expected (`expected_sha256`, for the message) and the path to put the file at by hand, then `hint`."""
    if target.exists():
        check(target.read_bytes(), f"{target} (cached; delete it to download again)")
        return target
    client = http or httpx.Client(timeout=timeout_s, follow_redirects=True)
    try:
        response = client.get(url)
        response.raise_for_status()
    except httpx.HTTPError as e:
        pin = f"sha256 {expected_sha256}" if expected_sha256 else "no sha256 pinned: pin the one you check"
        raise DownloadError(
            f"could not download {what} from {url} ({type(e).__name__}: {e}). Offline? Put the file ({pin}) at "
            f"{target} yourself. {hint}".rstrip()
        ) from None
    finally:
        if http is None:
            client.close()
    check(response.content, url)
    return atomic_write_bytes(target, response.content)
