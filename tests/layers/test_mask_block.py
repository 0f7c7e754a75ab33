"""InstanceGuidedMask, MaskBlock and MaskNetBlocks (MaskNet) against numpy formulas."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_recsys.layers.interaction.mask_block import (
    InstanceGuidedMask,
    MaskBlock,
    MaskNetBlocks,
)


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def mask_reference(mask, v):
    """W_2 · ReLU(W_1 v + b_1) + b_2 from an `InstanceGuidedMask`'s weights."""
    w1, b1 = _np(mask.aggregation.kernel), _np(mask.aggregation.bias)
    w2, b2 = _np(mask.projection.kernel), _np(mask.projection.bias)
    return np.maximum(v @ w1 + b1, 0.0) @ w2 + b2


def mask_block_reference(block, hidden, instance):
    """ReLU(LN(W · (V_mask ⊙ h))), V_mask from the instance, with the block's weights."""
    masked = mask_reference(block.mask, instance) * hidden
    norm = block.norm
    out = layer_norm(
        masked @ _np(block.dense.kernel), _np(norm.gamma), _np(norm.beta), norm.epsilon
    )
    return np.maximum(out, 0.0)


def mask_net_reference(layer, fields):
    """LN_EMB (each field on its own d units) then the blocks, in parallel or in series."""
    batch, num_fields, dim = fields.shape
    instance = fields.reshape(batch, num_fields * dim)
    norm = layer.embedding_norm
    normalized = layer_norm(fields, _np(norm.gamma), _np(norm.beta), norm.epsilon)
    normalized = normalized.reshape(batch, num_fields * dim)
    if layer.structure == "parallel":
        return np.hstack([mask_block_reference(b, normalized, instance) for b in layer.blocks])
    hidden = normalized
    for block in layer.blocks:
        hidden = mask_block_reference(block, hidden, instance)
    return hidden


@pytest.mark.parametrize(
    ("width", "ratio", "aggregation"), [(6, 2.0, 12), (5, 1.5, 8), (3, 0.1, 1)]
)
def test_instance_guided_mask_formula_and_aggregation_width(
    rng, randomize, width, ratio, aggregation
):
    """V_mask = W_2 ReLU(W_1 v + b_1) + b_2, aggregation width = round(ratio · width) >= 1."""
    v = rng.normal(size=(4, width)).astype("float32")
    mask = InstanceGuidedMask(units=7, reduction_ratio=ratio)
    mask(v)
    randomize(mask, rng)
    assert mask.aggregation.units == aggregation
    assert tuple(mask.projection.kernel.shape) == (aggregation, 7)
    np.testing.assert_allclose(
        _np(mask(v)), mask_reference(mask, v.astype(np.float64)), rtol=1e-5, atol=1e-5
    )


@pytest.mark.multibackend
def test_mask_block_formula(rng, randomize):
    """ReLU(LN(W (V_mask ⊙ h))): the mask has h's width and reads the instance, W has no bias."""
    hidden = rng.normal(size=(5, 6)).astype("float32")
    instance = rng.normal(size=(5, 10)).astype("float32")
    block = MaskBlock(units=4, reduction_ratio=2.0)
    out = block(hidden, instance)
    assert tuple(out.shape) == (5, 4)
    randomize(block, rng)
    assert tuple(block.mask.aggregation.kernel.shape) == (10, 20)
    assert tuple(block.mask.projection.kernel.shape) == (20, 6)
    assert not block.dense.use_bias
    expected = mask_block_reference(block, hidden.astype(np.float64), instance.astype(np.float64))
    np.testing.assert_allclose(_np(block(hidden, instance)), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.multibackend
@pytest.mark.parametrize("structure", ["parallel", "serial"])
def test_mask_net_blocks_formula(rng, randomize, structure):
    """Parallel: [block_k(LN_EMB(V_emb), V_emb)]_k; serial: block_k(h_{k−1}, V_emb)."""
    fields = rng.normal(size=(4, 3, 5)).astype("float32")
    layer = MaskNetBlocks(num_blocks=3, units=6, structure=structure, reduction_ratio=1.5)
    layer(fields)
    randomize(layer, rng)
    got = _np(layer(fields))
    assert got.shape == (4, 18 if structure == "parallel" else 6)
    assert layer.output_width() == got.shape[1]
    np.testing.assert_allclose(
        got, mask_net_reference(layer, fields.astype(np.float64)), rtol=1e-5, atol=1e-5
    )


def test_every_block_has_its_own_mask_and_reads_the_raw_embeddings(rng):
    """Masks are per block (different weights); each mask reads V_emb, not the normalized fields:
    scaling one field changes V_emb but not LN_EMB, and the output must change."""
    fields = rng.normal(size=(4, 3, 5)).astype("float32")
    layer = MaskNetBlocks(num_blocks=2, units=4, structure="serial")
    layer(fields)
    first, second = (b.mask.aggregation.kernel for b in layer.blocks)
    assert not np.allclose(_np(first)[:, :4], _np(second)[:, :4])
    scaled = fields.copy()
    scaled[:, 1] *= 3.0  # a positive scale: LN(3 e) = LN(e) up to epsilon
    assert not np.allclose(_np(layer(scaled)), _np(layer(fields)), atol=1e-4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="structure"):
        MaskNetBlocks(structure="stacked")
    with pytest.raises(ValueError, match="num_blocks"):
        MaskNetBlocks(num_blocks=0)
    with pytest.raises(ValueError, match="reduction_ratio"):
        InstanceGuidedMask(4, reduction_ratio=0.0)
    with pytest.raises(ValueError, match=r"\(B, F, d\)"):
        MaskNetBlocks()(np.zeros((2, 6), "float32"))


@pytest.mark.parametrize(
    "make",
    [
        lambda: MaskNetBlocks(num_blocks=2, units=3, structure="parallel", reduction_ratio=1.0),
        lambda: MaskNetBlocks(num_blocks=2, units=3, structure="serial", activation=None),
    ],
    ids=["parallel", "serial"],
)
def test_config_round_trip(rng, randomize, round_trip, make):
    fields = rng.normal(size=(3, 4, 2)).astype("float32")
    layer = make()
    layer(fields)
    randomize(layer, rng)
    copy = round_trip(layer, fields)
    np.testing.assert_allclose(_np(copy(fields)), _np(layer(fields)), rtol=1e-6)


def test_saved_in_a_model(tmp_path, rng, randomize):
    """A MaskBlock called on two inputs, after MaskNetBlocks, saves and loads in a .keras model."""
    inputs = keras.Input((3, 4))
    blocks = MaskNetBlocks(num_blocks=2, units=5)(inputs)
    flat = keras.layers.Flatten()(inputs)
    outputs = MaskBlock(units=2)(blocks, flat)
    model = keras.Model(inputs, outputs)
    randomize(model, rng)
    path = tmp_path / "mask.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = rng.normal(size=(3, 3, 4)).astype("float32")
    np.testing.assert_allclose(_np(loaded(x)), _np(model(x)), rtol=1e-6)
