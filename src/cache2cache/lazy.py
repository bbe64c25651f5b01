"""Lazy package exports (PEP 562): a package names its public objects and the submodule of each,
and they are imported on first access, so light commands never pay for torch and transformers."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`, whose public name -> submodule map is `exports`.

    Args:
        package: The package's `__name__`.
        exports: Public name -> submodule (relative to the package) that defines it.
        namespace: The package's `globals()`, where each name is cached after its first import.
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{exports[name]}", package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
