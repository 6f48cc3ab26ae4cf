"""test_artifacts installs each built ratefuse wheel and tests the install.

For every wheel in the given folder: a fresh venv of the CPython the wheel
is for (a compiled wheel by its cpXY tag, the pure wheel with the first
interpreter given), the test dependencies from PyPI as binary wheels, then
the wheel itself with no index and no C compiler on PATH, timed with the
first import (target: under 5 s). Then a smoke test, and a subset of the
test suite run from a temporary folder that holds only a copy of tests/
and pyproject.toml (its pytest settings), so the installed wheel is what is
tested, never the source tree: compiled wheels with
RATEFUSE_REQUIRE_EXTENSIONS=1, the pure wheel without it and with no
warning allowed.

    python wheels/test_artifacts.py --python python3.12 [--python ...] wheels/dist
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the recipe runs under 3.11+, tomli otherwise
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 5.0


def artifact_tests() -> list[str]:
    """artifact_tests are the test files cibuildwheel's test-command runs
    (pyproject.toml): the core tests that need only TEST_DEPENDENCIES, both
    implementations of the limiters, keyed tables, algorithms, breakers,
    leases, shared memory, the selector and the public protocols."""
    with open(ROOT / "pyproject.toml", "rb") as file:
        command = tomllib.load(file)["tool"]["cibuildwheel"]["test-command"]
    return [word for word in command.split() if word.startswith("tests/")]


# The pure wheel selects the reference cores on purpose, so the selector's
# fallback-with-a-warning case (a compiled install missing a core) does not
# apply to it; tests/test_pure_wheel.py covers its own selection.
PURE_DESELECT = [
    "tests/test_impl.py::test_broken_extension_falls_back_with_a_warning",
]
# As cibuildwheel's test-requires: numpy because test_keyed, test_counters
# and part of test_limiter skip without it, redis and msgpack because
# test_protocols loads the redis backend's entry point.
TEST_DEPENDENCIES = [
    "pytest>=8.0",
    "hypothesis>=6.100",
    "numpy>=1.24",
    "redis>=5.0",
    "msgpack>=1.0",
]
# What the tests may run; no cc, gcc, clang, ld or zig.
TOOLS = ["sh", "bash", "env", "true", "false", "uname", "ls", "cat"]
COMPILERS = ["cc", "gcc", "clang", "c++", "g++", "ld", "zig", "x86_64-linux-gnu-gcc"]

SMOKE = """
import shutil, sys, sysconfig
from pathlib import Path
missing = [c for c in {compilers!r} if shutil.which(c)]
assert not missing, f"a compiler is on PATH: {{missing}}"
import ratefuse
from ratefuse.core import implementation
site = Path(sysconfig.get_paths()["purelib"]).resolve()
assert Path(ratefuse.__file__).resolve().is_relative_to(site), ratefuse.__file__
assert ratefuse.IMPLEMENTATION == {expected!r}, ratefuse.IMPLEMENTATION
if ratefuse.IMPLEMENTATION == "cython":
    for stem in implementation.CORE_STEMS:
        module = implementation.load(stem)
        assert module.__file__.endswith(".so"), module.__file__
limiter = ratefuse.Limiter("2/s")
assert [limiter.try_acquire() for _ in range(3)] == [True, True, False]
keyed = ratefuse.KeyedLimiter("1/s")
assert [keyed.try_acquire("a"), keyed.try_acquire("a"), keyed.try_acquire("b")] == [
    True, False, True]
breaker = ratefuse.CircuitBreaker()
assert breaker.call(lambda: 42) == 42
breaker.force_open()
assert breaker.state.name == "FORCED_OPEN", breaker.state
print(f"smoke OK: ratefuse {{ratefuse.__version__}}, "
      f"{{ratefuse.IMPLEMENTATION}} cores, Python {{sys.version.split()[0]}}")
