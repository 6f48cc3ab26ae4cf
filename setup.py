"""Declares the Cython extensions in ext/ratefuse/ and nothing else.

Every ext/ratefuse/<path>/<name>.pyx becomes the module
ratefuse.<path>.<name> (ext/ mirrors src/); metadata and packaging live in
pyproject.toml.
"""

from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

EXT_DIR = Path("ext")
SOURCES = sorted((EXT_DIR / "ratefuse").rglob("*.pyx"))

extensions = [
    Extension(
        ".".join(source.relative_to(EXT_DIR).with_suffix("").parts),
        [str(source)],
        include_dirs=[str(EXT_DIR / "ratefuse" / "include")],
        extra_compile_args=["-O3"],
    )
    for source in SOURCES
]

setup(
    ext_modules=cythonize(
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
    ),
)
