"""PositionEmbedding and TransformerBlock against numpy, masking, causality, dtypes, configs."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from keras_recsys.layers.sequence import PositionEmbedding, TransformerBlock


def _np(x):
    return keras.ops.convert_to_numpy(x).astype(np.float64)


# Rows: full, front-padded (the latest items at the end), fully padded (empty history).
_MASK = np.array(
    [[1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0]],
    dtype=bool,
)


def _layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


_ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0.0),
    "gelu": np.vectorize(lambda z: 0.5 * z * (1.0 + math.erf(z / math.sqrt(2.0)))),
}


def _reference_block(block, x, mask):
    """The documented block in numpy, from the layer's own weights (float64)."""
    att = block.attention
    wq, bq = _np(att.query_dense.kernel), _np(att.query_dense.bias)  # (d, H, k), (H, k)
    wk, bk = _np(att.key_dense.kernel), _np(att.key_dense.bias)
    wv, bv = _np(att.value_dense.kernel), _np(att.value_dense.bias)
    wo, bo = _np(att.output_dense.kernel), _np(att.output_dense.bias)  # (H, k, d), (d,)
    eps = block.layer_norm_epsilon
    norm1 = (_np(block.attention_norm.gamma), _np(block.attention_norm.beta), eps)
    norm2 = (_np(block.ffn_norm.gamma), _np(block.ffn_norm.beta), eps)
    w1, b1 = _np(block.ffn_inner.kernel), _np(block.ffn_inner.bias)
    w2, b2 = _np(block.ffn_outer.kernel), _np(block.ffn_outer.bias)
    act = _ACTIVATIONS[keras.activations.serialize(block.activation)]

    length = x.shape[1]
    i, j = np.arange(length)[:, None], np.arange(length)[None, :]
    allowed = mask[:, None, :] & ((j <= i) if block.causal else True)
    allowed = allowed | (i == j)  # every query sees itself

    def attention(h):
        q = np.einsum("bld,dhk->blhk", h, wq) + bq
        k = np.einsum("bld,dhk->blhk", h, wk) + bk
        v = np.einsum("bld,dhk->blhk", h, wv) + bv
        scores = np.einsum("bqhk,bshk->bhqs", q, k) / math.sqrt(wq.shape[-1])
        scores = np.where(allowed[:, None], scores, -np.inf)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        out = np.einsum("bhqs,bshk->bqhk", probs, v)
        return np.einsum("bqhk,hkd->bqd", out, wo) + bo

    def ffn(h):
        return act(h @ w1 + b1) @ w2 + b2

    if block.norm_first:
        x = x + attention(_layer_norm(x, *norm1))
        x = x + ffn(_layer_norm(x, *norm2))
    else:
        x = _layer_norm(x + attention(x), *norm1)
        x = _layer_norm(x + ffn(x), *norm2)
    return x * mask[..., None]


_VARIANTS = {
    "sasrec": dict(causal=True, norm_first=True, activation="relu"),
    "bidirectional-prenorm": dict(causal=False, norm_first=True, activation="relu"),
    "bert4rec": dict(causal=False, norm_first=False, activation="gelu", intermediate_dim=16),
    "causal-postnorm": dict(causal=True, norm_first=False, activation="gelu"),
}


@pytest.mark.multibackend
@pytest.mark.parametrize("variant", list(_VARIANTS))
def test_transformer_block_matches_numpy(rng, randomize, variant):
    """Padded and unpadded rows, causal or not, pre- or post-norm: the numpy block to 1e-5."""
    x = rng.normal(size=(3, 6, 8)).astype("float32")
    block = TransformerBlock(num_heads=2, **_VARIANTS[variant])
    block(x, mask=_MASK)
    randomize(block, rng)
    # Unit-centred LayerNorm scales keep the activations at a realistic size.
    block.attention_norm.gamma.assign(1.0 + rng.normal(0, 0.2, 8).astype("float32"))
    block.ffn_norm.gamma.assign(1.0 + rng.normal(0, 0.2, 8).astype("float32"))
    out = _np(block(x, mask=_MASK))
    expected = _reference_block(block, x.astype(np.float64), _MASK)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=0)
    assert (out[~_MASK] == 0).all()


@pytest.mark.multibackend
def test_transformer_block_without_mask_reads_every_position(rng):
    x = rng.normal(size=(2, 5, 8)).astype("float32")
    block = TransformerBlock(num_heads=4)
    full = np.ones((2, 5), dtype=bool)
    np.testing.assert_allclose(_np(block(x)), _np(block(x, mask=full)), atol=1e-6)


@pytest.mark.multibackend
def test_causal_block_ignores_the_future(rng):
    """Changing the item at position t changes no output before t."""
    x = rng.normal(size=(2, 6, 8)).astype("float32")
    mask = np.ones((2, 6), dtype=bool)
    block = TransformerBlock(num_heads=2, causal=True)
    before = _np(block(x, mask=mask))
    changed = x.copy()
    changed[:, 4] = rng.normal(size=(2, 8))
    after = _np(block(changed, mask=mask))
    np.testing.assert_allclose(after[:, :4], before[:, :4], atol=1e-6)
    assert np.abs(after[:, 4:] - before[:, 4:]).max() > 1e-3

    # Without the causal mask the past does see the change.
    bidirectional = TransformerBlock(num_heads=2, causal=False)
    before = _np(bidirectional(x, mask=mask))
    after = _np(bidirectional(changed, mask=mask))
    assert np.abs(after[:, :4] - before[:, :4]).max() > 1e-3


