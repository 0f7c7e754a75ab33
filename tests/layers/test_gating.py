"""PersonalizedGate (LHUC / PPNet / PEPNet) against numpy."""

import numpy as np
import pytest
from keras import ops

import keras_recsys as kr


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@pytest.mark.multibackend
def test_personalized_gate_matches_numpy():
    gate = kr.layers.PersonalizedGate(units=6, hidden_units=4)
    x = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    got = _np(gate(x))
    w1, b1 = (_np(w) for w in gate.hidden.weights)
    w2, b2 = (_np(w) for w in gate.output_layer.weights)
    want = 2.0 * _sigmoid(np.maximum(x @ w1 + b1, 0) @ w2 + b2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert got.shape == (5, 6) and np.all((got > 0) & (got < 2))


def test_personalized_gate_single_layer_and_scale():
    gate = kr.layers.PersonalizedGate(units=3, hidden_units=0, scale=3.0)
    x = np.random.default_rng(1).normal(size=(4, 2)).astype("float32") * 10
    w, b = None, None
    got = _np(gate(x))
    w, b = (_np(v) for v in gate.output_layer.weights)
    np.testing.assert_allclose(got, 3.0 * _sigmoid(x @ w + b), rtol=1e-5, atol=1e-6)
    # A zero logit is the identity scale 1 when γ = 2.
    one = kr.layers.PersonalizedGate(units=2, hidden_units=0)
    np.testing.assert_allclose(_np(one(np.zeros((1, 2), "float32"))), 1.0)
    config = gate.get_config()
    assert kr.layers.PersonalizedGate.from_config(config).get_config() == config
