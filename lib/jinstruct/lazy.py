"""Package exports loaded on first use (PEP 562), so that `python -m jinstruct dedup` does not import matplotlib,
pandas or torch because the `filter` package also has figures. No maintained package does this for a few names; the
standard library's module `__getattr__` is all it takes."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def exports(package: str, names: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`: `names` maps each public name to the submodule that defines it
    (a name equal to its submodule's is the submodule itself)."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        loaded = importlib.import_module(f"{package}.{module}") if "." not in module else importlib.import_module(module)
        return loaded if module == name else getattr(loaded, name)

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
