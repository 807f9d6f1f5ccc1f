"""Public data fetched once at run time, checked, and cached: the official seeds, Stanford Alpaca."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from jinstruct.io import atomic_write_bytes


class DownloadError(RuntimeError):
    """The file could not be fetched (offline, moved upstream); the message says how to do without."""


class ChecksumError(ValueError):
    """The file is not the one pinned: its sha256, size or shape differ."""


def fetch_checked(url: str, target: Path, check: Callable[[bytes, str], None], *, what: str,
                  timeout_s: float = 60.0, http: httpx.Client | None = None) -> Path:
    """Download `url` to `target` unless it is there; `check(data, source)` raises ChecksumError on a bad file, and a
    file that fails it is never kept. A file already at `target` (downloaded before, or put there by hand on a machine
    without internet) is checked the same way."""
    if target.exists():
        check(target.read_bytes(), f"{target} (cached; delete it to download again)")
        return target
    client = http or httpx.Client(timeout=timeout_s, follow_redirects=True)
    try:
        response = client.get(url)
        response.raise_for_status()
    except httpx.HTTPError as e:
        raise DownloadError(
            f"could not download {what} from {url} ({type(e).__name__}: {e}). Offline? Use the English sample "
            f"(source='sample'), or put the file at {target} yourself."
        ) from None
    finally:
        if http is None:
            client.close()
    check(response.content, url)
    return atomic_write_bytes(target, response.content)
