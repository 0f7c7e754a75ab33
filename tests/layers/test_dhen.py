"""DHENLayer: every interaction module and the ensemble against numpy computations."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_recsys.layers.interaction.dhen import INTERACTION_MODULES, DHENLayer
from tests.layers.test_mask_block import layer_norm
from tests.layers.test_sequence_layers import _reference_block


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def module_reference(layer, name, x):
    """One module's (B, n, d) output from the layer's weights, in numpy."""
    batch, count, dim = x.shape
    if name == "dot":
        # Every pair i > j, row by row (DLRM's lower triangle).
        pairs = np.stack(
            [np.sum(x[:, i] * x[:, j], -1) for i in range(count) for j in range(i)], axis=1
        )
        dense = layer.dot_projection
        return (pairs @ _np(dense.kernel) + _np(dense.bias)).reshape(batch, count, dim)
    if name == "self_attention":
        return _reference_block(layer.attention, x, np.ones((batch, count), bool))
    if name == "dcn":
        flat = x.reshape(batch, count * dim)
        cross = layer.cross
        w = _np(cross.dense.kernel)
        if cross.projection_dim is not None:
            w = _np(cross.down_proj_dense.kernel) @ w
        return (flat * (flat @ w + _np(cross.dense.bias)) + flat).reshape(batch, count, dim)
    return np.einsum("ij,bjd->bid", _np(layer.mixing), x)


def dhen_reference(layer, x):
    """LN(W_e [M_1(X), ..., M_k(X)] + b_e + X), per vector."""
    ensemble = np.concatenate(
        [module_reference(layer, name, x) for name in layer.interaction_modules], axis=-1
    )
    combined = ensemble @ _np(layer.combine.kernel) + _np(layer.combine.bias)
    norm = layer.norm
    return layer_norm(combined + x, _np(norm.gamma), _np(norm.beta), norm.epsilon)


def _randomized(layer, x, rng, randomize):
    layer(x)
    randomize(layer, rng, scale=0.3)
    if "self_attention" in layer.interaction_modules:
        block = layer.attention
        # Unit-centred LayerNorm scales keep the activations at a realistic size.
        block.attention_norm.gamma.assign(1.0 + rng.normal(0, 0.2, x.shape[-1]).astype("float32"))
        block.ffn_norm.gamma.assign(1.0 + rng.normal(0, 0.2, x.shape[-1]).astype("float32"))
    return layer


@pytest.mark.parametrize("name", INTERACTION_MODULES)
def test_every_module_alone(rng, randomize, name):
    """Each module returns a (B, n, d) list equal to its numpy formula; the layer around it too."""
    x = rng.normal(size=(3, 4, 6)).astype("float32")
    layer = _randomized(DHENLayer([name], num_heads=2), x, rng, randomize)
    outputs = layer.module_outputs(x)
    assert list(outputs) == [name]
    expected = module_reference(layer, name, x.astype(np.float64))
    np.testing.assert_allclose(_np(outputs[name]), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        _np(layer(x)), dhen_reference(layer, x.astype(np.float64)), rtol=1e-5, atol=1e-5
    )


@pytest.mark.multibackend
@pytest.mark.parametrize(
    ("modules", "projection"),
    [(INTERACTION_MODULES, None), (("linear", "dcn", "dot"), 3)],
    ids=["all-four", "three-low-rank-dcn"],
)
def test_ensemble_formula(rng, randomize, modules, projection):
    """LN(W_e [modules, concatenated vector by vector] + b_e + X), in the given module order."""
    x = rng.normal(size=(3, 5, 4)).astype("float32")
    layer = _randomized(
        DHENLayer(modules, num_heads=2, dcn_projection_dim=projection), x, rng, randomize
    )
    assert tuple(layer.combine.kernel.shape) == (len(modules) * 4, 4)
    got = _np(layer(x))
    assert got.shape == x.shape
    np.testing.assert_allclose(
        got, dhen_reference(layer, x.astype(np.float64)), rtol=1e-5, atol=1e-5
    )


def test_stacked_layers_mix_modules(rng, randomize):
    """Two stacked layers are the reference applied twice with each layer's own weights."""
    x = rng.normal(size=(2, 4, 4)).astype("float32")
    first = _randomized(DHENLayer(["dot", "linear"]), x, rng, randomize)
    second = _randomized(DHENLayer(["dot", "linear"]), x, rng, randomize)
    expected = dhen_reference(second, dhen_reference(first, x.astype(np.float64)))
    np.testing.assert_allclose(_np(second(first(x))), expected, rtol=1e-5, atol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="interaction_modules"):
        DHENLayer(["dot", "convolution"])
    with pytest.raises(ValueError, match="interaction_modules"):
        DHENLayer(["dot", "dot"])
    with pytest.raises(ValueError, match="interaction_modules"):
        DHENLayer([])
    with pytest.raises(ValueError, match="at least 2"):
        DHENLayer(["dot"])(np.zeros((2, 1, 4), "float32"))
    with pytest.raises(ValueError, match="multiple of num_heads"):
        DHENLayer(["self_attention"], num_heads=3)(np.zeros((2, 3, 4), "float32"))


def test_config_round_trip(rng, randomize, round_trip):
    x = rng.normal(size=(2, 3, 4)).astype("float32")
    layer = _randomized(
        DHENLayer(["self_attention", "dcn"], num_heads=4, dcn_projection_dim=2), x, rng, randomize
    )
    copy = round_trip(layer, x)
    np.testing.assert_allclose(_np(copy(x)), _np(layer(x)), rtol=1e-6)


def test_saved_in_a_model(tmp_path, rng, randomize):
    inputs = keras.Input((3, 4))
    outputs = DHENLayer()(DHENLayer()(inputs))
    model = keras.Model(inputs, outputs)
    randomize(model, rng, scale=0.3)
    path = tmp_path / "dhen.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = rng.normal(size=(2, 3, 4)).astype("float32")
    np.testing.assert_allclose(_np(loaded(x)), _np(model(x)), rtol=1e-6, atol=1e-6)
