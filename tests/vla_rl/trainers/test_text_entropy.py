"""The entropy-performance fit R = -a exp(H) + b (Cui et al. 2025)."""

import numpy as np
import pytest

from vla_rl.trainers.text_entropy import entropy_fit


def test_entropy_fit_recovers_known_coefficients():
    h = np.linspace(0.2, 2.0, 30)
    r = -0.05 * np.exp(h) + 0.9
    fit = entropy_fit(h, r)
    assert fit["a"] == pytest.approx(0.05) and fit["b"] == pytest.approx(0.9) and fit["r2"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 3"):
        entropy_fit([1.0, float("nan")], [0.5, 0.5])
