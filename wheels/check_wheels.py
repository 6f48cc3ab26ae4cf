"""check_wheels checks built ratefuse wheels without installing them.

For each compiled wheel: ``auditwheel show`` (printed in full) must find it
consistent with the platform tag, its file name must carry that tag, no
extension may need a glibc symbol version newer than the target (read from
the ELF version tables, not from auditwheel's verdict, so a retag cannot
hide one), and every extension must be stripped (no symbol table, no debug
sections). A pure wheel must hold no extension at all. Runs under
wheels/venv's Python, where auditwheel brought pyelftools.

    python wheels/check_wheels.py --glibc 2.17 --plat manylinux_2_17_x86_64 W...
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import zipfile
from io import BytesIO
from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection

EXTENSION = re.compile(r"\.(so|pyd|dylib)$")


def glibc_versions(elf: ELFFile) -> set[tuple[int, ...]]:
    """glibc_versions lists the GLIBC_x.y versions an ELF file requires."""
    found = set()
    for section in elf.iter_sections():
        if isinstance(section, GNUVerNeedSection):
            for _, auxiliaries in section.iter_versions():
                for aux in auxiliaries:
                    match = re.fullmatch(r"GLIBC_([0-9.]+)", aux.name)
                    if match:
                        found.add(tuple(int(p) for p in match[1].split(".")))
    return found


def check(wheel: Path, glibc: tuple[int, ...], plat: str) -> list[str]:
    """check returns what is wrong with one wheel (nothing when it is fine)."""
    problems = []
    with zipfile.ZipFile(wheel) as archive:
        extensions = [n for n in archive.namelist() if EXTENSION.search(n)]
        if wheel.name.endswith("-py3-none-any.whl"):
            print(f"{wheel.name}: pure, {len(extensions)} extensions")
            return [f"{wheel.name}: holds {n}" for n in extensions]
        if plat not in wheel.name:
            problems.append(f"{wheel.name}: the file name lacks {plat}")
        if not extensions:
            problems.append(f"{wheel.name}: no compiled extension")
        newest: tuple[int, ...] = ()
        unpacked = 0
        for name in extensions:
            data = archive.read(name)
            unpacked += len(data)
            elf = ELFFile(BytesIO(data))
            versions = glibc_versions(elf)
            newest = max([newest, *versions])
            too_new = sorted(v for v in versions if v > glibc)
            if too_new:
                problems.append(f"{name}: needs glibc {too_new}")
            sections = [s.name for s in elf.iter_sections()]
            debug = [s for s in sections if s.startswith(".debug") or s == ".symtab"]
            if debug:
                problems.append(f"{name}: not stripped ({', '.join(debug)})")
    shown = subprocess.run(
        [Path(sys.executable).with_name("auditwheel"), "show", wheel],
        capture_output=True,
        text=True,
        check=False,
    )
    print(shown.stdout.strip())
    if shown.returncode != 0 or f'platform tag: "{plat}"' not in " ".join(
        shown.stdout.split()
    ):
        problems.append(f"{wheel.name}: auditwheel show does not report {plat}")
    print(
        f"{wheel.name}: {len(extensions)} extensions, {unpacked} bytes unpacked, "
        f"newest glibc symbol version {'.'.join(map(str, newest))}\n"
    )
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--glibc", required=True, help="newest glibc allowed, x.y")
    parser.add_argument("--plat", required=True, help="the platform tag expected")
    parser.add_argument("wheels", nargs="+", type=Path)
    args = parser.parse_args()
    glibc = tuple(int(p) for p in args.glibc.split("."))
    problems = [p for w in args.wheels for p in check(w, glibc, args.plat)]
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
