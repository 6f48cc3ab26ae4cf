"""The package's folders are its layers, and every import points down.

This reads the import graph of src/ratefuse (Python modules by their AST,
Cython modules by their import and cimport lines) and fails on an import
that points up a layer, on an import circle, and on production code that
imports a compiled or reference twin other than through its selector.
ARCHITECTURE.md describes the layers this table encodes.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
EXT = ROOT / "ext"

# Bottom first. A module belongs to the layer of the longest prefix that
# names it; it may import its own layer and the layers below.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("ratefuse.core",)),
    ("engine", ("ratefuse.engine",)),
    (
        "facades",
        (
            "ratefuse.rates",
            "ratefuse.errors",
            "ratefuse.protocols",
            "ratefuse.limiter",
            "ratefuse.keyed",
            "ratefuse.breaker",
            "ratefuse.bulkhead",
            "ratefuse.logs",
            "ratefuse.throttle",
            "ratefuse.throttled_breaker",
            "ratefuse.shedding",
            "ratefuse.adaptive",
            "ratefuse.adaptive_stats",
        ),
    ),
    ("package", ("ratefuse",)),
    ("backends", ("ratefuse.redis", "ratefuse.shm")),
    (
        "integrations",
        (
            "ratefuse.web",
            "ratefuse.grpc",
            "ratefuse.ordered",
            "ratefuse.config",
            "ratefuse.metrics",
            "ratefuse.health",
            "ratefuse.json_endpoint",
            "ratefuse.telemetry",
            "ratefuse.otel",
            "ratefuse.probes",
            "ratefuse.probe_apps",
            "ratefuse.retry",
        ),
    ),
    (
        "bench",
        (
            "ratefuse.bench",
            "ratefuse.__main__",
            # Deprecated aliases of the bench scenarios' old paths.
            "ratefuse.scenarios",
            "ratefuse.scenarios_keyed",
            "ratefuse.scenarios_shm",
        ),
    ),
)

TWIN = re.compile(r"\._?\w+_(py|c)$")
CYTHON_IMPORT = re.compile(
    r"^\s*(?:from\s+(ratefuse[\w.]*)\s+c?import\s+(\([^)]*\)|[^\n]*)"
    r"|c?import\s+(ratefuse[\w.]*))",
    re.M,
)


def module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {module_name(path, SRC): path for path in SRC.rglob("*.py")}
    for suffix in ("*.pyx", "*.pxd"):
        for path in EXT.rglob(suffix):
            found.setdefault(module_name(path, EXT), path)
    return found


def layer_of(name: str) -> int:
    best, best_length = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(
                prefix
            ) > best_length:
                best, best_length = index, len(prefix)
    assert best >= 0, f"{name} is in no layer: add it to LAYERS and ARCHITECTURE.md"
    return best


def resolve(name: str, known: dict[str, Path]) -> str:
    # "from a.b import c" names the module a.b.c when that is a module.
    return name if name in known else name.rsplit(".", 1)[0]


def python_imports(
    name: str, path: Path, known: dict[str, Path]
) -> Iterator[tuple[str, bool]]:
    """Yields (imported module, under TYPE_CHECKING) for a Python module."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    checking: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                checking.update(id(sub) for sub in ast.walk(child))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if not base.startswith("ratefuse"):
                continue
            for alias in node.names:
                yield resolve(f"{base}.{alias.name}", known), id(node) in checking
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ratefuse"):
                    yield alias.name, id(node) in checking


def cython_imports(path: Path, known: dict[str, Path]) -> Iterator[tuple[str, bool]]:
    for match in CYTHON_IMPORT.finditer(path.read_text()):
        base, names, plain = match.groups()
        if plain:
            yield plain, False
            continue
        for item in names.strip("()").replace("\n", " ").split(","):
            word = item.split(" as ")[0].strip()
            if word:
                yield resolve(f"{base}.{word}", known), False


def graph() -> dict[str, set[tuple[str, bool]]]:
    known = modules()
    edges: dict[str, set[tuple[str, bool]]] = {}
    for name, path in known.items():
        found = (
            python_imports(name, path, known)
            if path.suffix == ".py"
            else cython_imports(path, known)
        )
        edges[name] = {
            (target, checking)
            for target, checking in found
            if target != name and target in known
        }
    return edges


def test_every_import_points_down() -> None:
    upward = [
        f"{source} ({LAYERS[layer_of(source)][0]}) imports {target} "
        f"({LAYERS[layer_of(target)][0]})"
        for source, targets in graph().items()
        for target, _ in targets
        if layer_of(target) > layer_of(source)
    ]
    assert upward == []


def test_there_is_no_import_circle() -> None:
    edges = graph()
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target, _ in sorted(edges[node]):
            if state.get(target) == 1:
                circles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert circles == []


def test_production_code_reaches_the_twins_only_through_selectors() -> None:
    # A twin (…_c / …_py) may be imported by its own family (reference by
    # reference, compiled by compiled), and by anything under TYPE_CHECKING
    # (the reference twin is the type source); everything else goes through
    # ratefuse.core.implementation.load.
    # Cython modules (.pyx and C-level .pxd helpers) are the compiled family.
    known = modules()
    wrong = []
    for source, targets in graph().items():
        compiled = known[source].suffix in (".pyx", ".pxd")
        for target, checking in targets:
            twin = TWIN.search(target)
            if twin is None or checking:
                continue
            named = TWIN.search(source)
            family = "c" if compiled else named.group(1) if named else None
            if family != twin.group(1):
                wrong.append(f"{source} imports {target}")
    assert wrong == []


@pytest.mark.parametrize(
    ("name", "layer"),
    [
        ("ratefuse.core.spec", "core"),
        ("ratefuse.engine.waiting", "engine"),
        ("ratefuse.limiter", "facades"),
        ("ratefuse", "package"),
        ("ratefuse.redis.limiter", "backends"),
        ("ratefuse.web.asgi", "integrations"),
        ("ratefuse.bench.cli", "bench"),
    ],
)
def test_the_layer_table_places_modules_by_their_longest_prefix(
    name: str, layer: str
) -> None:
    assert LAYERS[layer_of(name)][0] == layer


def test_the_graph_reader_sees_relative_cython_and_type_only_imports() -> None:
    edges = graph()
    assert ("ratefuse.core.spec", False) in edges["ratefuse.rates"]
    assert any(
        target == "ratefuse.core._step"
        for target, _ in edges["ratefuse.core._compound_c"]
    )
    assert ("ratefuse.engine._subject_py", True) in edges["ratefuse.engine.subject"]
