"""LeaseConfig: k adapts to the local demand within [min_units, max_units],
and the low-water mark follows the lease's size."""

from __future__ import annotations

import pytest

from ratefuse.redis._lease_config import LeaseConfig, to_lease_config

MS = 1_000_000


@pytest.mark.parametrize(
    ("spent", "elapsed_ns", "size"),
    [
        (0, 0, 2),  # no demand measured yet: min_units
        (5, 0, 2),
        (0, 10 * MS, 2),
        (1, 1000 * MS, 2),  # 1/s * 0.5 s -> 1, clamped up to min_units
        (10, 100 * MS, 25),  # 100/s * lifetime / 2 (0.25 s)
        (10, 1 * MS, 1000),  # 10,000/s: clamped to max_units
    ],
)
def test_size_follows_demand_over_half_a_lifetime(spent, elapsed_ns, size) -> None:
    config = LeaseConfig(max_units=1000, min_units=2, lifetime=0.5)
    assert config.size(spent, elapsed_ns) == size


def test_low_water_is_a_share_of_the_lease() -> None:
    config = LeaseConfig(low_water=0.25)
    assert [config.low_water_units(k) for k in (1, 4, 10)] == [1, 1, 3]
    assert LeaseConfig(low_water=0).low_water_units(100) == 0


def test_the_lease_argument() -> None:
    assert to_lease_config(None) is None
    assert to_lease_config(False) is None
    assert to_lease_config(True) == LeaseConfig()
    config = LeaseConfig(max_units=5)
    assert to_lease_config(config) is config
    with pytest.raises(TypeError, match="lease"):
        to_lease_config(5)  # type: ignore[arg-type]


@pytest.mark.parametrize("lifetime", [1e-10, 4e-7, 9.99e-7])
def test_a_lifetime_below_a_microsecond_names_the_field(lifetime) -> None:
    # Below 1 us, lifetime_ns rounded to 0 (or nearly): every lease expired
    # as it was granted, its units taken from the fleet and never spent.
    with pytest.raises(ValueError, match="lifetime"):
        LeaseConfig(lifetime=lifetime)
    assert LeaseConfig(lifetime=1e-6).lifetime_ns == 1000
