import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vla_rl.policies.vla.processor_vla import ActionTokenizer, NormStats

STATS = NormStats(q01=np.array([-0.5, -1, -2, -0.1, -0.1, -0.3, -1]), q99=np.array([0.5, 1, 3, 0.1, 0.2, 0.3, 1]))
OFFSET = 1000


def tok() -> ActionTokenizer:
    return ActionTokenizer(STATS, OFFSET)


finite = st.floats(-10, 10, allow_nan=False, width=32)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, (5, 7), elements=finite))
def test_round_trip_within_half_a_bin_inside_the_range(a):
    t = tok()
    clipped = np.clip(a, STATS.q01, STATS.q99)
    ids = t.encode(clipped)
    assert ids.dtype == np.int64 and ids.min() >= OFFSET and ids.max() < OFFSET + 256
    back = t.decode(ids)
    err = np.abs(back[:, :6] - clipped[:, :6])
    assert (err <= t.bin_width()[:6] / 2 + 1e-6).all()
    np.testing.assert_array_equal(back[:, 6], np.where(clipped[:, 6] > 0, 1.0, -1.0))


@settings(max_examples=100, deadline=None)
@given(arrays(np.int64, (3, 7), elements=st.integers(OFFSET, OFFSET + 255)))
def test_decode_then_encode_is_identity_on_continuous_dims(ids):
    t = tok()
    again = t.encode(t.decode(ids))
    np.testing.assert_array_equal(again[:, :6], ids[:, :6])
    assert set(np.unique(again[:, 6])) <= {OFFSET, OFFSET + 255}


@settings(max_examples=100, deadline=None)
@given(arrays(np.float64, (4, 7), elements=finite))
def test_out_of_range_values_clip_to_the_edge_bins(a):
    t = tok()
    ids = t.encode(a) - OFFSET
    assert (ids[:, :6][a[:, :6] >= STATS.q99[:6]] == 255).all()
    assert (ids[:, :6][a[:, :6] <= STATS.q01[:6]] == 0).all()


def test_monotone_and_uses_every_bin():
    t = ActionTokenizer(NormStats(np.array([-1.0]), np.array([1.0])), 0, binary_dims=())
    xs = np.linspace(-1, 1, 10_001)[:, None]
    ids = t.encode(xs)[:, 0]
    assert (np.diff(ids) >= 0).all() and len(np.unique(ids)) == 256


def test_bad_input_is_refused():
    t = tok()
    with pytest.raises(ValueError, match="NaN"):
        t.encode(np.full(7, np.nan))
    with pytest.raises(ValueError, match="6 dims"):
        t.encode(np.zeros(6))
    with pytest.raises(ValueError, match="outside the action range"):
        t.decode(np.full(7, OFFSET + 256))


def test_stats_from_actions_and_constant_dims():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(1000, 7))
    a[:, 2] = 0.3  # a constant dimension must not divide by zero
    s = NormStats.from_actions(a)
    np.testing.assert_allclose(s.q01[0], np.quantile(a[:, 0], 0.01), rtol=1e-5)
    t = ActionTokenizer(s, 0)
    back = t.decode(t.encode(a))
    assert np.isfinite(back).all()
    assert NormStats.from_dict(s.to_dict()).q99.tolist() == s.q99.tolist()
