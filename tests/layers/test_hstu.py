"""HSTU block against a numpy reference written from the paper's equations (MODELS.md, "HSTU").

The reference below never calls the layer's helpers: it reads only the layer's
weights and recomputes the block in float64.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from keras_recsys.layers import HSTU

N = 10  # max_length: the fixed attention divisor, larger than any test's sequence.
EPS = 1e-6
BUCKET_WIDTH = 0.301


def _np(x):
    return keras.ops.convert_to_numpy(x).astype(np.float64)


# ------------------------------------------------------------ numpy reference
def _silu(z):
    return z / (1.0 + np.exp(-z))


def _norm(x):
    # LayerNorm without scale or shift, biased variance.
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS)


def _bucket(gap, num_buckets):
    """floor(ln(max(|Δ|, 1)) / 0.301) clipped to [0, num_buckets], for one integer gap."""
    raw = math.log(max(abs(int(gap)), 1)) / BUCKET_WIDTH
    # The layer computes this in float32: keep the test data off bucket edges so a
    # float32/float64 rounding difference cannot pick another bucket.
    assert abs(int(gap)) <= 1 or abs(raw - round(raw)) > 1e-4, f"gap {gap} sits on a bucket edge"
    return min(max(math.floor(raw), 0), num_buckets)


def _reference(layer, x, mask, timestamps=None, positions=None):
    """The HSTU block in float64 numpy, from the layer's weights: (B, L, d)."""
    h, dqk, dv = layer.num_heads, layer.qk_dim, layer.value_dim
    n_max = layer.max_length
    w_uvqk = _np(layer.uvqk_kernel)
    w_o, b_o = _np(layer.output_projection.kernel), _np(layer.output_projection.bias)
    w_pos = _np(layer.position_bias)
    w_time = _np(layer.time_bias) if timestamps is not None else None

    x = np.asarray(x, np.float64) * mask[..., None]  # padded tokens zeroed first
    batch, length, _ = x.shape
    if positions is None:
        positions = np.broadcast_to(np.arange(length), (batch, length))

    uvqk = _silu(_norm(x) @ w_uvqk)
    u = uvqk[..., : h * dv]
    v = uvqk[..., h * dv : 2 * h * dv]
    q = uvqk[..., 2 * h * dv : 2 * h * dv + h * dqk]
    k = uvqk[..., 2 * h * dv + h * dqk :]
    assert k.shape[-1] == h * dqk

    y = np.zeros_like(x)
    for b in range(batch):
        rab = np.zeros((length, length))
        for i in range(length):
            # The query at i measures gaps from the next token's time (last: its own).
            t_query = None if timestamps is None else timestamps[b, min(i + 1, length - 1)]
            for j in range(length):
                rab[i, j] = w_pos[n_max - 1 + positions[b, j] - positions[b, i]]
                if t_query is not None:
                    gap = int(t_query) - int(timestamps[b, j])
                    rab[i, j] += w_time[_bucket(gap, layer.num_time_buckets)]
        allowed = np.tril(np.ones((length, length), bool)) & mask[b][None, :]
        heads = []
        for head in range(h):
            q_h = q[b, :, head * dqk : (head + 1) * dqk]
            k_h = k[b, :, head * dqk : (head + 1) * dqk]
            v_h = v[b, :, head * dv : (head + 1) * dv]
            a_h = _silu(q_h @ k_h.T + rab) / n_max * allowed
            heads.append(a_h @ v_h)
        attended = np.concatenate(heads, axis=-1)  # (L, h·dv), normalized as one vector
        y[b] = x[b] + (u[b] * _norm(attended)) @ w_o + b_o
    return y * mask[..., None]


# ------------------------------------------------------------------ inputs
def _timestamps(rng, batch, length):
    """Unix-like int32 times whose gaps are log-uniform in [1, 1e6]: they span ~46 buckets."""
    gaps = np.floor(np.exp(rng.uniform(0.0, math.log(1e6), size=(batch, length))))
    return (1_000_000_000 + np.cumsum(gaps, axis=1)).astype("int32")


def _front_mask(lengths, length):
    """(B, L) bool with each row's real tokens at the end (keras_recsys histories)."""
    return np.array([[i >= length - n for i in range(length)] for n in lengths], dtype=bool)


