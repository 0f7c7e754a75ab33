"""MLP against numpy matmuls, with each normalization and the linear last layer."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_recsys.layers import MLP

_ACTIVATIONS = {"relu": lambda z: np.maximum(z, 0.0), "tanh": np.tanh}


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _layer_norm(h, gamma, beta, eps):
    mean = h.mean(-1, keepdims=True)
    var = h.var(-1, keepdims=True)
    return (h - mean) / np.sqrt(var + eps) * gamma + beta


def _batch_norm_inference(h, gamma, beta, moving_mean, moving_var, eps):
    return (h - moving_mean) / np.sqrt(moving_var + eps) * gamma + beta


def _reference(mlp, x, activation):
    """h_{l+1} = act(norm(h_l W_l + b_l)), the last layer linear if output_activation=False."""
    h = x.astype(np.float64)
    last = len(mlp.units) - 1
    for i, (dense, norm) in enumerate(zip(mlp.dense_layers, mlp.norm_layers)):
        h = h @ _np(dense.kernel) + _np(dense.bias)
        if i == last and not mlp.output_activation:
            break
        if isinstance(norm, keras.layers.LayerNormalization):
            h = _layer_norm(h, _np(norm.gamma), _np(norm.beta), norm.epsilon)
        elif isinstance(norm, keras.layers.BatchNormalization):
            stats = [
                _np(w) for w in (norm.gamma, norm.beta, norm.moving_mean, norm.moving_variance)
            ]
            h = _batch_norm_inference(h, *stats, norm.epsilon)
        h = _ACTIVATIONS[activation](h)
    return h


@pytest.mark.parametrize("output_activation", [True, False])
@pytest.mark.parametrize("normalization", [None, "layer", "batch"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_matches_numpy(rng, activation, normalization, output_activation):
    """Inference outputs equal numpy matmuls, normalizations and activations, layer by layer."""
    x = rng.normal(size=(8, 5)).astype("float32")
    mlp = MLP([7, 4, 3], activation, 0.3, normalization, output_activation)
    mlp(x)
    weights = []
    for w in mlp.weights:
        value = rng.normal(0, 0.6, w.shape)
        if "variance" in w.path:
            value = np.abs(value) + 0.5  # a positive moving variance
        weights.append(value.astype("float32"))
    mlp.set_weights(weights)
    out = _np(mlp(x, training=False))
    assert out.shape == (8, 3)
    np.testing.assert_allclose(out, _reference(mlp, x, activation), rtol=1e-4, atol=1e-5)
    if not output_activation and activation == "relu":
        assert (out < 0).any()  # the last layer is linear: logits can be negative


def test_last_linear_layer_has_no_normalization_or_dropout():
    """With output_activation=False the last layer gets neither a normalization nor dropout."""
    mlp = MLP([4, 2], dropout=0.5, normalization="batch", output_activation=False)
    assert mlp.norm_layers[0] is not None and mlp.dropout_layers[0] is not None
    assert mlp.norm_layers[-1] is None and mlp.dropout_layers[-1] is None


def test_dropout_only_in_training(rng):
    """Dropout zeroes units (and rescales the rest) only when training."""
    x = np.abs(rng.normal(size=(64, 6))).astype("float32") + 1.0
    mlp = MLP([32], activation="relu", dropout=0.5)
    mlp(x)
    mlp.set_weights([np.eye(6, 32, dtype="float32"), np.ones(32, "float32")])
    inference = _np(mlp(x, training=False))
    np.testing.assert_allclose(inference, np.maximum(x @ np.eye(6, 32) + 1.0, 0), rtol=1e-6)
    training = _np(mlp(x, training=True))
    dropped = training == 0
    assert 0.3 < dropped.mean() < 0.7
    np.testing.assert_allclose(training[~dropped], 2.0 * inference[~dropped], rtol=1e-5)


def test_rejects_unknown_normalization():
    """A misspelt normalization is an error naming the accepted values."""
    with pytest.raises(ValueError, match="normalization must be None, 'batch' or 'layer'"):
        MLP([4], normalization="group")


@pytest.mark.parametrize("normalization", [None, "batch"])
def test_config_round_trip(rng, randomize, round_trip, normalization):
    """Rebuilt from its config with copied weights, the MLP computes the same outputs."""
    x = rng.normal(size=(4, 5)).astype("float32")
    mlp = MLP([6, 2], "tanh", 0.1, normalization, output_activation=False, name="tower")
    mlp(x)
    randomize(mlp, rng)
    if normalization == "batch":
        mlp.norm_layers[0].moving_variance.assign(np.full(6, 2.0, "float32"))
    copy = round_trip(mlp, x)
    assert copy.get_config()["units"] == [6, 2]
    np.testing.assert_allclose(_np(copy(x)), _np(mlp(x)), rtol=1e-6)


def test_saved_in_a_model(tmp_path, rng, randomize):
    """An MLP inside a .keras model saves and loads with the same outputs."""
    inputs = keras.Input((5,))
    model = keras.Model(inputs, MLP([4, 1], normalization="layer", output_activation=False)(inputs))
    randomize(model, rng)
    model.save(tmp_path / "mlp.keras")
    loaded = keras.saving.load_model(tmp_path / "mlp.keras")
    x = rng.normal(size=(3, 5)).astype("float32")
    np.testing.assert_allclose(_np(loaded(x)), _np(model(x)), rtol=1e-6)
