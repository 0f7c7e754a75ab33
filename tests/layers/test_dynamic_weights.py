"""DynamicDense (M2M's meta unit) against numpy."""

import numpy as np
import pytest
from keras import ops

import keras_recsys as kr


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


@pytest.mark.multibackend
def test_dynamic_dense_matches_numpy():
    layer = kr.layers.DynamicDense(3, activation="tanh")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 5)).astype("float32")
    z = rng.normal(size=(4, 2)).astype("float32")
    layer.build(x.shape, z.shape)
    layer.hyper_bias.assign(rng.normal(size=(2, 3)).astype("float32"))
    got = _np(layer(x, z))
    a0, b0 = _np(layer.kernel), _np(layer.bias)
    a, bz = _np(layer.hyper_kernel), _np(layer.hyper_bias)
    want = []
    for i in range(4):
        w = a0 + np.tensordot(z[i], a, axes=1)  # W(z) = A_0 + Σ_k z_k A_k
        b = b0 + z[i] @ bz
        want.append(np.tanh(x[i] @ w + b))
    np.testing.assert_allclose(got, np.stack(want), rtol=1e-5, atol=1e-5)
    kernels, biases = layer.generated_weights(z)
    np.testing.assert_allclose(_np(kernels)[1], a0 + np.tensordot(z[1], a, axes=1), rtol=1e-5)
    np.testing.assert_allclose(_np(biases)[2], b0 + z[2] @ bz, rtol=1e-5)


def test_dynamic_dense_residual_and_config():
    layer = kr.layers.DynamicDense(4, activation="relu", residual=True)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 4)).astype("float32")
    z = rng.normal(size=(3, 2)).astype("float32")
    got = _np(layer(x, z))
    kernels, biases = (_np(v) for v in layer.generated_weights(z))
    want = np.maximum(np.einsum("bi,bio->bo", x, kernels) + biases, 0) + x
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    config = layer.get_config()
    assert kr.layers.DynamicDense.from_config(config).get_config() == config
    with pytest.raises(ValueError, match="residual"):
        kr.layers.DynamicDense(3, residual=True)(x, z)