def _layer(rng, x, dim_kwargs, timestamps=None):
    """A built HSTU with every weight drawn from rng (biases far from their near-zero init)."""
    layer = HSTU(max_length=N, **dim_kwargs)
    layer(x, mask=np.ones(x.shape[:2], bool), timestamps=timestamps)
    layer.uvqk_kernel.assign(rng.normal(0, 0.5, layer.uvqk_kernel.shape).astype("float32"))
    dense = layer.output_projection
    dense.kernel.assign(rng.normal(0, 0.5, dense.kernel.shape).astype("float32"))
    dense.bias.assign(rng.normal(0, 0.5, dense.bias.shape).astype("float32"))
    layer.position_bias.assign(rng.normal(0, 1.0, layer.position_bias.shape).astype("float32"))
    layer.time_bias.assign(rng.normal(0, 1.0, layer.time_bias.shape).astype("float32"))
    return layer


# ------------------------------------------------------------------- tests
_CASES = {
    "unpadded-no-times": dict(dims=dict(num_heads=1), lengths=None, times=False),
    "front-padded-times": dict(dims=dict(num_heads=1), lengths=(7, 4, 1, 0), times=True),
    # qk_dim != value_dim, and few buckets so that large gaps clip at the last one.
    "two-heads-qk3-v5": dict(
        dims=dict(num_heads=2, qk_dim=3, value_dim=5, num_time_buckets=24),
        lengths=(7, 5, 2),
        times=True,
    ),
}


@pytest.mark.multibackend
@pytest.mark.parametrize("case", list(_CASES))
def test_hstu_matches_numpy(rng, case):
    spec = _CASES[case]
    length = 7
    batch = 3 if spec["lengths"] is None else len(spec["lengths"])
    x = rng.normal(size=(batch, length, 8)).astype("float32")
    t = _timestamps(rng, batch, length) if spec["times"] else None
    if spec["lengths"] is None:
        mask = np.ones((batch, length), bool)
    else:
        mask = _front_mask(spec["lengths"], length)
        # Padded tokens hold garbage values and times, which must not matter.
        x[~mask] = rng.normal(0, 5, size=(int((~mask).sum()), 8))
        t[~mask] = rng.integers(0, 2_000_000_000, size=int((~mask).sum()))
    layer = _layer(rng, x, spec["dims"], t)

    out = _np(layer(x, mask=mask, timestamps=t, training=False))
    expected = _reference(layer, x, mask, t)
    assert out.shape == x.shape and np.isfinite(out).all()
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=0)
    assert (out[~mask] == 0).all()
    # The outputs move well beyond the tolerance with the rab: it is really tested.
    assert np.abs(out[mask] - x[mask]).max() > 0.1


@pytest.mark.multibackend
def test_hstu_padding_never_leaks(rng):
    """With N fixed, real outputs ignore pad values, times and positions, and equal the unpadded run."""
    length, lengths = 7, (5, 3)
    x = rng.normal(size=(2, length, 8)).astype("float32")
    t = _timestamps(rng, 2, length)
    mask = _front_mask(lengths, length)
    layer = _layer(rng, x, dict(num_heads=2), t)

    base = _np(layer(x, mask=mask, timestamps=t, training=False))

    # Other garbage in the pads, and explicit positions: real tokens at 0..n−1 (not
    # shifted by the pad count), pads at arbitrary positions.
    x2, t2 = x.copy(), t.copy()
    pads = int((~mask).sum())
    x2[~mask] = rng.normal(0, 10, size=(pads, 8))
    t2[~mask] = rng.integers(0, 2_000_000_000, size=pads)
    positions = np.zeros((2, length), "int32")
    for row, n in enumerate(lengths):
        positions[row, length - n :] = np.arange(n)
        positions[row, : length - n] = rng.integers(0, 2 * N, size=length - n)
    moved = _np(layer(x2, mask=mask, timestamps=t2, positions=positions, training=False))
    np.testing.assert_allclose(moved[mask], base[mask], atol=1e-5, rtol=0)
    assert (moved[~mask] == 0).all() and (base[~mask] == 0).all()

    for row, n in enumerate(lengths):
        real_x, real_t = x[row : row + 1, length - n :], t[row : row + 1, length - n :]
        alone_mask = np.ones((1, n), bool)
        expected = _reference(layer, real_x, alone_mask, real_t)[0]
        np.testing.assert_allclose(base[row, length - n :], expected, atol=1e-5, rtol=0)
        alone = _np(layer(real_x, mask=alone_mask, timestamps=real_t, training=False))[0]
        np.testing.assert_allclose(base[row, length - n :], alone, atol=1e-5, rtol=0)


