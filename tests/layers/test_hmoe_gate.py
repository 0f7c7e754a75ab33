"""HMoEGate against numpy, and its stop-gradient on other scenarios' towers."""

import numpy as np
import pytest
from keras import ops

import keras_recsys as kr
from tests.conftest import requires_tensorflow_backend

IDS = np.array([2, 4, 3, 1], dtype="int32")  # 3 towers; the last example is OOV


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4, 5)).astype("float32")
    scores = rng.normal(size=(4, 3, 2)).astype("float32")
    return x, scores


@pytest.mark.multibackend
def test_hmoe_gate_matches_numpy():
    gate = kr.layers.HMoEGate(num_scenarios=5)
    x, scores = _data()
    got = _np(gate(x, scores, IDS))
    w, b = (_np(v) for v in gate.gate.weights)
    logits = x @ w + b
    g = np.exp(logits - logits.max(-1, keepdims=True))
    g /= g.sum(-1, keepdims=True)
    np.testing.assert_allclose(got, np.einsum("bs,bsu->bu", g, scores), rtol=1e-5, atol=1e-6)
    config = gate.get_config()
    assert kr.layers.HMoEGate.from_config(config).get_config() == config


@requires_tensorflow_backend
def test_hmoe_gate_passes_gradient_to_the_own_tower_only():
    import tensorflow as tf

    gate = kr.layers.HMoEGate(num_scenarios=5)
    x, scores = _data(1)
    scores = tf.constant(scores)
    with tf.GradientTape() as tape:
        tape.watch(scores)
        out = gate(x, scores, IDS)
        loss = tf.reduce_sum(out)
    grad = tape.gradient(loss, scores).numpy()  # (B, S, U)
    g = _np(gate.gate_weights(x))
    for b, scenario in enumerate(IDS):
        for s in range(3):
            own = scenario - 2 == s
            want = g[b, s] if own else 0.0
            np.testing.assert_allclose(grad[b, s], want, rtol=1e-5, atol=1e-7)
    assert np.all(grad[3] == 0)  # an OOV example trains no tower
