"""Shared fixtures: every core test runs against both implementations."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

from ratefuse.core import implementation as _impl


class Impl:
    """`Impl` gives a test one implementation's core modules by stem."""

    def __init__(self, name: _impl.Implementation) -> None:
        self.name = name

    def module(self, stem: str) -> ModuleType:
        """`module` imports ``ratefuse.<stem>_c`` or ``ratefuse.<stem>_py``."""
        return _impl.load(stem, self.name)

    def __repr__(self) -> str:
        return self.name


def _compiled_available() -> bool:
    try:
        importlib.import_module("ratefuse.engine._subject_c")
    except ImportError:
        return False
    return True


@pytest.fixture(
    scope="session",
    params=[
        pytest.param("cython", id="cython"),
        pytest.param("python", id="python"),
    ],
)
def impl(request: pytest.FixtureRequest) -> Impl:
    """`impl` is the compiled implementation, then the reference one.

    The compiled one is skipped only when it is not built and
    RATEFUSE_REQUIRE_EXTENSIONS is unset; CI sets it, so CI skips nothing.
    """
    name = request.param
    if name == "cython" and not _compiled_available():
        if _impl.REQUIRE_EXTENSIONS:
            pytest.fail("compiled extensions are required but not importable")
        pytest.skip("compiled extensions are not built")
    return Impl(name)


@pytest.fixture(scope="session")
def compiled() -> Impl:
    """`compiled` is the compiled implementation (for differential tests)."""
    if not _compiled_available():
        if _impl.REQUIRE_EXTENSIONS:
            pytest.fail("compiled extensions are required but not importable")
        pytest.skip("compiled extensions are not built")
    return Impl("cython")


@pytest.fixture(scope="session")
def reference() -> Impl:
    """`reference` is the pure-Python implementation."""
    return Impl("python")
