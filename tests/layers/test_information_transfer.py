"""AdaptiveInformationTransfer (AITM's AIT module) against numpy, and its structure."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_recsys.layers.multitask.information_transfer import AdaptiveInformationTransfer


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def ait_numpy(layer, inputs):
    """z = Σ_u w_u · u h1, w = softmax_u((u h2) · (u h3) / √d), from the layer's weights."""
    h1, h2, h3 = (_np(w) for w in (layer.h1, layer.h2, layer.h3))
    u = np.stack(inputs, axis=1).astype(np.float64)  # (B, n, d)
    scores = np.einsum("bnd,bnd->bn", u @ h2, u @ h3) / np.sqrt(u.shape[-1])
    weights = softmax(scores)
    return np.einsum("bn,bnd->bd", weights, u @ h1), weights


@pytest.mark.multibackend
@pytest.mark.parametrize("count", [2, 3])
def test_matches_numpy(count, rng, randomize):
    inputs = [rng.normal(size=(16, 6)).astype("float32") for _ in range(count)]
    layer = AdaptiveInformationTransfer()
    layer(inputs)
    randomize(layer, rng)
    fused, weights = layer(inputs, return_weights=True)
    want_fused, want_weights = ait_numpy(layer, inputs)
    assert tuple(fused.shape) == (16, 6) and tuple(weights.shape) == (16, count)
    np.testing.assert_allclose(_np(weights), want_weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(fused), want_fused, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_np(weights).sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(_np(layer(inputs)), want_fused, rtol=1e-5, atol=1e-5)


def test_weights_follow_the_score_of_each_input(rng):
    """With h2 = h3 = I the score is |u|² / √d: the input of larger norm gets
    more weight, per example; with h1 = I the output is the weighted inputs."""
    small = rng.normal(size=(8, 4)).astype("float32") * 0.1
    large = rng.normal(size=(8, 4)).astype("float32") * 3.0
    layer = AdaptiveInformationTransfer()
    layer([small, large])
    for weight in (layer.h1, layer.h2, layer.h3):
        weight.assign(np.eye(4, dtype="float32"))
    fused, weights = layer([small, large], return_weights=True)
    weights = _np(weights)
    assert (weights[:, 1] > weights[:, 0]).all()
    np.testing.assert_allclose(
        _np(fused), weights[:, :1] * small + weights[:, 1:] * large, rtol=1e-5, atol=1e-6
    )
    # Swapping the inputs swaps the weights: the weights belong to the inputs, not positions.
    _, swapped = layer([large, small], return_weights=True)
    np.testing.assert_allclose(_np(swapped)[:, ::-1], weights, rtol=1e-6)


def test_round_trip_and_checks(rng, round_trip):
    inputs = [rng.normal(size=(4, 5)).astype("float32") for _ in range(2)]
    layer = AdaptiveInformationTransfer(kernel_initializer="he_normal", name="ait")
    layer(inputs)
    assert [tuple(w.shape) for w in layer.weights] == [(5, 5)] * 3
    copy = round_trip(layer, inputs)
    np.testing.assert_allclose(_np(copy(inputs)), _np(layer(inputs)), rtol=1e-6)
    assert copy.get_config()["kernel_initializer"]["class_name"] == "HeNormal"
    with pytest.raises(ValueError, match="one width"):
        AdaptiveInformationTransfer()([inputs[0], keras.ops.ones((4, 3))])