@pytest.mark.multibackend
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("norm_first", [True, False])
def test_padding_never_leaks(rng, causal, norm_first):
    """Whatever sits at padded positions, real positions' outputs stay the same; padded are 0."""
    x = rng.normal(size=(3, 6, 8)).astype("float32")
    block = TransformerBlock(num_heads=2, causal=causal, norm_first=norm_first)
    before = _np(block(x, mask=_MASK))
    noisy = x.copy()
    noisy[~_MASK] = rng.normal(0, 10.0, size=(int((~_MASK).sum()), 8))
    after = _np(block(noisy, mask=_MASK))
    np.testing.assert_allclose(after[_MASK], before[_MASK], atol=1e-5)
    assert (after[~_MASK] == 0).all() and np.isfinite(after).all()


@pytest.mark.multibackend
def test_stacked_blocks_with_keras_masks_stay_finite(rng):
    """A block's output carries its mask; the next block must not starve padded queries (NaN)."""
    x = rng.normal(size=(3, 6, 8)).astype("float32")
    first = TransformerBlock(num_heads=2, causal=True)
    second = TransformerBlock(num_heads=2, causal=True)
    implicit = _np(second(first(x, mask=_MASK)))
    explicit = _np(second(keras.ops.convert_to_tensor(_np(first(x, mask=_MASK))), mask=_MASK))
    assert np.isfinite(implicit).all()
    np.testing.assert_allclose(implicit, explicit, atol=1e-5)


def test_empty_history_is_finite_in_training(rng):
    x = rng.normal(size=(3, 6, 8)).astype("float32")
    block = TransformerBlock(num_heads=2, dropout=0.3, causal=True)
    out = _np(block(x, mask=_MASK, training=True))
    assert np.isfinite(out).all() and (out[2] == 0).all()


def test_transformer_block_checks_heads():
    with pytest.raises(ValueError, match="multiple of num_heads"):
        TransformerBlock(num_heads=3)(np.zeros((1, 2, 8), "float32"))


@pytest.mark.multibackend
def test_position_embedding_adds_the_latest_rows(rng):
    """Input of length L reads P[max_length − L:], so the latest item always gets the last row."""
    layer = PositionEmbedding(max_length=7)
    full = rng.normal(size=(2, 7, 4)).astype("float32")
    table = (_np(layer(full)) - full)[0]
    np.testing.assert_allclose(_np(layer(full)), full + table, atol=1e-6)
    np.testing.assert_allclose(table, _np(layer.position_embeddings), atol=1e-6)
    short = rng.normal(size=(2, 5, 4)).astype("float32")
    np.testing.assert_allclose(_np(layer(short)), short + table[2:], atol=1e-6)


def test_position_embedding_rejects_long_inputs():
    layer = PositionEmbedding(max_length=4)
    with pytest.raises(ValueError, match="max_length=4"):
        layer(np.zeros((1, 5, 3), "float32"))


def test_mixed_bfloat16_runs_in_compute_dtype(rng):
    x = rng.normal(size=(3, 6, 8)).astype("float32")
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        positions = PositionEmbedding(max_length=6)
        block = TransformerBlock(num_heads=2, causal=True)
        post = TransformerBlock(num_heads=2, norm_first=False, activation="gelu")
        out = post(block(positions(x), mask=_MASK), mask=_MASK)
        assert keras.backend.standardize_dtype(positions(x).dtype) == "bfloat16"
        assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
        assert np.isfinite(_np(keras.ops.cast(out, "float32"))).all()
        assert block.attention.compute_dtype == "bfloat16"
        assert keras.backend.standardize_dtype(block.attention.query_dense.kernel.dtype) == (
            "float32"
        )
    finally:
        keras.config.set_dtype_policy("float32")


def test_configs_round_trip(rng, round_trip):
    x = rng.normal(size=(3, 6, 8)).astype("float32")
    block = TransformerBlock(
        num_heads=4,
        dropout=0.1,
        causal=True,
        intermediate_dim=12,
        activation="gelu",
        norm_first=False,
        layer_norm_epsilon=1e-6,
        kernel_initializer="he_normal",
    )
    block(x, mask=_MASK)
    copy = round_trip(block, x, mask=_MASK)
    assert copy.get_config()["intermediate_dim"] == 12 and copy.causal
    np.testing.assert_allclose(_np(copy(x, mask=_MASK)), _np(block(x, mask=_MASK)), atol=1e-6)

    positions = PositionEmbedding(max_length=9, initializer="zeros")
    positions(x)
    copy = round_trip(positions, x)
    assert copy.max_length == 9
    np.testing.assert_allclose(_np(copy(x)), _np(positions(x)), atol=1e-6)
