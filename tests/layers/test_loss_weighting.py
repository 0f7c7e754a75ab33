"""Uncertainty weighting and GradNorm's equations against numpy."""

import numpy as np
import pytest
from keras import ops

import keras_recsys as kr


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


@pytest.mark.multibackend
def test_uncertainty_weighting_matches_kendall():
    weighting = kr.layers.UncertaintyWeighting(["a", "b", "c"])
    weighting.build()
    s = np.array([0.5, -0.3, 1.2], "float32")
    weighting.log_variances.assign(s)
    losses = np.array([0.7, 0.2, 1.5], "float32")
    total = _np(weighting([losses[0], losses[1], losses[2]]))
    np.testing.assert_allclose(total, np.sum(np.exp(-s) * losses + s), rtol=1e-6)
    np.testing.assert_allclose(_np(weighting.current_weights()), np.exp(-s), rtol=1e-6)


def test_uncertainty_weighting_starts_equal():
    weighting = kr.layers.UncertaintyWeighting(["a", "b"])
    weighting.build()
    losses = [np.float32(1.0), np.float32(3.0)]
    np.testing.assert_allclose(_np(weighting(losses)), 4.0)


def gradnorm_numpy(w, losses, initial, norms, alpha):
    ratios = losses / initial
    r = ratios / ratios.mean()
    g = w * norms
    target = g.mean() * r**alpha
    return np.sign(g - target) * norms


def test_gradnorm_weight_gradient_matches_numpy():
    weighting = kr.layers.GradNormWeighting(["a", "b", "c"], alpha=1.5, initial_weights=[1, 2, 3])
    weighting.build()
    np.testing.assert_allclose(_np(weighting.task_weights), [0.5, 1.0, 1.5])  # sums to K
    losses = np.array([0.6, 0.3, 0.9], "float32")
    norms = np.array([2.0, 0.5, 1.0], "float32")
    # Before any initial loss is recorded, L(0) = L(t): every r_k = 1.
    got = _np(weighting.weight_gradient(list(losses), list(norms)))
    np.testing.assert_allclose(
        got, gradnorm_numpy(np.array([0.5, 1.0, 1.5]), losses, losses, norms, 1.5), rtol=1e-6
    )
    weighting.record_initial_losses(list(np.array([1.0, 0.5, 1.0], "float32")))
    weighting.record_initial_losses(list(np.array([9.0, 9.0, 9.0], "float32")))  # kept: no-op
    np.testing.assert_allclose(_np(weighting.initial_losses), [1.0, 0.5, 1.0])
    got = _np(weighting.weight_gradient(list(losses), list(norms)))
    expected = gradnorm_numpy(
        np.array([0.5, 1.0, 1.5]), losses, np.array([1.0, 0.5, 1.0]), norms, 1.5
    )
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    total = _np(weighting(list(losses)))
    np.testing.assert_allclose(total, np.sum(np.array([0.5, 1.0, 1.5]) * losses), rtol=1e-6)


def test_gradnorm_renormalizes_to_the_number_of_tasks():
    weighting = kr.layers.GradNormWeighting(["a", "b"])
    weighting.build()
    weighting.task_weights.assign([3.0, 1.0])
    weighting.renormalize()
    np.testing.assert_allclose(_np(weighting.task_weights), [1.5, 0.5], rtol=1e-6)
    with pytest.raises(ValueError, match="positive"):
        kr.layers.GradNormWeighting(["a", "b"], initial_weights=[1.0, 0.0])
