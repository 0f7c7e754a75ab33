"""CompressedInteractionNetwork (xDeepFM's CIN) against the paper's formula, in numpy."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_recsys.layers.interaction.cin import CompressedInteractionNetwork

_ACTIVATIONS = {None: lambda z: z, "relu": lambda z: np.maximum(z, 0.0), "tanh": np.tanh}


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def cin_reference(x0, kernels, activation=None, split_half=False):
    """p+ from X^k_h = act(Σ_i Σ_j W^{k,h}_{ij} (X^{k−1}_i ⊙ X^0_j)), by loops over h, i, j.

    kernels[k] is (H_{k−1}·F, H_k), row i·F + j holding W^{k,·}_{ij}.
    """
    g = _ACTIVATIONS[activation]
    batch, num_fields, dim = x0.shape
    x, pooled = x0, []
    for k, kernel in enumerate(kernels):
        units = kernel.shape[1]
        maps = np.zeros((batch, units, dim))
        for h in range(units):
            for i in range(x.shape[1]):
                for j in range(num_fields):
                    maps[:, h] += kernel[i * num_fields + j, h] * x[:, i] * x0[:, j]
        maps = g(maps)
        if split_half and k < len(kernels) - 1:
            x, kept = maps[:, : units // 2], maps[:, units // 2 :]
        else:
            x = kept = maps
        pooled.append(kept.sum(axis=-1))
    return np.concatenate(pooled, axis=-1)


@pytest.mark.multibackend
@pytest.mark.parametrize(
    ("layer_units", "activation", "split_half"),
    [
        ([3], None, False),
        ([4, 3], None, False),
        ([4, 2, 3], "tanh", False),
        ([4, 6, 3], None, True),
    ],
    ids=["one-layer", "two-layers", "three-layers-tanh", "split-half"],
)
def test_matches_the_formula(rng, randomize, layer_units, activation, split_half):
    """The layer's p+ equals the loop-by-loop CIN with its own weights."""
    x0 = rng.normal(size=(5, 4, 3)).astype("float32")
    layer = CompressedInteractionNetwork(layer_units, activation=activation, split_half=split_half)
    layer(x0)
    randomize(layer, rng, scale=0.3)
    expected = cin_reference(
        x0.astype(np.float64), [_np(k) for k in layer.kernels], activation, split_half
    )
    got = _np(layer(x0))
    assert got.shape == (5, layer.output_width()) == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_output_width_and_kernel_shapes():
    """Layer k's kernel is (maps it reads · F, H_k); split_half pools half of the
    non-final layers' maps and reads half of them in the next layer."""
    x0 = np.ones((2, 5, 3), "float32")
    full = CompressedInteractionNetwork([4, 6, 2])
    assert tuple(full(x0).shape) == (2, 12)
    assert [tuple(k.shape) for k in full.kernels] == [(25, 4), (20, 6), (30, 2)]
    split = CompressedInteractionNetwork([4, 6, 2], split_half=True)
    assert tuple(split(x0).shape) == (2, 2 + 3 + 2)
    assert [tuple(k.shape) for k in split.kernels] == [(25, 4), (10, 6), (15, 2)]


def test_first_layer_is_a_weighted_sum_of_pairwise_products(rng):
    """With one map whose weights are all 1, p^1 = Σ_{i,j} <e_i, e_j>: twice the FM
    interaction plus every field's squared norm (a check independent of the loops)."""
    x0 = rng.normal(size=(3, 4, 5)).astype("float32")
    layer = CompressedInteractionNetwork([1])
    layer(x0)
    layer.set_weights([np.ones((16, 1), "float32")])
    total = x0.astype(np.float64).sum(axis=1)
    np.testing.assert_allclose(_np(layer(x0))[:, 0], (total**2).sum(-1), rtol=1e-5)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="even"):
        CompressedInteractionNetwork([3, 4], split_half=True)
    with pytest.raises(ValueError, match="at least one layer"):
        CompressedInteractionNetwork([])
    with pytest.raises(ValueError, match=r"\(B, F, d\)"):
        CompressedInteractionNetwork([2])(np.ones((2, 6), "float32"))


def test_config_round_trip(rng, randomize, round_trip):
    """Deserialized from its config with copied weights, the layer gives the same p+."""
    x0 = rng.normal(size=(3, 4, 2)).astype("float32")
    layer = CompressedInteractionNetwork([4, 2], activation="relu", split_half=True)
    layer(x0)
    randomize(layer, rng)
    copy = round_trip(layer, x0)
    np.testing.assert_allclose(_np(copy(x0)), _np(layer(x0)), rtol=1e-6)


def test_saved_in_a_model(tmp_path, rng, randomize):
    inputs = keras.Input((4, 3))
    model = keras.Model(inputs, CompressedInteractionNetwork([3, 2])(inputs))
    randomize(model, rng)
    path = tmp_path / "cin.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x0 = rng.normal(size=(2, 4, 3)).astype("float32")
    np.testing.assert_allclose(_np(loaded(x0)), _np(model(x0)), rtol=1e-6)
