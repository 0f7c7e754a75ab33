"""GatedCross (GDCN) against its numpy formula and against DCNv2's cross layer."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras_rs.layers import FeatureCross

from keras_recsys.layers.interaction.gated_cross import GatedCross


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def gated_cross_reference(layer, x0, x):
    """x0 ⊙ (x W_c + b) ⊙ σ(x W_g) + x, from the layer's weights."""
    cross = x @ _np(layer.cross.kernel) + _np(layer.cross.bias)
    gate = 1.0 / (1.0 + np.exp(-(x @ _np(layer.gate.kernel))))
    return x0 * cross * gate + x


@pytest.mark.multibackend
@pytest.mark.parametrize("second_input", [False, True], ids=["first-layer", "later-layer"])
def test_gated_cross_formula(rng, randomize, second_input):
    x0 = rng.normal(size=(5, 6)).astype("float32")
    x = rng.normal(size=(5, 6)).astype("float32") if second_input else x0
    layer = GatedCross()
    layer(x0, x)
    randomize(layer, rng)
    # W_c, b and a bias-free W_g, each (D, D) / (D,).
    assert [tuple(w.shape) for w in layer.weights] == [(6, 6), (6,), (6, 6)]
    expected = gated_cross_reference(layer, x0.astype(np.float64), x.astype(np.float64))
    got = _np(layer(x0, x if second_input else None))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_a_half_open_gate_halves_the_dcnv2_cross_term(rng, randomize):
    """With W_g = 0 the gate is 1/2 everywhere: the layer is x + (DCNv2(x0, x) − x) / 2 for a
    keras-rs FeatureCross holding the same W_c and b."""
    x0 = rng.normal(size=(4, 5)).astype("float32")
    x = rng.normal(size=(4, 5)).astype("float32")
    layer = GatedCross()
    layer(x0, x)
    randomize(layer, rng)
    layer.gate.kernel.assign(np.zeros((5, 5), "float32"))
    dcn = FeatureCross()
    dcn(x0, x)
    dcn.set_weights([_np(layer.cross.kernel), _np(layer.cross.bias)])
    expected = x + (_np(dcn(x0, x)) - x) / 2.0
    np.testing.assert_allclose(_np(layer(x0, x)), expected, rtol=1e-5, atol=1e-6)


def test_config_round_trip(rng, randomize, round_trip):
    x0 = rng.normal(size=(3, 4)).astype("float32")
    layer = GatedCross(kernel_initializer="he_normal", kernel_regularizer="l2")
    layer(x0)
    randomize(layer, rng)
    copy = round_trip(layer, x0)
    np.testing.assert_allclose(_np(copy(x0)), _np(layer(x0)), rtol=1e-6)
    assert len(copy.losses) == 2  # the regularizer on W_c and on W_g


def test_stacked_layers_saved_in_a_model(tmp_path, rng, randomize):
    inputs = keras.Input((5,))
    x1 = GatedCross()(inputs)
    outputs = GatedCross()(inputs, x1)
    model = keras.Model(inputs, outputs)
    randomize(model, rng)
    path = tmp_path / "gated_cross.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = rng.normal(size=(3, 5)).astype("float32")
    np.testing.assert_allclose(_np(loaded(x)), _np(model(x)), rtol=1e-6)
