#!/usr/bin/env bash
# Builds a ratefuse wheel for this machine's CPython, installs it into a
# fresh virtual environment and checks that the compiled cores load there.
# Output goes to wheels/dist/ (git-ignored); the venv to wheels/venv/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
dist="$root/wheels/dist"
venv="$root/wheels/venv"
rm -rf "$dist" "$venv"

"$python" -m pip wheel --quiet --no-deps --wheel-dir "$dist" "$root"
wheel=$(ls "$dist"/ratefuse-*.whl)
echo "built $wheel"

"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet "$wheel"
# Run from an empty folder so the source tree cannot shadow the install.
cd "$(mktemp -d)"
RATEFUSE_REQUIRE_EXTENSIONS=1 "$venv/bin/python" - <<'PY'
import ratefuse

assert ratefuse.IMPLEMENTATION == "cython", ratefuse.IMPLEMENTATION
limiter = ratefuse.Limiter("2/s")
assert [limiter.try_acquire() for _ in range(3)] == [True, True, False]
print(f"ratefuse {ratefuse.__version__} wheel OK: {ratefuse.IMPLEMENTATION} cores")
PY
