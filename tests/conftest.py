"""Test-wide settings: every cache the suite touches lives in a temporary folder, never in the user's home.

The tiny models are built once per session into that folder (about a minute). A developer who runs the suite often
can keep them between sessions with `JINSTRUCT_TEST_CACHE=/some/folder`; CI starts from nothing.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_cache = os.environ.get("JINSTRUCT_TEST_CACHE") or tempfile.mkdtemp(prefix="jinstruct-test-cache-")
os.environ["JINSTRUCT_CACHE"] = _cache
os.environ["JINSTRUCT_ROOT"] = str(ROOT)  # the project under test, wherever pytest is started
for var, sub in (("HF_HOME", "hf"), ("HF_DATASETS_CACHE", "hf-datasets"), ("MPLCONFIGDIR", "matplotlib"),
                 ("TRITON_CACHE_DIR", "triton"), ("TORCHINDUCTOR_CACHE_DIR", "inductor"), ("XDG_CACHE_HOME", "xdg")):
    os.environ[var] = str(Path(_cache) / sub)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
