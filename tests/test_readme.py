"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
# An example followed by "prints" and a block must print exactly that block.
PRINTED = dict(
    re.findall(
        r"```python\n((?:(?!```).)*?)```\n\nprints\n\n```\n(.*?)```",
        README.read_text(),
        flags=re.DOTALL,
    )
)


def test_readme_has_examples() -> None:
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("source", EXAMPLES, ids=lambda s: s.splitlines()[0][:40])
def test_readme_example_runs(source: str, capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(source, str(README), "exec"), {})
    if source in PRINTED:
        assert capsys.readouterr().out == PRINTED[source]


def test_readme_has_a_printed_example() -> None:
    # Each printed block belongs to one whole example (so that it is checked).
    assert PRINTED
    assert set(PRINTED) <= set(EXAMPLES)
