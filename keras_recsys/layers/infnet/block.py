"""`InfNetBlock`: one INFNet block, the heterogeneous then the homogeneous flow."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_recsys.layers.infnet.cross_attention import CrossAttention
from keras_recsys.layers.infnet.proxy_gated_unit import ProxyGatedUnit

# Heterogeneous flow: which token types each proxy (or the task tokens) reads.
READS = {
    "categorical_proxies": ("sequence", "tasks"),
    "sequence_proxies": ("categorical", "tasks"),
    "shared_tasks": ("categorical", "sequence"),
    "tasks": ("categorical", "sequence"),
}
# Homogeneous flow: the tokens of a type and the proxies that gate them.
GATED_BY = {
    "categorical": "categorical_proxies",
    "sequence": "sequence_proxies",
    "tasks": "shared_tasks",
}
TASK_TYPES = ("tasks", "shared_tasks")
TOKEN_TYPES = (
    "categorical",
    "categorical_proxies",
    "sequence",
    "sequence_proxies",
    "tasks",
    "shared_tasks",
)


@keras.saving.register_keras_serializable(package="keras_recsys")
class InfNetBlock(keras.layers.Layer):
    """One INFNet block: proxies read the other token types, then gate their own.

    Token types (all of size d): categorical tokens C (B, M, d) and their
    proxies C̃ (B, m, d); sequence tokens S (B, L, d) with their mask and
    one proxy per behaviour type S̃ (B, F, d); task tokens T (B, N, d) and
    shared task tokens T̃ (B, N_s, d). With CA the `CrossAttention` (one
    layer, with its own weights, per pair):

    Heterogeneous flow (between types; every CA reads this block's inputs):

        C̃' = LN(C̃ + CA(C̃, S, S) + CA(C̃, T, T))
        S̃' = LN(S̃ + CA(S̃, C, C) + CA(S̃, T, T))
        T̃' = LN(T̃ + CA(T̃, C, C) + CA(T̃, S, S))
        T̂  = LN(T  + CA(T, C, C)  + CA(T, S, S))

    Homogeneous flow (within a type; `ProxyGatedUnit`, one gate per type):

        C' = LN(PGU(C, C̃')),   S' = LN(PGU(S, S̃')) ⊙ mask,   T' = LN(PGU(T̂, T̃'))

    Every CA has queries only from the few proxies and task tokens, so the
    block costs O((m + F + N + N_s) · (M + L) · d) plus per-token O(L · d²)
    projections: linear in the sequence length L, where full self-attention
    over all tokens is quadratic.

    Choices where the paper gives no equations (it says the updates have
    residual connections): the heterogeneous updates are post-norm residual
    sums, X' = LN(X + Σ CA), as in the original Transformer, which keeps the
    proxies and task tokens at one scale however many blocks are stacked.
    The homogeneous update has no additive residual: PGU(X, X̃) = X ⊙ g
    already carries X on its multiplicative path, and X + X ⊙ g would limit
    the gate to (1, 2) so it could no longer close a dimension; the
    LayerNorm (one per type, over d, per token) keeps the gates g < 1 from
    shrinking the tokens block after block. Padded sequence positions are
    zeroed again after their LayerNorm; they are masked out as keys anyway.

    Optional groups: without "sequence" (and its mask), the reads of S are
    dropped; without "tasks", the reads of T; without a type's proxies, its
    tokens are not gated; without "shared_tasks", T' = T̂. Switches for ablations: with
    `heterogeneous_flow=False` the proxies and task tokens pass unchanged
    (T̂ = T); with `homogeneous_flow=False`, C' = C, S' = S and T' = T̂.
    `update_feature_tokens=False` updates only T̃ and T and passes C, C̃, S
    and S̃ on unchanged: for the last block of a stack whose tasks read only
    their task tokens, where those updates would be computed and never read.

    Reference: Li et al., 2025, "INFNet: A Task-aware Information Flow
    Network for Large-Scale Recommendation Systems" (arXiv 2508.11565).

    Args:
        num_heads: heads of every cross attention.
        gate_hidden_units: widths of the hidden layers of every PGU's MLP.
        activation: activation of those hidden layers.
        heterogeneous_flow: run the cross attentions.
        homogeneous_flow: run the proxy gated units.
        attention_dropout: dropout rate on the attention weights.
        layer_norm_epsilon: epsilon of every LayerNorm.
        update_feature_tokens: update the feature tokens and their proxies
            (False: only the task tokens, see above).

    Call arguments:
        inputs: a dict with "categorical", and optionally
            "categorical_proxies", "sequence" + "sequence_mask",
            "sequence_proxies", "tasks" and "shared_tasks" (the latter only
            with "tasks").
        training: for the attention dropout.

    Returns:
        The same dict with every token type updated (the mask unchanged).

    Example:

    >>> block = kr.layers.infnet.InfNetBlock(num_heads=2, gate_hidden_units=[32])
    >>> out = block({
    ...     "categorical": keras.ops.ones((4, 7, 8)),
    ...     "categorical_proxies": keras.ops.ones((4, 4, 8)),
    ...     "sequence": keras.ops.ones((4, 60, 8)),
    ...     "sequence_mask": keras.ops.ones((4, 60), "bool"),
    ...     "sequence_proxies": keras.ops.ones((4, 3, 8)),
    ...     "tasks": keras.ops.ones((4, 3, 8)),
    ...     "shared_tasks": keras.ops.ones((4, 2, 8)),
    ... })
    >>> out["tasks"].shape
    (4, 3, 8)
    """

    def __init__(
        self,
        num_heads: int = 1,
        gate_hidden_units: Sequence[int] = (),
        activation: str = "relu",
        heterogeneous_flow: bool = True,
        homogeneous_flow: bool = True,
        attention_dropout: float = 0.0,
        layer_norm_epsilon: float = 1e-6,
        update_feature_tokens: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.gate_hidden_units = [int(u) for u in gate_hidden_units]
        self.activation = activation
        self.heterogeneous_flow = bool(heterogeneous_flow)
        self.homogeneous_flow = bool(homogeneous_flow)
        self.attention_dropout = float(attention_dropout)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.update_feature_tokens = bool(update_feature_tokens)

    @staticmethod
    def _present(inputs_shape: dict) -> set:
        present = {name for name in TOKEN_TYPES if name in inputs_shape}
        # Each optional group needs the one it belongs to.
        needs = {
            "categorical_proxies": "categorical",
            "sequence_mask": "sequence",
            "sequence": "sequence_mask",
            "sequence_proxies": "sequence",
            "shared_tasks": "tasks",
        }
        if "categorical" not in present:
            raise ValueError("InfNetBlock needs the categorical tokens.")
        for name, needed in needs.items():
            if name in inputs_shape and needed not in inputs_shape:
                raise ValueError(f"InfNetBlock got '{name}' without '{needed}'.")
        unknown = set(inputs_shape) - set(TOKEN_TYPES) - {"sequence_mask"}
        if unknown:
            raise ValueError(f"Unknown token types {sorted(unknown)}; expected {TOKEN_TYPES}.")
        return present

    def _norm(self, name: str) -> keras.layers.LayerNormalization:
        return keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name=name
        )

    def _updates(self, name: str) -> bool:
        return self.update_feature_tokens or name in TASK_TYPES

    def build(self, inputs_shape):
        present = self._present(inputs_shape)
        dims = {int(inputs_shape[name][-1]) for name in present}
        if len(dims) != 1:
            raise ValueError(f"Every INFNet token needs the same size d, got {dims}.")
        # {query type: [key types]} of this block's inputs, and the layers.
        self.reads = {}
        self.attentions, self.flow_norms = {}, {}
        if self.heterogeneous_flow:
            for query, keys in READS.items():
                keys = [k for k in keys if k in present]
                if query not in present or not keys or not self._updates(query):
                    continue
                self.reads[query] = keys
                for key in keys:
                    layer = CrossAttention(
                        self.num_heads,
                        dropout=self.attention_dropout,
                        dtype=self.dtype_policy,
                        name=f"{query}_reads_{key}",
                    )
                    layer.build(inputs_shape[query], inputs_shape[key])
                    self.attentions[f"{query}_reads_{key}"] = layer
                norm = self._norm(f"{query}_flow_norm")
                norm.build(inputs_shape[query])
                self.flow_norms[query] = norm
        self.gates, self.gate_norms = {}, {}
        if self.homogeneous_flow:
            for tokens, proxies in GATED_BY.items():
                if tokens not in present or proxies not in present or not self._updates(tokens):
                    continue
                gate = ProxyGatedUnit(
                    self.gate_hidden_units,
                    self.activation,
                    dtype=self.dtype_policy,
                    name=f"{tokens}_gate",
                )
                gate.build(inputs_shape[tokens], inputs_shape[proxies])
                self.gates[tokens] = gate
                norm = self._norm(f"{tokens}_gate_norm")
                norm.build(inputs_shape[tokens])
                self.gate_norms[tokens] = norm
        self.built = True

    def call(self, inputs: dict, training=None) -> dict:
        x = {
            k: ops.cast(v, self.compute_dtype) if k != "sequence_mask" else v
            for k, v in inputs.items()
        }
        out = dict(x)
        mask = x.get("sequence_mask")
        # Heterogeneous flow: every update reads the block's inputs.
        for query, keys in self.reads.items():
            total = x[query]
            for key in keys:
                total = total + self.attentions[f"{query}_reads_{key}"](
                    x[query],
                    x[key],
                    key_mask=mask if key == "sequence" else None,
                    training=training,
                )
            out[query] = self.flow_norms[query](total)
        # Homogeneous flow: tokens gated by their (updated) proxies.
        for tokens, gate in self.gates.items():
            gated = self.gate_norms[tokens](gate(out[tokens], out[GATED_BY[tokens]]))
            if tokens == "sequence":
                gated = gated * ops.expand_dims(ops.cast(mask, gated.dtype), -1)
            out[tokens] = gated
        return out

    def compute_output_shape(self, inputs_shape):
        return dict(inputs_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            gate_hidden_units=self.gate_hidden_units,
            activation=self.activation,
            heterogeneous_flow=self.heterogeneous_flow,
            homogeneous_flow=self.homogeneous_flow,
            attention_dropout=self.attention_dropout,
            layer_norm_epsilon=self.layer_norm_epsilon,
            update_feature_tokens=self.update_feature_tokens,
        )
        return config
