"""The public API is what ``__all__`` says, sorted, and every name in it exists."""

from __future__ import annotations

import asynclab


def test_all_lists_every_public_name_once_and_sorted() -> None:
    assert len(asynclab.__all__) == len(set(asynclab.__all__))
    # isort style, as ruff (RUF022) keeps it: CONSTANTS, then Classes, then functions.
    def kind(name: str) -> int:
        return 0 if name.isupper() else 1 if name[0].isupper() else 2

    assert asynclab.__all__ == sorted(asynclab.__all__, key=lambda name: (kind(name), name))


def test_every_exported_name_exists_and_is_documented() -> None:
    for name in asynclab.__all__:
        member = getattr(asynclab, name)
        assert getattr(member, "__doc__", None), f"{name} has no docstring"
