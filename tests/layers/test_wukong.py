"""LinearCompressBlock, FactorizationMachineBlock and WuKongLayer (WuKong) against numpy."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_recsys.layers.interaction.wukong import (
    FactorizationMachineBlock,
    LinearCompressBlock,
    WuKongLayer,
)
from tests.layers.test_mask_block import layer_norm


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def lcb_reference(block, x):
    """W X: output embedding o = Σ_n W[o, n] x_n."""
    return np.einsum("on,bnd->bod", _np(block.kernel), x)


def fmb_reference(block, x):
    """reshape(MLP(LN(flatten((X Xᵀ) Y))), (n_F, d)): the full pairwise dot-product matrix
    first (the O(n²d) order the block avoids), MLP with ReLU hidden layers and a linear last one."""
    batch, _, dim = x.shape
    interactions = np.einsum("bnd,bmd->bnm", x, x) @ _np(block.projection)  # (B, n, k)
    norm = block.norm
    h = layer_norm(interactions.reshape(batch, -1), _np(norm.gamma), _np(norm.beta), norm.epsilon)
    dense_layers = block.mlp.dense_layers
    for i, dense in enumerate(dense_layers):
        h = h @ _np(dense.kernel) + _np(dense.bias)
        if i < len(dense_layers) - 1:
            h = np.maximum(h, 0.0)
    return h.reshape(batch, block.num_embeddings, dim)


def wukong_reference(layer, x):
    """LN([FMB(X), LCB(X)] + R(X)) per embedding, R the identity or a linear map of embeddings."""
    out = np.concatenate([fmb_reference(layer.fmb, x), lcb_reference(layer.lcb, x)], axis=1)
    shortcut = x if layer.residual is None else lcb_reference(layer.residual, x)
    norm = layer.norm
    return layer_norm(out + shortcut, _np(norm.gamma), _np(norm.beta), norm.epsilon)


def test_linear_compress_block_formula(rng, randomize):
    x = rng.normal(size=(3, 5, 4)).astype("float32")
    block = LinearCompressBlock(num_embeddings=2)
    block(x)
    randomize(block, rng)
    assert tuple(block.kernel.shape) == (2, 5)
    np.testing.assert_allclose(
        _np(block(x)), lcb_reference(block, x.astype(np.float64)), rtol=1e-5, atol=1e-6
    )


@pytest.mark.multibackend
@pytest.mark.parametrize(("rank", "hidden"), [(3, (8,)), (2, ())], ids=["mlp", "linear-only"])
def test_factorization_machine_block_formula(rng, randomize, rank, hidden):
    x = rng.normal(size=(4, 5, 3)).astype("float32")
    block = FactorizationMachineBlock(num_embeddings=6, rank=rank, hidden_units=hidden)
    out = block(x)
    assert tuple(out.shape) == (4, 6, 3)
    randomize(block, rng, scale=0.3)
    # The low-rank product X (Xᵀ Y) equals (X Xᵀ) Y.
    full = np.einsum("bnd,bmd->bnm", x, x) @ _np(block.projection)
    np.testing.assert_allclose(_np(block.interactions(x)), full, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        _np(block(x)), fmb_reference(block, x.astype(np.float64)), rtol=1e-5, atol=1e-5
    )


@pytest.mark.multibackend
@pytest.mark.parametrize(("fmb", "lcb"), [(3, 2), (4, 1)], ids=["projected-residual", "identity"])
def test_wukong_layer_formula(rng, randomize, fmb, lcb):
    """5 embeddings in; n_F + n_L = 5 keeps X as the shortcut, any other count projects it."""
    x = rng.normal(size=(3, 5, 4)).astype("float32")
    layer = WuKongLayer(fmb, lcb, fmb_rank=2, fmb_hidden_units=(6,))
    out = layer(x)
    assert tuple(out.shape) == (3, fmb + lcb, 4)
    assert (layer.residual is None) == (fmb + lcb == 5)
    randomize(layer, rng, scale=0.3)
    np.testing.assert_allclose(
        _np(layer(x)), wukong_reference(layer, x.astype(np.float64)), rtol=1e-5, atol=1e-5
    )


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_embeddings"):
        LinearCompressBlock(0)
    with pytest.raises(ValueError, match="rank"):
        FactorizationMachineBlock(4, rank=0)
    with pytest.raises(ValueError, match=r"\(B, n, d\)"):
        WuKongLayer(2, 2)(np.zeros((2, 8), "float32"))


def test_config_round_trip(rng, randomize, round_trip):
    x = rng.normal(size=(2, 4, 3)).astype("float32")
    layer = WuKongLayer(3, 2, fmb_rank=2, fmb_hidden_units=(5, 4), activation="gelu")
    layer(x)
    randomize(layer, rng, scale=0.3)
    copy = round_trip(layer, x)
    np.testing.assert_allclose(_np(copy(x)), _np(layer(x)), rtol=1e-6)


def test_saved_in_a_model(tmp_path, rng, randomize):
    inputs = keras.Input((4, 3))
    x = WuKongLayer(3, 3, fmb_rank=2, fmb_hidden_units=(5,))(inputs)
    outputs = WuKongLayer(2, 4, fmb_rank=2, fmb_hidden_units=(5,))(x)
    model = keras.Model(inputs, outputs)
    randomize(model, rng, scale=0.3)
    path = tmp_path / "wukong.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = rng.normal(size=(2, 4, 3)).astype("float32")
    np.testing.assert_allclose(_np(loaded(x)), _np(model(x)), rtol=1e-6, atol=1e-6)
