"""BilinearFusion (FinalMLP's multi-head bilinear stream fusion) against numpy."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_recsys.layers.interaction.bilinear_fusion import BilinearFusion


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def fusion_reference(o1, o2, w1, b, w2, kernel, num_heads):
    """b + W_1 o_1 + W_2 o_2 + Σ_j o_{1,j}ᵀ W_{3,j} o_{2,j}, head by head and output by
    output; kernel row (j·D_1/k + i)·D_2/k + c holds W_{3,j}[i, c]."""
    d1, d2 = o1.shape[1] // num_heads, o2.shape[1] // num_heads
    units = kernel.shape[1]
    out = o1 @ w1 + b + o2 @ w2
    for j in range(num_heads):
        h1, h2 = o1[:, j * d1 : (j + 1) * d1], o2[:, j * d2 : (j + 1) * d2]
        for u in range(units):
            w3 = np.array(
                [[kernel[(j * d1 + i) * d2 + c, u] for c in range(d2)] for i in range(d1)]
            )
            out[:, u] += np.einsum("bi,il,bl->b", h1, w3, h2)
    return out


def _weights(layer):
    return [_np(w) for w in (*layer.linear_1.weights, *layer.linear_2.weights, layer.bilinear)]


@pytest.mark.multibackend
@pytest.mark.parametrize(
    ("units", "num_heads", "d1", "d2"),
    [(1, 1, 4, 3), (1, 2, 6, 4), (3, 2, 4, 8), (2, 4, 8, 4)],
    ids=["one-head", "two-heads", "three-outputs", "four-heads"],
)
def test_matches_head_by_head_bilinear(rng, randomize, units, num_heads, d1, d2):
    o1 = rng.normal(size=(5, d1)).astype("float32")
    o2 = rng.normal(size=(5, d2)).astype("float32")
    layer = BilinearFusion(units=units, num_heads=num_heads)
    layer(o1, o2)
    randomize(layer, rng)
    expected = fusion_reference(
        o1.astype(np.float64), o2.astype(np.float64), *_weights(layer), num_heads
    )
    got = _np(layer(o1, o2))
    assert got.shape == (5, units)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_one_head_is_a_full_bilinear_form(rng, randomize):
    """With one head every unit of o_1 interacts with every unit of o_2: o_1ᵀ W o_2."""
    o1 = rng.normal(size=(3, 4)).astype("float32")
    o2 = rng.normal(size=(3, 5)).astype("float32")
    layer = BilinearFusion(units=1)
    layer(o1, o2)
    randomize(layer, rng)
    w1, b, w2, kernel = _weights(layer)
    full = kernel.reshape(4, 5)
    expected = o1 @ w1 + b + o2 @ w2 + np.einsum("bi,il,bl->b", o1, full, o2)[:, None]
    np.testing.assert_allclose(_np(layer(o1, o2)), expected, rtol=1e-5, atol=1e-5)


def test_heads_do_not_interact_across(rng):
    """With two heads a unit of head 1 in o_1 never multiplies a unit of head 2 in o_2:
    with zero linear weights, o_1 zero in head 2 and o_2 zero in head 1 give 0."""
    layer = BilinearFusion(units=1, num_heads=2)
    o1 = np.concatenate([rng.normal(size=(2, 3)), np.zeros((2, 3))], axis=1).astype("float32")
    o2 = np.concatenate([np.zeros((2, 2)), rng.normal(size=(2, 2))], axis=1).astype("float32")
    layer(o1, o2)
    for linear in (layer.linear_1.kernel, layer.linear_1.bias, layer.linear_2.kernel):
        linear.assign(np.zeros(linear.shape, "float32"))
    assert np.abs(_np(layer.bilinear)).max() > 0
    np.testing.assert_allclose(_np(layer(o1, o2)), 0.0, atol=1e-7)


def test_weight_shapes_and_errors():
    layer = BilinearFusion(units=2, num_heads=2)
    layer(np.ones((1, 6), "float32"), np.ones((1, 4), "float32"))
    assert tuple(layer.bilinear.shape) == (2 * 3 * 2, 2)
    assert layer.linear_2.bias is None  # one bias b in all
    with pytest.raises(ValueError, match="multiples of num_heads"):
        BilinearFusion(num_heads=4)(np.ones((1, 6), "float32"), np.ones((1, 4), "float32"))
    with pytest.raises(ValueError, match="units >= 1"):
        BilinearFusion(units=0)


def test_config_round_trip(rng, randomize, round_trip):
    o1, o2 = rng.normal(size=(3, 4)).astype("float32"), rng.normal(size=(3, 2)).astype("float32")
    layer = BilinearFusion(units=2, num_heads=2)
    layer(o1, o2)
    randomize(layer, rng)
    copy = round_trip(layer, o1, o2)
    np.testing.assert_allclose(_np(copy(o1, o2)), _np(layer(o1, o2)), rtol=1e-6)


def test_saved_in_a_model(tmp_path, rng, randomize):
    a, b = keras.Input((4,)), keras.Input((6,))
    model = keras.Model([a, b], BilinearFusion(units=2, num_heads=2)(a, b))
    randomize(model, rng)
    path = tmp_path / "fusion.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = [rng.normal(size=(3, 4)).astype("float32"), rng.normal(size=(3, 6)).astype("float32")]
    np.testing.assert_allclose(_np(loaded(x)), _np(model(x)), rtol=1e-6)
