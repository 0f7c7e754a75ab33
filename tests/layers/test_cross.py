"""VectorCross (DCN v1) and MixtureOfLowRankCross (DCN-Mix) against numpy formulas."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_recsys.layers import MixtureOfLowRankCross, VectorCross


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("second_input", [False, True], ids=["first-layer", "later-layer"])
def test_vector_cross_formula(rng, randomize, second_input):
    """x_{l+1} = x0 · (x_l · w) + b + x_l, with x_l = x0 for the first layer."""
    x0 = rng.normal(size=(5, 6)).astype("float32")
    x = rng.normal(size=(5, 6)).astype("float32") if second_input else x0
    layer = VectorCross()
    layer(x0, x)
    randomize(layer, rng)
    w, b = _np(layer.kernel), _np(layer.bias)
    expected = x0 * (x @ w)[:, None] + b + x
    np.testing.assert_allclose(_np(layer(x0, x if second_input else None)), expected, rtol=1e-5)


_ACTIVATIONS = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0.0), None: lambda z: z}


def _mixture_reference(x0, x, v, c, u, bias, gate, g):
    """Σ_i softmax(x W_g)_i · x0 ⊙ (U_i g(C_i g(V_iᵀ x)) + b_i) + x, expert by expert."""
    logits = x @ gate
    gates = np.exp(logits - logits.max(-1, keepdims=True))
    gates /= gates.sum(-1, keepdims=True)
    out = x.copy()
    for i in range(v.shape[0]):
        low = g(np.einsum("bd,dr->br", x, v[i]))
        low = g(np.einsum("br,rs->bs", low, c[i]))
        expert = x0 * (np.einsum("br,rd->bd", low, u[i]) + bias[i])
        out += gates[:, i : i + 1] * expert
    return out


@pytest.mark.parametrize("activation", ["tanh", "relu", None])
@pytest.mark.parametrize(("rank", "experts"), [(2, 3), (4, 2)])
def test_mixture_of_low_rank_cross_formula(rng, randomize, activation, rank, experts):
    """The layer equals the documented gated mixture of low-rank experts, using its weights."""
    x0 = rng.normal(size=(4, 6)).astype("float32")
    x = rng.normal(size=(4, 6)).astype("float32")
    layer = MixtureOfLowRankCross(projection_dim=rank, num_experts=experts, activation=activation)
    layer(x0, x)
    randomize(layer, rng)
    weights = [
        _np(w).astype(np.float64) for w in (layer.v, layer.c, layer.u, layer.bias, layer.gate)
    ]
    expected = _mixture_reference(
        x0.astype(np.float64), x.astype(np.float64), *weights, _ACTIVATIONS[activation]
    )
    np.testing.assert_allclose(_np(layer(x0, x)), expected, rtol=1e-4, atol=1e-5)
    first = _mixture_reference(
        *(a.astype(np.float64) for a in (x0, x0)), *weights, _ACTIVATIONS[activation]
    )
    np.testing.assert_allclose(_np(layer(x0)), first, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "make",
    [
        VectorCross,
        lambda: MixtureOfLowRankCross(projection_dim=3, num_experts=2, activation="relu"),
    ],
    ids=["vector", "mixture"],
)
def test_config_round_trip(rng, randomize, round_trip, make):
    """Deserialized from config with copied weights, the layer gives the same outputs."""
    x0 = rng.normal(size=(3, 5)).astype("float32")
    layer = make()
    layer(x0)
    randomize(layer, rng)
    copy = round_trip(layer, x0)
    np.testing.assert_allclose(_np(copy(x0)), _np(layer(x0)), rtol=1e-6)


def test_saved_in_a_model(tmp_path, rng, randomize):
    """Two stacked cross layers save in a .keras model and load with the same outputs."""
    inputs = keras.Input((5,))
    x1 = MixtureOfLowRankCross(projection_dim=2, num_experts=2)(inputs)
    outputs = VectorCross()(inputs, x1)
    model = keras.Model(inputs, outputs)
    randomize(model, rng)
    path = tmp_path / "cross.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = rng.normal(size=(3, 5)).astype("float32")
    np.testing.assert_allclose(_np(loaded(x)), _np(model(x)), rtol=1e-6)
