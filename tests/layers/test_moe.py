"""ExpertGate and MixtureOfExperts against numpy, and their structure."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_recsys as kr


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def mlp_numpy(mlp, x):
    """relu(W_l h + b_l) layer after layer, from the layer's own weights."""
    for dense in mlp.dense_layers:
        x = np.maximum(x @ _np(dense.kernel) + _np(dense.bias), 0.0)
    return x


@pytest.mark.multibackend
def test_expert_gate_is_a_bias_free_softmax():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 7)).astype("float32")
    gate = kr.layers.ExpertGate(5)
    g = _np(gate(x))
    assert gate.dense.bias is None
    np.testing.assert_allclose(g, softmax(x @ _np(gate.dense.kernel)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g.sum(-1), 1.0, rtol=1e-6)
    assert (g > 0).all()


def test_expert_gate_with_bias():
    x = np.random.default_rng(1).normal(size=(4, 3)).astype("float32")
    gate = kr.layers.ExpertGate(2, use_bias=True)
    gate.build(x.shape)
    gate.dense.bias.assign([1.0, -1.0])
    expected = softmax(x @ _np(gate.dense.kernel) + np.array([1.0, -1.0]))
    np.testing.assert_allclose(_np(gate(x)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.multibackend
def test_mixture_of_experts_matches_numpy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(32, 10)).astype("float32")
    moe = kr.layers.MixtureOfExperts(num_experts=3, expert_units=[8, 6], num_gates=2)
    outputs, gates = moe(x, return_gates=True)
    experts = np.stack([mlp_numpy(e, x) for e in moe.experts], axis=1)  # (B, n, d)
    for k in range(2):
        g = softmax(x @ _np(moe.gates[k].dense.kernel))
        np.testing.assert_allclose(_np(gates[k]), g, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(_np(gates[k]).sum(-1), 1.0, rtol=1e-6)
        expected = (g[:, :, None] * experts).sum(1)
        np.testing.assert_allclose(_np(outputs[k]), expected, rtol=1e-4, atol=1e-5)
        assert outputs[k].shape == (32, 6)


def test_mixture_of_experts_config_round_trip():
    x = np.random.default_rng(3).normal(size=(5, 4)).astype("float32")
    moe = kr.layers.MixtureOfExperts(4, [8], num_gates=3, dropout=0.1, gate_use_bias=True)
    first = moe(x)
    clone = kr.layers.MixtureOfExperts.from_config(moe.get_config())
    clone.build(x.shape)
    clone.set_weights(moe.get_weights())
    for a, b in zip(first, clone(x)):
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-6)
    assert len(clone.get_weights()) == len(moe.get_weights())


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="num_experts"):
        kr.layers.ExpertGate(0)
    with pytest.raises(ValueError, match="expert layer"):
        kr.layers.MixtureOfExperts(2, [])
    with pytest.raises(ValueError, match="num_gates"):
        kr.layers.MixtureOfExperts(2, [4], num_gates=0)
    assert isinstance(kr.layers.ExpertGate(2), keras.layers.Layer)
