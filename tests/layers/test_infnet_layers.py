"""INFNet's layers against NumPy: proxies, cross attention, PGU, one block; its cost in L.

Every reference below is written from the equations (MODELS.md, "INFNet"),
reading only the layers' weights; the cost test measures compiled FLOPs
with XLA's cost analysis (through JAX) and checks that doubling the sequence length
does not quadruple a block's cost, as it does for full self-attention over
all tokens (AutoInt-style), measured the same way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_recsys.layers.infnet.block import InfNetBlock
from keras_recsys.layers.infnet.categorical_proxies import CategoricalProxies
from keras_recsys.layers.infnet.cross_attention import CrossAttention
from keras_recsys.layers.infnet.learned_tokens import LearnedTokens
from keras_recsys.layers.infnet.proxy_gated_unit import ProxyGatedUnit
from keras_recsys.layers.infnet.sequence_proxies import SequenceProxies

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def mlp_np(mlp, x):
    """ReLU hidden layers, linear last layer (output_activation=False)."""
    layers = mlp.dense_layers
    for i, dense in enumerate(layers):
        x = x @ _np(dense.kernel) + _np(dense.bias)
        if i < len(layers) - 1:
            x = np.maximum(x, 0.0)
    return x


def attention_np(layer, query, key, mask=None):
    """softmax(Q W_Q (K W_K)ᵀ / √d_k) K W_V, head by head; all-masked rows read 0."""
    wq, wk, wv = (_np(w) for w in (layer.query_kernel, layer.key_kernel, layer.value_kernel))
    heads = []
    for h in range(wq.shape[1]):
        q, k, v = query @ wq[:, h], key @ wk[:, h], key @ wv[:, h]
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(wq.shape[2])
        valid = (
            np.ones(scores.shape, bool)
            if mask is None
            else np.broadcast_to(mask[:, None, :], scores.shape)
        )
        shifted = np.where(valid, scores, -np.inf)
        top = np.max(np.where(valid, scores, -1e300), axis=-1, keepdims=True)
        e = np.where(valid, np.exp(shifted - top), 0.0)
        total = e.sum(-1, keepdims=True)
        heads.append((e / np.where(total > 0, total, 1.0)) @ v)
    return np.concatenate(heads, axis=-1)


def layer_norm_np(layer, x):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + layer.epsilon) * _np(layer.gamma) + _np(layer.beta)


def pgu_np(layer, tokens, proxies):
    """X ⊙ σ(MLP(flatten(X̃))), one d-vector gate per example."""
    gate = sigmoid(mlp_np(layer.gate, proxies.reshape(len(proxies), -1)))
    return tokens * gate[:, None, :]


TOKENS = (
    "categorical",
    "categorical_proxies",
    "sequence",
    "sequence_proxies",
    "tasks",
    "shared_tasks",
)


def block_inputs(rng, batch=3, dim=8, lengths=(6, 4), categorical=5, proxies=4, tasks=3, shared=2):
    """Random tokens for every type; row 0 has an empty history, row 1 a short one."""
    length = sum(lengths)
    real = np.array([0, 3, length] + [length] * (batch - 3))[:batch]
    mask = np.arange(length)[None, :] < real[:, None]
    sequence = rng.normal(size=(batch, length, dim)) * mask[..., None]
    return {
        "categorical": rng.normal(size=(batch, categorical, dim)).astype("float32"),
        "categorical_proxies": rng.normal(size=(batch, proxies, dim)).astype("float32"),
        "sequence": sequence.astype("float32"),
        "sequence_mask": mask,
        "sequence_proxies": rng.normal(size=(batch, len(lengths), dim)).astype("float32"),
        "tasks": rng.normal(size=(batch, tasks, dim)).astype("float32"),
        "shared_tasks": rng.normal(size=(batch, shared, dim)).astype("float32"),
    }


# ------------------------------------------------------------------ proxies
def test_categorical_proxies_are_an_mlp_over_all_fields(rng, randomize):
    tokens = rng.normal(size=(4, 5, 6)).astype("float32")
    layer = CategoricalProxies(num_proxies=3, hidden_units=[7])
    assert tuple(layer(tokens).shape) == (4, 3, 6)
    randomize(layer, rng)
    # C̃ = reshape(φ_cat(flatten(C)), (m, d)): proxy j is outputs j·d … (j+1)·d − 1.
    want = mlp_np(layer.phi, tokens.reshape(4, 30).astype(np.float64)).reshape(4, 3, 6)
    np.testing.assert_allclose(_np(layer(tokens)), want, rtol=1e-5, atol=1e-5)
    # Every proxy reads every field: changing the last field moves all of them.
    moved = tokens.copy()
    moved[:, -1] += 1.0
    assert (np.abs(_np(layer(moved)) - _np(layer(tokens))).max(-1) > 1e-4).all()


def test_sequence_proxies_sum_phi_over_real_positions_per_type(rng, randomize):
    clicks = rng.normal(size=(3, 5, 4)).astype("float32")
    buys = rng.normal(size=(3, 2, 4)).astype("float32")
    click_mask = np.array([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], bool)
    buy_mask = np.array([[1, 0], [1, 1], [0, 0]], bool)
    layer = SequenceProxies(hidden_units=[6])
    layer([clicks, buys], [click_mask, buy_mask])
    randomize(layer, rng)
    got = _np(layer([clicks, buys], [click_mask, buy_mask]))
    want = np.zeros((3, 2, 4))
    for b in range(3):
        for a, (seq, mask) in enumerate([(clicks, click_mask), (buys, buy_mask)]):
            for t in range(seq.shape[1]):
                if mask[b, t]:
                    want[b, a] += mlp_np(layer.phi, seq[b, t].astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.all(got[1, 0] == 0) and np.all(got[2, 1] == 0)  # empty histories: zero proxies
    # Padding values do not matter.
    noisy = clicks + 100.0 * ~click_mask[..., None]
    np.testing.assert_allclose(_np(layer([noisy, buys], [click_mask, buy_mask])), got, atol=1e-5)


# ---------------------------------------------------------- cross attention
@pytest.mark.multibackend
@pytest.mark.parametrize("num_heads", [1, 2])
def test_cross_attention_matches_numpy_with_masked_keys(rng, randomize, num_heads):
    query = rng.normal(size=(3, 2, 8)).astype("float32")
    key = rng.normal(size=(3, 6, 8)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0], [1] * 6], bool)
    layer = CrossAttention(num_heads=num_heads)
    layer(query, key, key_mask=mask)
    randomize(layer, rng)
    assert tuple(layer.query_kernel.shape) == (8, num_heads, 8 // num_heads)
    got, weights = layer(query, key, key_mask=mask, return_attention_scores=True)
    want = attention_np(layer, query.astype(np.float64), key.astype(np.float64), mask)
    np.testing.assert_allclose(_np(got), want, rtol=1e-4, atol=1e-5)
    weights = _np(weights)
    assert weights.shape == (3, num_heads, 2, 6)
    np.testing.assert_allclose(weights[[0, 2]].sum(-1), 1.0, rtol=1e-5)
    assert np.all(weights[0, ..., 4:] == 0)  # padded keys take no weight
    assert np.all(_np(got)[1] == 0)  # no real key: the query reads nothing
    # Without a mask every key counts.
    np.testing.assert_allclose(
        _np(layer(query, key)),
        attention_np(layer, query.astype(np.float64), key.astype(np.float64)),
        rtol=1e-4,
        atol=1e-5,
    )


# ---------------------------------------------------------------------- PGU
def test_proxy_gated_unit_gates_every_token_with_one_vector(rng, randomize):
    tokens = rng.normal(size=(4, 9, 6)).astype("float32")
    proxies = rng.normal(size=(4, 3, 5)).astype("float32")
    layer = ProxyGatedUnit(hidden_units=[7])
    layer(tokens, proxies)
    randomize(layer, rng)
    got = _np(layer(tokens, proxies))
    np.testing.assert_allclose(
        got,
        pgu_np(layer, tokens.astype(np.float64), proxies.astype(np.float64)),
        rtol=1e-5,
        atol=1e-6,
    )
    # One gate per example: the ratio output / input is the same for all tokens.
    ratio = got / tokens
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:, :1], ratio.shape), rtol=1e-4)
    assert ((ratio > 0) & (ratio < 1)).all()


# -------------------------------------------------------------------- block
def block_np(block, x, heterogeneous=True, homogeneous=True, features=True):
    """One INFNet block written out from the equations, with the documented residual + LN."""
    f64 = {k: (v if k == "sequence_mask" else v.astype(np.float64)) for k, v in x.items()}
    C, Cp, S, Sp = (
        f64["categorical"],
        f64["categorical_proxies"],
        f64["sequence"],
        f64["sequence_proxies"],
    )
    T, Tp, mask = f64["tasks"], f64["shared_tasks"], f64["sequence_mask"]

    def ca(query, key, q, k):
        layer = block.attentions[f"{query}_reads_{key}"]
        return attention_np(layer, q, k, mask if key == "sequence" else None)

    def flow_ln(name, value):
        return layer_norm_np(block.flow_norms[name], value)

    def gate_ln(name, tokens, proxies):
        return layer_norm_np(block.gate_norms[name], pgu_np(block.gates[name], tokens, proxies))

    Cp2, Sp2, Tp2, That = Cp, Sp, Tp, T
    if heterogeneous:
        if features:
            Cp2 = flow_ln(
                "categorical_proxies",
                Cp
                + ca("categorical_proxies", "sequence", Cp, S)
                + ca("categorical_proxies", "tasks", Cp, T),
            )
            Sp2 = flow_ln(
                "sequence_proxies",
                Sp
                + ca("sequence_proxies", "categorical", Sp, C)
                + ca("sequence_proxies", "tasks", Sp, T),
            )
        Tp2 = flow_ln(
            "shared_tasks",
            Tp + ca("shared_tasks", "categorical", Tp, C) + ca("shared_tasks", "sequence", Tp, S),
        )
        That = flow_ln(
            "tasks", T + ca("tasks", "categorical", T, C) + ca("tasks", "sequence", T, S)
        )
    C2, S2, T2 = C, S, That
    if homogeneous:
        if features:
            C2 = gate_ln("categorical", C, Cp2)
            S2 = gate_ln("sequence", S, Sp2) * mask[..., None]
        T2 = gate_ln("tasks", That, Tp2)
    return {
        "categorical": C2,
        "categorical_proxies": Cp2,
        "sequence": S2,
        "sequence_proxies": Sp2,
        "tasks": T2,
        "shared_tasks": Tp2,
    }


FLOWS = {
    "both": {},
    "no-heterogeneous": {"heterogeneous_flow": False},
    "no-homogeneous": {"homogeneous_flow": False},
    "tasks-only": {"update_feature_tokens": False},
}


@pytest.mark.parametrize("flow", sorted(FLOWS))
@pytest.mark.parametrize("num_heads", [1, 2])
def test_block_matches_the_flow_equations(rng, randomize, flow, num_heads):
    x = block_inputs(rng)
    block = InfNetBlock(num_heads=num_heads, gate_hidden_units=[6], **FLOWS[flow])
    block(x)
    randomize(block, rng)
    got = block(x)
    options = FLOWS[flow]
    want = block_np(
        block,
        x,
        heterogeneous=options.get("heterogeneous_flow", True),
        homogeneous=options.get("homogeneous_flow", True),
        features=options.get("update_feature_tokens", True),
    )
    for name, value in want.items():
        np.testing.assert_allclose(_np(got[name]), value, rtol=1e-4, atol=1e-4, err_msg=name)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(got["sequence_mask"]), x["sequence_mask"]
    )
    # Layers of a switched-off flow are not made (no dead weights).
    if flow == "no-heterogeneous":
        assert not block.attentions and not block.flow_norms
    if flow == "no-homogeneous":
        assert not block.gates
    if flow == "tasks-only":
        assert sorted(block.flow_norms) == ["shared_tasks", "tasks"] and sorted(block.gates) == [
            "tasks"
        ]


def test_block_ignores_padding_and_drops_missing_groups(rng):
    x = block_inputs(rng)
    block = InfNetBlock(gate_hidden_units=[6])
    out = {k: _np(v) for k, v in block(x).items()}
    noisy = dict(x, sequence=x["sequence"] + 50.0 * ~x["sequence_mask"][..., None])
    again = {k: _np(v) for k, v in block(noisy).items()}
    for name in out:
        np.testing.assert_allclose(again[name], out[name], rtol=1e-5, atol=1e-5, err_msg=name)
    assert np.all(out["sequence"][~x["sequence_mask"]] == 0)
    # No sequences and no tasks (a census-like input): the proxies have nothing to read.
    small = {k: x[k] for k in ("categorical", "categorical_proxies")}
    lone = InfNetBlock()
    lone(small)
    assert not lone.attentions and sorted(lone.gates) == ["categorical"]
    with pytest.raises(ValueError, match="'shared_tasks' without 'tasks'"):
        InfNetBlock()(dict(small, shared_tasks=x["shared_tasks"]))
    with pytest.raises(ValueError, match="'sequence' without 'sequence_mask'"):
        InfNetBlock()(dict(small, sequence=x["sequence"]))


def test_learned_tokens_repeat_over_the_batch(rng):
    layer = LearnedTokens(num_tokens=3, dim=4)
    out = _np(layer(np.zeros((5, 7, 4), "float32")))
    assert out.shape == (5, 3, 4)
    np.testing.assert_allclose(out, np.broadcast_to(_np(layer.tokens), (5, 3, 4)))


# ----------------------------------------------------------- serialization
def test_layers_round_trip_through_their_configs(rng, randomize, round_trip):
    x = block_inputs(rng)
    cases = [
        (CategoricalProxies(3, [5]), (x["categorical"],)),
        (SequenceProxies([5]), ([x["sequence"]], [x["sequence_mask"]])),
        (CrossAttention(num_heads=2, key_dim=3), (x["tasks"], x["categorical"])),
        (ProxyGatedUnit([5]), (x["categorical"], x["categorical_proxies"])),
        (LearnedTokens(2, 8), (x["categorical"],)),
        (InfNetBlock(num_heads=2, gate_hidden_units=[5], update_feature_tokens=False), (x,)),
    ]
    for layer, args in cases:
        layer(*args)
        randomize(layer, rng)
        copy = round_trip(layer, *args)
        want, got = layer(*args), copy(*args)
        if isinstance(want, dict):
            want, got = want["tasks"], got["tasks"]
        np.testing.assert_allclose(_np(got), _np(want), rtol=1e-6, err_msg=type(layer).__name__)


# ---------------------------------------------------------------- the cost
def measure_flops(lengths=(256, 512), dim=8) -> dict:
    """XLA's FLOP count of one InfNetBlock and of full self-attention over the same tokens.

    On the JAX backend: `jax.jit(f).lower(...).cost_analysis()`, XLA's
    HloCostAnalysis of the program the layers trace (before XLA's
    optimizations, so nothing is counted away), weights passed as arguments.
    """
    import jax

    assert keras.backend.backend() == "jax"
    out = {"block": [], "self_attention": []}
    for length in lengths:
        rng = np.random.default_rng(0)
        x = block_inputs(rng, batch=2, dim=dim, lengths=(length // 2, length // 2))
        block = InfNetBlock(gate_hidden_units=[16])
        block.build({name: value.shape for name, value in x.items()})
        # AutoInt-style: every token attends to every token.
        everything = np.concatenate([x[k] for k in TOKENS], axis=1)
        full = keras.layers.MultiHeadAttention(num_heads=1, key_dim=dim)
        full.build(everything.shape, everything.shape)
        for name, layer, args in (
            ("block", block, (x,)),
            ("self_attention", full, (everything, everything)),
        ):

            def run(weights, *inputs, layer=layer):
                return layer.stateless_call(weights, [], *inputs)[0]

            weights = [v.value for v in layer.trainable_variables]
            cost = jax.jit(run).lower(weights, *args).cost_analysis()
            cost = cost[0] if isinstance(cost, list) else cost
            out[name].append(float(cost["flops"]))
    return out


def test_doubling_the_sequence_does_not_quadruple_the_block_cost():
    if keras.backend.backend() == "jax":
        flops = measure_flops()
    else:  # XLA's cost analysis is read through JAX: measure in a JAX process.
        code = (
            "import json; from tests.layers.test_infnet_layers import measure_flops; "
            "print('FLOPS=' + json.dumps(measure_flops()))"
        )
        env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        line = [row for row in done.stdout.splitlines() if row.startswith("FLOPS=")][-1]
        flops = json.loads(line[len("FLOPS=") :])
    block = flops["block"][1] / flops["block"][0]
    full = flops["self_attention"][1] / flops["self_attention"][0]
    # Linear in L: at most 2x (the part that does not depend on L grows not at all).
    assert 1.5 < block <= 2.05, flops
    # The measurement sees quadratic cost where there is some.
    assert full > 3.5, flops
    assert flops["block"][1] < flops["self_attention"][1] / 4, flops
