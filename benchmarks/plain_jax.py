"""DeepFM in plain JAX: the speed anchor (no Keras anywhere).

The same function as `handwritten.deepfm` and `kr.models.DeepFM` on the
Criteo-shaped benchmark data (26 categorical fields, 13 numeric, 16-d
embeddings, MLP 256-128), trained with Adam on binary cross-entropy, the way
a JAX programmer would write it for speed: the 26 per-field tables live in
one array indexed with per-field offsets, the data sit on the device, and a
whole epoch (shuffle, batch gathers, steps) is one jitted `fori_loop`.
`bench_fit_jax.py` loads the toolkit model's weights into it and checks the
predictions agree before timing, so both sides compute the same model.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Keras' Adam defaults, which the toolkit side uses.
LEARNING_RATE = 1e-3
BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7


def params_from_handwritten(hand, categorical: list[str], numeric: list[str]) -> dict[str, Any]:
    """The parameters of `handwritten.deepfm`'s Keras model as plain arrays."""

    def weights(name):
        return [np.asarray(w) for w in hand.get_layer(name).get_weights()]

    tables = [weights(f"emb_{name}")[0] for name in categorical]
    linear = [weights(f"lin_{name}")[0][:, 0] for name in categorical]
    dense_kernel, dense_bias = weights("lin_dense")
    layers = []
    index = 0
    while True:
        try:
            layers.append(tuple(weights(f"mlp_{index}")))
        except ValueError:
            break
        index += 1
    return {
        "tables": jnp.asarray(np.concatenate(tables)),  # (F * V, d)
        "linear": jnp.asarray(np.concatenate(linear)),  # (F * V,)
        "numeric_vectors": jnp.asarray(weights("numeric_fields")[0]),  # (13, d)
        "dense_kernel": jnp.asarray(dense_kernel),
        "dense_bias": jnp.asarray(dense_bias),
        "mlp": [(jnp.asarray(w), jnp.asarray(b)) for w, b in layers],
        "head": tuple(jnp.asarray(w) for w in weights("head")),
    }


def count_parameters(params) -> int:
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params)))


def logits(params, ids, dense, bf16: bool = False):
    """ids: (B, F) int32 with per-field offsets added; dense: (B, n) float32."""
    embedded = params["tables"][ids]  # (B, F, d)
    numeric_fields = dense[..., None] * params["numeric_vectors"]
    fields = jnp.concatenate([embedded, numeric_fields], axis=1)
    linear = params["linear"][ids].sum(axis=1, keepdims=True)
    linear = linear + dense @ params["dense_kernel"] + params["dense_bias"]
    fm = 0.5 * jnp.sum(
        jnp.square(fields.sum(axis=1)) - jnp.square(fields).sum(axis=1), axis=-1, keepdims=True
    )
    x = jnp.concatenate([fields.reshape(fields.shape[0], -1), dense], axis=-1)
    compute = jnp.bfloat16 if bf16 else jnp.float32
    x = x.astype(compute)
    for kernel, bias in params["mlp"]:
        x = jax.nn.relu(x @ kernel.astype(compute) + bias.astype(compute))
    kernel, bias = params["head"]
    deep = (x @ kernel.astype(compute)).astype(jnp.float32) + bias
    return linear + fm + deep


def loss_fn(params, ids, dense, labels, bf16: bool = False):
    z = logits(params, ids, dense, bf16)
    # Binary cross-entropy from logits: softplus(z) - y z.
    return jnp.mean(jax.nn.softplus(z) - labels * z)


def adam_init(params):
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    return {"m": zeros, "v": jax.tree_util.tree_map(jnp.zeros_like, params), "t": jnp.int32(0)}


def adam_update(params, grads, state):
    t = state["t"] + 1
    m = jax.tree_util.tree_map(lambda m, g: BETA_1 * m + (1 - BETA_1) * g, state["m"], grads)
    v = jax.tree_util.tree_map(lambda v, g: BETA_2 * v + (1 - BETA_2) * g * g, state["v"], grads)
    tf = t.astype(jnp.float32)
    rate = LEARNING_RATE * jnp.sqrt(1 - BETA_2**tf) / (1 - BETA_1**tf)
    params = jax.tree_util.tree_map(
        lambda p, m, v: p - rate * m / (jnp.sqrt(v) + EPSILON), params, m, v
    )
    return params, {"m": m, "v": v, "t": t}


def sgd_update(params, grads, state):
    """Plain SGD (Keras' default rate 0.01): isolates the optimizer's share of a step."""
    params = jax.tree_util.tree_map(lambda p, g: p - 0.01 * g, params, grads)
    return params, state


def make_epoch(batch_size: int, num_batches: int, bf16: bool = False, optimizer: str = "adam"):
    """A jitted function: (params, opt_state, data, key) -> (params, opt_state, last loss).

    One epoch: a permutation drawn on the device, then `num_batches` steps in
    a `fori_loop`, each gathering its batch from the device-resident data.
    """
    grad_fn = jax.value_and_grad(loss_fn)
    update = adam_update if optimizer == "adam" else sgd_update

    def epoch(params, opt_state, data, key):
        ids, dense, labels = data
        order = jax.random.permutation(key, ids.shape[0])

        def step(i, carry):
            params, opt_state, _ = carry
            rows = lax.dynamic_slice_in_dim(order, i * batch_size, batch_size)
            loss, grads = grad_fn(params, ids[rows], dense[rows], labels[rows], bf16)
            params, opt_state = update(params, grads, opt_state)
            return params, opt_state, loss

        return lax.fori_loop(0, num_batches, step, (params, opt_state, jnp.float32(0)))

    return jax.jit(epoch, donate_argnums=(0, 1))


def device_data(features: dict, labels: np.ndarray, categorical, numeric, vocabulary: int):
    """(ids with per-field offsets (N, F), dense (N, n), labels (N, 1)) on the device."""
    offsets = np.arange(len(categorical), dtype=np.int32) * vocabulary
    ids = np.stack([features[name] for name in categorical], axis=1).astype(np.int32) + offsets
    dense = np.stack([features[name] for name in numeric], axis=1).astype(np.float32)
    return tuple(jax.device_put(a) for a in (ids, dense, labels.astype(np.float32)))
