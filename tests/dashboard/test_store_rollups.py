"""The rollups' inlined bucket indexes agree with the histogram module's mapping."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from dashboard.histograms import STORE_SCALE, map_to_index
from dashboard.rollups import _store_indexes

positive = st.floats(min_value=2.0**-40, max_value=2.0**40, allow_nan=False, allow_infinity=False)
powers = st.integers(min_value=-40 << STORE_SCALE, max_value=40 << STORE_SCALE).map(
    lambda k: 2.0 ** (k / (1 << STORE_SCALE))
)
near_powers = st.integers(min_value=-40, max_value=40).flatmap(
    lambda k: st.sampled_from(
        [2.0**k, math.nextafter(2.0**k, 0.0), math.nextafter(2.0**k, math.inf)]
    )
)


@given(st.lists(st.one_of(positive, powers, near_powers), max_size=50))
def test_inlined_indexes_are_map_to_index_at_the_store_scale(values: list[float]) -> None:
    assert _store_indexes(values) == [map_to_index(v, STORE_SCALE) for v in values]
