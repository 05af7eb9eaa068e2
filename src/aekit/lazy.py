"""Packages whose names load on first use: `import aekit` and `aekit --help` stay quick.

A package declares where each public name lives; `attach` gives it the module-level
`__getattr__` (PEP 562) and `__dir__` that import that module when the name is first read.
Type checkers see the same names through the package's `if TYPE_CHECKING:` imports.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def attach(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`, whose `names` map a public name to the
    module that defines it (the name itself, a submodule, when the module is `package.name`)."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(names[name])
        value = module if names[name] == f"{package}.{name}" else getattr(module, name)
        setattr(importlib.import_module(package), name, value)  # the next read is direct
        return value

    def __dir__() -> list[str]:  # the names loaded already and those still to load
        return sorted({*vars(importlib.import_module(package)), *names})

    return __getattr__, __dir__
