"""FieldSelfAttention (AutoInt's interacting layer) against a per-head numpy computation."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_recsys.layers.interaction.field_attention import FieldSelfAttention


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def attention_reference(x, w, num_heads, head_dim, scale=False, norm=None):
    """ReLU([ẽ^1_m, ..., ẽ^H_m] + W_Res e_m), ẽ^h_m = Σ_k softmax_k(<q^h_m, k^h_k>) v^h_k,
    one head and one field m at a time; `norm` = (gamma, beta) applies LayerNorm after."""
    batch, num_fields, _ = x.shape
    out = np.zeros((batch, num_fields, num_heads * head_dim))
    for h in range(num_heads):
        cols = slice(h * head_dim, (h + 1) * head_dim)
        q, k, v = (x @ w[name][:, cols] for name in ("query", "key", "value"))
        for m in range(num_fields):
            logits = np.einsum("bd,bkd->bk", q[:, m], k)
            if scale:
                logits = logits / np.sqrt(head_dim)
            alpha = np.exp(logits - logits.max(-1, keepdims=True))
            alpha /= alpha.sum(-1, keepdims=True)
            out[:, m, cols] = np.einsum("bk,bkd->bd", alpha, v)
    if "residual" in w:
        out = out + x @ w["residual"]
    out = np.maximum(out, 0.0)
    if norm is not None:
        gamma, beta = norm
        mean = out.mean(-1, keepdims=True)
        var = out.var(-1, keepdims=True)
        out = (out - mean) / np.sqrt(var + 1e-6) * gamma + beta
    return out


def _kernels(layer):
    return {name: _np(p.kernel) for name, p in layer.projections.items()}


@pytest.mark.multibackend
@pytest.mark.parametrize(
    ("num_heads", "head_dim", "options"),
    [
        (1, 3, {}),
        (2, 4, {}),
        (3, 2, {"use_scale": True}),
        (2, 3, {"use_residual": False}),
        (2, 2, {"layer_norm": True}),
    ],
    ids=["one-head", "two-heads", "scaled", "no-residual", "layer-norm"],
)
def test_matches_per_head_attention(rng, randomize, num_heads, head_dim, options):
    x = rng.normal(size=(4, 5, 6)).astype("float32")
    layer = FieldSelfAttention(num_heads=num_heads, head_dim=head_dim, **options)
    layer(x)
    randomize(layer, rng, scale=0.4)
    norm = None
    if layer.norm is not None:
        norm = (_np(layer.norm.gamma), _np(layer.norm.beta))
    expected = attention_reference(
        x.astype(np.float64),
        _kernels(layer),
        num_heads,
        head_dim,
        scale=options.get("use_scale", False),
        norm=norm,
    )
    got = _np(layer(x))
    assert got.shape == (4, 5, num_heads * head_dim)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_projections_are_bias_free_and_residual_is_always_projected():
    """W_Q, W_K, W_V, W_Res are matrices without bias; the residual is projected even
    when the input size equals H·d' (the paper's W_Res)."""
    layer = FieldSelfAttention(num_heads=2, head_dim=3)
    layer(np.ones((2, 4, 6), "float32"))
    assert sorted(layer.projections) == ["key", "query", "residual", "value"]
    for projection in layer.projections.values():
        assert projection.bias is None and tuple(projection.kernel.shape) == (6, 6)


def test_every_field_sees_every_other_field(rng):
    """Changing one field changes every field's output (attention spans all fields)."""
    x = rng.normal(size=(1, 4, 3)).astype("float32")
    layer = FieldSelfAttention(num_heads=1, head_dim=8, use_residual=False)
    before = _np(layer(x))
    changed = x.copy()
    changed[0, 3] += 1.0
    difference = np.abs(_np(layer(changed)) - before).max(axis=-1)[0]
    assert np.all(difference[:3] > 1e-6), difference


def test_attention_dropout_only_in_training(rng):
    x = rng.normal(size=(3, 4, 4)).astype("float32")
    layer = FieldSelfAttention(num_heads=2, head_dim=2, dropout=0.5)
    plain = FieldSelfAttention(num_heads=2, head_dim=2)
    layer(x)
    plain(x)
    plain.set_weights(layer.get_weights())
    np.testing.assert_allclose(_np(layer(x, training=False)), _np(plain(x)), rtol=1e-6)
    assert np.abs(_np(layer(x, training=True)) - _np(plain(x))).max() > 1e-4


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_heads"):
        FieldSelfAttention(num_heads=0)
    with pytest.raises(ValueError, match="dropout"):
        FieldSelfAttention(dropout=1.0)
    with pytest.raises(ValueError, match=r"\(B, F, d\)"):
        FieldSelfAttention()(np.ones((2, 6), "float32"))


def test_config_round_trip(rng, randomize, round_trip):
    x = rng.normal(size=(2, 3, 4)).astype("float32")
    layer = FieldSelfAttention(num_heads=2, head_dim=2, use_scale=True, layer_norm=True)
    layer(x)
    randomize(layer, rng)
    copy = round_trip(layer, x)
    np.testing.assert_allclose(_np(copy(x)), _np(layer(x)), rtol=1e-6)


def test_saved_in_a_model(tmp_path, rng, randomize):
    """Two stacked layers (the second reading H·d' ≠ d) save and load in a .keras model."""
    inputs = keras.Input((3, 4))
    hidden = FieldSelfAttention(num_heads=2, head_dim=3)(inputs)
    model = keras.Model(inputs, FieldSelfAttention(num_heads=1, head_dim=2)(hidden))
    randomize(model, rng)
    path = tmp_path / "attention.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = rng.normal(size=(2, 3, 4)).astype("float32")
    np.testing.assert_allclose(_np(loaded(x)), _np(model(x)), rtol=1e-6)
