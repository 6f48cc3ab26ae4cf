"""Declares the Cython extensions in ext/ratefuse/ and nothing else.

Every ext/ratefuse/<path>/<name>.pyx becomes the module
ratefuse.<path>.<name> (ext/ mirrors src/); metadata and packaging live in
pyproject.toml.

RATEFUSE_PURE_WHEEL=1 declares no extension at all: the wheel is then
py3-none-any, and carries the marker file ratefuse/core/PURE_PYTHON, from
which ratefuse.core.implementation selects the reference cores without the
warning it gives when a compiled core is missing from a compiled install.
"""

import os
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

EXT_DIR = Path("ext")
SOURCES = sorted((EXT_DIR / "ratefuse").rglob("*.pyx"))
# The name implementation.py looks for beside itself.
PURE_MARKER = Path("ratefuse", "core", "PURE_PYTHON")
PURE_WHEEL = os.environ.get("RATEFUSE_PURE_WHEEL", "").strip().lower() not in (
    "",
    "0",
    "false",
    "no",
)


class BuildPy(build_py):
    """BuildPy writes the pure-wheel marker into the built package."""

    def run(self) -> None:
        super().run()
        marker = Path(self.build_lib, PURE_MARKER)
        if PURE_WHEEL:
            marker.write_text(
                "Built with RATEFUSE_PURE_WHEEL=1: no compiled cores; "
                "ratefuse uses its pure-Python reference cores.\n"
            )
        else:
            # A build folder reused after a pure build must not keep it.
            marker.unlink(missing_ok=True)


def compiled_extensions() -> list[Extension]:
    """compiled_extensions cythonizes every .pyx (Cython is a build
    dependency only, imported here so that a pure build needs none of it)."""
    from Cython.Build import cythonize

    extensions = [
        Extension(
            ".".join(source.relative_to(EXT_DIR).with_suffix("").parts),
            [str(source)],
            include_dirs=[str(EXT_DIR / "ratefuse" / "include")],
            # Every module declares that it needs the GIL (Py_MOD_GIL_USED),
            # so a free-threaded CPython turns the GIL on when it loads one:
            # the cores rely on it (wheels/README.md, "Free-threaded CPython").
            define_macros=[("CYTHON_FREETHREADING_COMPATIBLE", "0")],
            extra_compile_args=["-O3"],
        )
        for source in SOURCES
    ]
    return cythonize(
        extensions,
        include_path=[str(EXT_DIR)],
        # Generated C stays out of the source tree.
        build_dir="build/cython",
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "initializedcheck": False,
            "cdivision": True,
            "embedsignature": True,
        },
    )


setup(
    cmdclass={"build_py": BuildPy},
    ext_modules=[] if PURE_WHEEL else compiled_extensions(),
)
