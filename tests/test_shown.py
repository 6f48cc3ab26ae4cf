"""`shown` bounds the values error messages print, containers too."""

from __future__ import annotations

import pytest

from ratefuse import Rate
from ratefuse.core.args import shown

HUGE = 0x31E20 << 16000  # beyond the 4,300 digits Python's repr prints


def test_a_container_holding_a_huge_int_is_described_by_its_type() -> None:
    # Found by tests/test_fuzz.py: Rate([HUGE], None) raised Python's own
    # "Exceeds the limit (4300 digits)" instead of naming the field.
    assert shown([HUGE]) == "a list too large to print"
    assert shown(HUGE) == "an int of 16018 bits"
    with pytest.raises(ValueError, match="limit must be an int, got a list too large"):
        Rate([HUGE], 1.0)  # type: ignore[arg-type]
