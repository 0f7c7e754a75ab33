"""TargetAttention (DIN's activation unit, DIEN's bilinear softmax) and Dice against NumPy."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_recsys.layers.behavior.dice import Dice
from keras_recsys.layers.behavior.target_attention import TargetAttention


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def _inputs(rng, batch=4, length=6, dim=5):
    """Behaviours, targets and a front-padded mask; the last row has no real step."""
    keys = rng.normal(size=(batch, length, dim)).astype("float32")
    query = rng.normal(size=(batch, dim)).astype("float32")
    lengths = np.array([length, 3, 1, 0])[:batch]
    mask = np.arange(length)[None, :] >= (length - lengths)[:, None]
    return keys, query, mask


def _dice_np(x, alpha, mean, variance, epsilon=1e-8):
    p = 1.0 / (1.0 + np.exp(-(x - mean) / np.sqrt(variance + epsilon)))
    return p * x + (1.0 - p) * alpha * x


def _masked_moments(x, mask):
    """Mean and (biased) variance per unit over the real steps of (B, L, u)."""
    rows = x[mask]
    return rows.mean(axis=0), rows.var(axis=0)


def _activation_unit_np(layer, keys, query, mask, training=False):
    """s_t = w_o · g(W [h, q, h − q, h ⊙ q] + b) + b_o, layer by layer in NumPy."""
    keys, query = keys.astype(np.float64), query.astype(np.float64)
    target = np.broadcast_to(query[:, None, :], keys.shape)
    x = np.concatenate([keys, target, keys - target, keys * target], axis=-1)
    for dense, activation in zip(layer.hidden_layers, layer.activation_layers):
        x = x @ _np(dense.kernel) + _np(dense.bias)
        if layer.activation == "prelu":
            alpha = _np(activation.alpha).reshape(-1)
            x = np.where(x > 0, x, alpha * x)
        elif layer.activation == "dice":
            if training:
                mean, variance = _masked_moments(x, mask)
            else:
                mean, variance = _np(activation.moving_mean), _np(activation.moving_variance)
            x = _dice_np(x, _np(activation.alpha), mean, variance)
        elif layer.activation == "sigmoid":
            x = 1.0 / (1.0 + np.exp(-x))
        else:
            raise AssertionError(layer.activation)
    return (x @ _np(layer.output_layer.kernel) + _np(layer.output_layer.bias))[..., 0]


def _set_dice_statistics(layer, rng):
    """Moving statistics the layer would not start with (mean 0, variance 1 hide terms)."""
    for activation in layer.activation_layers:
        if isinstance(activation, Dice):
            units = activation.moving_mean.shape[0]
            activation.moving_mean.assign(rng.normal(0, 0.5, units).astype("float32"))
            activation.moving_variance.assign(rng.uniform(0.5, 2.0, units).astype("float32"))


@pytest.mark.multibackend
@pytest.mark.parametrize("activation", ["prelu", "dice", "sigmoid"])
def test_activation_unit_weights_and_pooling_match_numpy(rng, randomize, activation):
    """DIN: w_t = MLP([h_t, q, h_t − q, h_t ⊙ q]) unnormalized, 0 at padding; v = Σ w_t h_t."""
    keys, query, mask = _inputs(rng)
    layer = TargetAttention(units=[7, 3], activation=activation)
    layer(keys, query, mask=mask)
    randomize(layer, rng)
    _set_dice_statistics(layer, rng)

    pooled, weights = layer(keys, query, mask=mask, return_weights=True)
    scores = _activation_unit_np(layer, keys, query, mask)
    expected_weights = np.where(mask, scores, 0.0)
    np.testing.assert_allclose(_np(weights), expected_weights, rtol=1e-5, atol=1e-5)
    expected = np.einsum("bl,bld->bd", expected_weights, keys.astype(np.float64))
    np.testing.assert_allclose(_np(pooled), expected, rtol=1e-5, atol=1e-5)
    # No softmax: the weights do not sum to one.
    assert np.abs(expected_weights[:2].sum(axis=1) - 1.0).max() > 1e-2
    # An empty history pools to exactly zero.
    np.testing.assert_array_equal(_np(pooled)[3], 0.0)


def test_dice_in_training_uses_the_real_steps_statistics(rng, randomize):
    """In training Dice normalizes with the batch's mean and variance over unpadded steps
    only (padding is excluded); inference uses the moving averages."""
    keys, query, mask = _inputs(rng)
    layer = TargetAttention(units=[4], activation="dice")
    layer(keys, query, mask=mask)
    randomize(layer, rng)
    _set_dice_statistics(layer, rng)
    dice = layer.activation_layers[0]
    old_mean, old_variance = _np(dice.moving_mean), _np(dice.moving_variance)

    weights = layer(keys, query, mask=mask, training=True, return_weights=True)[1]
    scores = _activation_unit_np(layer, keys, query, mask, training=True)
    np.testing.assert_allclose(_np(weights), np.where(mask, scores, 0.0), rtol=1e-5, atol=1e-5)
    # The moving averages moved towards the batch statistics of the real steps.
    target = np.broadcast_to(query[:, None, :], keys.shape).astype(np.float64)
    keys = keys.astype(np.float64)
    hidden = np.concatenate([keys, target, keys - target, keys * target], axis=-1)
    pre = hidden @ _np(layer.hidden_layers[0].kernel) + _np(layer.hidden_layers[0].bias)
    mean, variance = _masked_moments(pre, mask)
    np.testing.assert_allclose(_np(dice.moving_mean), 0.99 * old_mean + 0.01 * mean, rtol=1e-5)
    np.testing.assert_allclose(
        _np(dice.moving_variance), 0.99 * old_variance + 0.01 * variance, rtol=1e-5
    )


@pytest.mark.multibackend
def test_bilinear_softmax_matches_numpy(rng, randomize):
    """DIEN's attention: a_t = softmax_t(h_tᵀ W q) over the real steps, 0 at padding;
    the target may have another size than the behaviours."""
    keys, _, mask = _inputs(rng)
    query = rng.normal(size=(4, 3)).astype("float32")
    layer = TargetAttention(score="bilinear", normalization="softmax")
    layer(keys, query, mask=mask)
    randomize(layer, rng)
    pooled, weights = layer(keys, query, mask=mask, return_weights=True)

    scores = np.einsum("bld,de,be->bl", keys.astype(np.float64), _np(layer.kernel), query)
    expected = np.zeros_like(scores)
    for b in range(len(scores)):
        real = mask[b]
        if real.any():
            e = np.exp(scores[b, real] - scores[b, real].max())
            expected[b, real] = e / e.sum()
    np.testing.assert_allclose(_np(weights), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(weights).sum(axis=1), [1, 1, 1, 0], atol=1e-5)
    np.testing.assert_allclose(
        _np(pooled), np.einsum("bl,bld->bd", expected, keys), rtol=1e-5, atol=1e-5
    )


def test_activation_unit_softmax_and_no_mask(rng, randomize):
    """score "mlp" with normalization "softmax" (DIEN's option); no mask = every step real."""
    keys, query, _ = _inputs(rng)
    layer = TargetAttention(units=[4], activation="sigmoid", normalization="softmax")
    layer(keys, query)
    randomize(layer, rng)
    weights = _np(layer(keys, query, return_weights=True)[1])
    scores = _activation_unit_np(layer, keys, query, np.ones(keys.shape[:2], bool))
    expected = np.exp(scores - scores.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(weights, expected, rtol=1e-5, atol=1e-6)


def test_dice_formula_and_moving_statistics(rng):
    """Dice on (B, d) without a mask: batch statistics in training, moving ones at inference."""
    x = rng.normal(1.0, 2.0, size=(64, 3)).astype("float32")
    dice = Dice(momentum=0.9)
    dice(x)
    alpha = np.array([0.25, -0.5, 1.5], "float32")
    dice.alpha.assign(alpha)
    batch = _np(dice(x, training=True))
    np.testing.assert_allclose(batch, _dice_np(x, alpha, x.mean(0), x.var(0)), rtol=1e-5, atol=1e-6)
    mean = 0.1 * x.mean(0)
    variance = 0.9 + 0.1 * x.var(0)
    np.testing.assert_allclose(_np(dice.moving_mean), mean, rtol=1e-5)
    np.testing.assert_allclose(_np(dice.moving_variance), variance, rtol=1e-5)
    np.testing.assert_allclose(
        _np(dice(x)), _dice_np(x, alpha, mean, variance), rtol=1e-5, atol=1e-6
    )


def test_rejects_bad_options_and_mismatched_sizes(rng):
    keys, query, mask = _inputs(rng)
    with pytest.raises(ValueError, match="score must be one of"):
        TargetAttention(score="dot")
    with pytest.raises(ValueError, match="normalization must be one of"):
        TargetAttention(normalization="sum")
    with pytest.raises(ValueError, match=r"size 5\).*\(size 3\)"):
        TargetAttention()(keys, query[:, :3], mask=mask)


@pytest.mark.parametrize(
    "make",
    [
        lambda: TargetAttention(units=[6], activation="dice"),
        lambda: TargetAttention(units=[6, 2], activation="prelu"),
        lambda: TargetAttention(score="bilinear", normalization="softmax"),
    ],
    ids=["dice", "prelu", "bilinear"],
)
def test_config_round_trip(rng, randomize, round_trip, make):
    keys, query, mask = _inputs(rng)
    layer = make()
    layer(keys, query, mask=mask)
    randomize(layer, rng)
    _set_dice_statistics(layer, rng)
    copy = round_trip(layer, keys, query, mask=mask)
    np.testing.assert_allclose(
        _np(copy(keys, query, mask=mask)), _np(layer(keys, query, mask=mask)), rtol=1e-6
    )


def test_saved_in_a_model(tmp_path, rng, randomize):
    """A functional model around the attention saves and loads with the same outputs."""
    keys, query, mask = _inputs(rng)
    inputs = [keras.Input((6, 5)), keras.Input((5,)), keras.Input((6,), dtype="bool")]
    outputs = TargetAttention(units=[4], activation="dice")(*inputs[:2], mask=inputs[2])
    model = keras.Model(inputs, outputs)
    randomize(model, rng)
    _set_dice_statistics(model.layers[-1], rng)
    path = tmp_path / "attention.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        _np(loaded([keys, query, mask])), _np(model([keys, query, mask])), rtol=1e-6
    )