"""


def run(
    command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> None:
    """run runs a command, echoing it (a long script as <script>), and raises
    when it fails."""
    shown = " ".join(c if len(c) < 200 else "<script>" for c in command)
    print("+", shown, flush=True)
    subprocess.run(command, check=True, text=True, env=env, cwd=cwd)


def version_of(python: str) -> str:
    """version_of is the interpreter's cpXY tag."""
    out = subprocess.run(
        [python, "-c", "import sys; print('cp%d%d' % sys.version_info[:2])"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def sandbox_path(folder: Path) -> str:
    """sandbox_path makes a bin folder with a few tools and no compiler."""
    folder.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        if found:
            (folder / tool).symlink_to(found)
    return str(folder)


def test_wheel(wheel: Path, python: str) -> float:
    """test_wheel installs and tests one wheel; returns install+import seconds."""
    pure = wheel.name.endswith("-py3-none-any.whl")
    print(f"\n--- {wheel.name} on {python}", flush=True)
    with tempfile.TemporaryDirectory(prefix="ratefuse-artifact-") as tmp:
        here = Path(tmp)
        venv = here / "venv"
        run([python, "-m", "venv", str(venv)])
        bin_dir = venv / "bin"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RATEFUSE_", "PYTHON", "VIRTUAL_ENV", "CC", "CXX"))
            and k not in ("LDSHARED", "CFLAGS", "LDFLAGS")
        }
        env["PATH"] = f"{bin_dir}:{sandbox_path(here / 'bin')}"
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        pip = [str(bin_dir / "python"), "-m", "pip", "install", "--quiet"]
        # Binary wheels only: with no compiler, nothing may build from source.
        dependencies = [*TEST_DEPENDENCIES, "tomli>=2.0; python_version < '3.11'"]
        run([*pip, "--only-binary=:all:", *dependencies], env=env)
        start = time.perf_counter()
        run([*pip, "--no-index", "--no-deps", str(wheel)], env=env)
        run([str(bin_dir / "python"), "-c", "import ratefuse"], env=env, cwd=here)
        seconds = time.perf_counter() - start
        verdict = "met" if seconds < TARGET_SECONDS else "MISSED"
        print(
            f"install + import: {seconds:.2f} s "
            f"(target < {TARGET_SECONDS} s: {verdict})"
        )

        work = here / "work"
        work.mkdir()
        shutil.copytree(
            ROOT / "tests", work / "tests", ignore=shutil.ignore_patterns("__pycache__")
        )
        shutil.copy2(ROOT / "pyproject.toml", work / "pyproject.toml")
        expected = "python" if pure else "cython"
        if not pure:
            env["RATEFUSE_REQUIRE_EXTENSIONS"] = "1"
        smoke = SMOKE.format(compilers=COMPILERS, expected=expected)
        run([str(bin_dir / "python"), "-W", "error", "-c", smoke], env=env, cwd=work)
        deselect = [f"--deselect={t}" for t in PURE_DESELECT] if pure else []
        run(
            [
                str(bin_dir / "python"),
                "-m",
                "pytest",
                "-q",
                # Why anything skipped; the pure wheel skips every compiled case.
                *([] if pure else ["-rs"]),
                *deselect,
                *artifact_tests(),
            ],
            env=env,
            cwd=work,
        )
        return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--python",
        action="append",
        required=True,
        help="an interpreter to test with; the first one also tests the pure wheel",
    )
    parser.add_argument(
        "--pure-only",
        action="store_true",
        help="test the pure wheel alone (hosted CI tests the compiled ones)",
    )
    parser.add_argument("dist", type=Path, help="the folder of built wheels")
    args = parser.parse_args()
    by_tag = {version_of(p): p for p in args.python}
    wheels = sorted(args.dist.glob("ratefuse-*.whl"))
    pure = [w for w in wheels if w.name.endswith("-py3-none-any.whl")]
    if not pure:
        print("FAIL no pure-Python wheel", file=sys.stderr)
        return 1
    plan = [(w, args.python[0]) for w in pure]
    for tag, python in [] if args.pure_only else by_tag.items():
        matching = [w for w in wheels if re.search(rf"-{tag}-{tag}-", w.name)]
        if len(matching) != 1:
            print(f"FAIL {len(matching)} compiled wheels for {tag}", file=sys.stderr)
            return 1
        plan.append((matching[0], python))
    timings = {wheel.name: test_wheel(wheel, python) for wheel, python in plan}
    print("\ninstall + import seconds:")
    for name, seconds in timings.items():
        print(f"  {seconds:5.2f}  {name}")
    print(f"{len(timings)} artifacts passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
