"""The README's examples, as the tests run them.

Every ```python block of README.md is an example that runs as printed. One
followed by "prints" and a plain block must print exactly that block.
Examples that talk to Redis (they import ``redis``) or read ``ratefuse.toml``
run in tests/redis_backend/test_readme_redis.py against the servers the
tests start; the others in tests/test_readme.py.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent.parent / "README.md"
TEXT = README.read_text()
EXAMPLES: list[str] = re.findall(r"```python\n(.*?)```", TEXT, flags=re.DOTALL)
# An example followed by "prints" and a block must print exactly that block.
PRINTED: dict[str, str] = dict(
    re.findall(
        r"```python\n((?:(?!```).)*?)```\n\nprints\n\n```\n(.*?)```",
        TEXT,
        flags=re.DOTALL,
    )
)
# The TOML file the README's examples read as ratefuse.toml.
# Every ```toml block, and the one the examples read as ratefuse.toml: the
# first of the "Configuration and hot reload" section.
TOML_BLOCKS: list[str] = re.findall(r"```toml\n(.*?)```", TEXT, flags=re.DOTALL)
_CONFIG_SECTION = TEXT.split("## Configuration and hot reload\n", 1)[1].split(
    "\n## ", 1
)[0]
TOML: str = re.findall(r"```toml\n(.*?)```", _CONFIG_SECTION, flags=re.DOTALL)[0]


def needs_redis(source: str) -> bool:
    """`needs_redis` tells whether an example talks to a Redis server."""
    return "import redis" in source or "ratefuse.toml" in source


def example_id(source: str) -> str:
    """`example_id` names an example by its line in README.md."""
    line = TEXT[: TEXT.index(source)].count("\n") + 1
    return f"README.md:{line}"


def run_example(source: str) -> None:
    """`run_example` runs one example as a module would run: top-level
    ``await`` is allowed (it runs in a fresh event loop, as ``python -m
    asyncio`` would)."""
    code = compile(source, str(README), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    if code.co_flags & inspect.CO_COROUTINE:
        asyncio.run(eval(code, namespace))
    else:
        exec(code, namespace)