@pytest.mark.multibackend
def test_hstu_call_candidates_equals_one_pass_per_candidate(rng):
    """M-FALCON: m candidates at position L after a cached history = m full causal passes."""
    length, lengths, m, d = 6, (6, 3), 3, 8
    x = rng.normal(size=(2, length, d)).astype("float32")
    t = _timestamps(rng, 2, length)
    mask = _front_mask(lengths, length)
    x[~mask] = rng.normal(0, 5, size=(int((~mask).sum()), d))
    cand_x = rng.normal(size=(2, m, d)).astype("float32")
    # Candidates' times after the history's last one, log-uniform gaps again.
    gaps = np.floor(np.exp(rng.uniform(0.0, math.log(1e6), size=(2, m))))
    cand_t = (t[:, -1:] + gaps).astype("int32")
    layer = _layer(rng, x, dict(num_heads=2, qk_dim=3, value_dim=5), t)

    history_positions = np.broadcast_to(np.arange(length, dtype="int32"), (2, length))
    candidate_positions = np.full((2, m), length, "int32")  # all first after the history
    tensor = keras.ops.convert_to_tensor
    keys, values = layer.keys_and_values(tensor(x), tensor(mask))
    out = _np(
        layer.call_candidates(
            tensor(cand_x),
            keys,
            values,
            tensor(mask),
            tensor(history_positions),
            tensor(candidate_positions),
            tensor(t),
            tensor(cand_t),
            training=False,
        )
    )
    assert out.shape == (2, m, d)
    # A cache built without the mask holds garbage at the pads: history_mask alone hides it.
    raw_keys, raw_values = layer.keys_and_values(tensor(x))
    unmasked_cache = layer.call_candidates(
        tensor(cand_x),
        raw_keys,
        raw_values,
        tensor(mask),
        tensor(history_positions),
        tensor(candidate_positions),
        tensor(t),
        tensor(cand_t),
        training=False,
    )
    np.testing.assert_allclose(_np(unmasked_cache), out, atol=1e-5, rtol=0)

    for c in range(m):
        full_x = np.concatenate([x, cand_x[:, c : c + 1]], axis=1)
        full_t = np.concatenate([t, cand_t[:, c : c + 1]], axis=1)
        full_mask = np.concatenate([mask, np.ones((2, 1), bool)], axis=1)
        one_pass = _np(layer(full_x, mask=full_mask, timestamps=full_t, training=False))[:, -1]
        np.testing.assert_allclose(out[:, c], one_pass, atol=1e-5, rtol=0)
        expected = _reference(layer, full_x, full_mask, full_t)[:, -1]
        np.testing.assert_allclose(out[:, c], expected, atol=1e-5, rtol=0)
    # Candidates really differ: none of them sees the others.
    assert np.abs(out[:, 0] - out[:, 1]).max() > 1e-2


@pytest.mark.multibackend
def test_hstu_config_round_trip(rng, round_trip):
    length = 7
    x = rng.normal(size=(2, length, 8)).astype("float32")
    t = _timestamps(rng, 2, length)
    mask = _front_mask((7, 4), length)
    layer = HSTU(max_length=N, num_heads=2, qk_dim=3, value_dim=5, num_time_buckets=24, dropout=0.1)
    layer(x, mask=mask, timestamps=t)
    layer.position_bias.assign(rng.normal(0, 1.0, 2 * N - 1).astype("float32"))
    layer.time_bias.assign(rng.normal(0, 1.0, 25).astype("float32"))
    copy = round_trip(layer, x, mask=mask, timestamps=t)
    config = copy.get_config()
    assert (config["max_length"], config["qk_dim"], config["value_dim"]) == (N, 3, 5)
    assert config["num_time_buckets"] == 24 and config["dropout"] == 0.1
    np.testing.assert_array_equal(
        _np(copy(x, mask=mask, timestamps=t, training=False)),
        _np(layer(x, mask=mask, timestamps=t, training=False)),
    )
