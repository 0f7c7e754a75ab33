"""FeatureGating (FinalMLP's stream-specific feature selection) against numpy."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_recsys.layers.interaction.feature_gating import FeatureGating


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def gating_reference(x, context, w1, b1, w2, b2):
    """x ⊙ 2σ(W_2 ReLU(W_1 c + b_1) + b_2)."""
    logits = np.maximum(context @ w1 + b1, 0.0) @ w2 + b2
    return x * 2.0 / (1.0 + np.exp(-logits))


def _gate_weights(layer):
    return [_np(w) for w in (*layer.gate.hidden.weights, *layer.gate.output_layer.weights)]


@pytest.mark.multibackend
def test_gate_on_a_context_matches_numpy(rng, randomize):
    """Per-example gates from the context features: each row scaled by its own gate."""
    x = rng.normal(size=(5, 7)).astype("float32")
    context = rng.normal(size=(5, 3)).astype("float32")
    layer = FeatureGating(hidden_units=4)
    layer(x, context=context)
    randomize(layer, rng)
    assert layer.context is None
    expected = gating_reference(x.astype(np.float64), context, *_gate_weights(layer))
    np.testing.assert_allclose(_np(layer(x, context=context)), expected, rtol=1e-5, atol=1e-6)


def test_learned_context_is_one_global_gate(rng, randomize):
    """Without a context the gate reads the learned vector: the same scales for every
    example, in (0, 2), and exactly 1 at initialization (zero output bias)."""
    x = rng.normal(size=(4, 6)).astype("float32")
    layer = FeatureGating(hidden_units=5, context_dim=3)
    np.testing.assert_allclose(_np(layer(x)), x, rtol=1e-6)  # initial gate = 2σ(0) = 1
    assert tuple(layer.context.shape) == (3,)
    randomize(layer, rng)
    context = np.tile(_np(layer.context), (4, 1))
    expected = gating_reference(x.astype(np.float64), context, *_gate_weights(layer))
    got = _np(layer(x))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    scales = got / x
    np.testing.assert_allclose(scales, np.tile(scales[:1], (4, 1)), rtol=1e-5)
    assert np.all((scales > 0) & (scales < 2))


def test_gate_without_hidden_layer(rng, randomize):
    x = rng.normal(size=(3, 4)).astype("float32")
    context = rng.normal(size=(3, 2)).astype("float32")
    layer = FeatureGating(hidden_units=0)
    layer(x, context)
    randomize(layer, rng)
    w, b = (_np(v) for v in layer.gate.output_layer.weights)
    expected = x * 2.0 / (1.0 + np.exp(-(context @ w + b)))
    np.testing.assert_allclose(_np(layer(x, context)), expected, rtol=1e-5, atol=1e-6)


def test_built_with_a_context_needs_one(rng):
    layer = FeatureGating(hidden_units=2)
    x = rng.normal(size=(2, 3)).astype("float32")
    layer(x, context=x)
    with pytest.raises(ValueError, match="call it with one"):
        layer(x)


@pytest.mark.parametrize("with_context", [False, True], ids=["learned", "features"])
def test_config_round_trip(rng, randomize, round_trip, with_context):
    x = rng.normal(size=(3, 5)).astype("float32")
    args = (x, x[:, :2]) if with_context else (x,)
    layer = FeatureGating(hidden_units=3, context_dim=4)
    layer(*args)
    randomize(layer, rng)
    copy = round_trip(layer, *args)
    np.testing.assert_allclose(_np(copy(*args)), _np(layer(*args)), rtol=1e-6)


def test_saved_in_a_model(tmp_path, rng, randomize):
    x_in, c_in = keras.Input((5,)), keras.Input((2,))
    gated = FeatureGating(hidden_units=3)(x_in, context=c_in)
    model = keras.Model([x_in, c_in], FeatureGating(hidden_units=2, context_dim=3)(gated))
    randomize(model, rng)
    path = tmp_path / "gating.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x, c = rng.normal(size=(2, 5)).astype("float32"), rng.normal(size=(2, 2)).astype("float32")
    np.testing.assert_allclose(_np(loaded([x, c])), _np(model([x, c])), rtol=1e-6)
