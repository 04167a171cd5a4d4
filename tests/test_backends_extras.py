"""A learner without the extras gets one clear line saying what to install, not a traceback."""

from __future__ import annotations

import importlib.util

import pytest

from asynclab.backends import extras
from asynclab.backends.extras import MissingExtra, missing, need, require


def test_missing_names_an_unknown_extra_and_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"extra must be one of 'backends', 'ray'; got 'postgres'"):
        missing("postgres")


def test_require_says_what_is_missing_and_the_command_that_installs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(extras.importlib.util, "find_spec", lambda name: None if name == "asyncpg" else real(name))
    assert missing("backends") == ["asyncpg"]
    with pytest.raises(MissingExtra) as caught:
        require("backends")
    message = str(caught.value)
    assert "asyncpg (the async Postgres driver)" in message
    assert "pip install 'asynclab[backends]'" in message
    assert "pgserver" not in message  # only what is missing
    assert caught.value._render_traceback_() == [f"\x1b[1;31m⚠ {message}\x1b[0m"]  # one line in Jupyter


def test_need_raises_missing_extra_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_ray(name: str) -> object:
        raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.setattr(extras.importlib, "import_module", no_ray)
    with pytest.raises(MissingExtra, match=r"ray \(Ray, a cluster .*\) is not installed.*asynclab\[ray\]"):
        need("ray")


def test_need_refuses_a_module_of_no_extra() -> None:
    with pytest.raises(ValueError, match=r"module must belong to an extra.*got 'numpy'"):
        need("numpy")


def test_missing_extra_is_an_import_error_so_existing_handlers_catch_it() -> None:
    assert issubclass(MissingExtra, ImportError)
