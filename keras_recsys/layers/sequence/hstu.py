"""`HSTU`: one Hierarchical Sequential Transduction Unit block (pointwise attention)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

# bucket(Δ) = floor(ln(max(|Δ|, 1)) / 0.301): the reference's log buckets of
# time gaps (0.301 ≈ log10(2), so a bucket spans a factor of e^0.301 ≈ 1.35).
TIME_BUCKET_WIDTH = 0.301


def time_buckets(gaps, num_buckets: int):
    """int32 bucket of each time gap: floor(ln(max(|Δ|, 1)) / 0.301), clipped to [0, num_buckets]."""
    gaps = ops.maximum(ops.abs(ops.cast(gaps, "float32")), 1.0)
    buckets = ops.floor(ops.log(gaps) / TIME_BUCKET_WIDTH)
    return ops.cast(ops.clip(buckets, 0, num_buckets), "int32")


def next_timestamps(timestamps):
    """(B, L) → (B, L): t_{i+1} at position i, the last timestamp repeated at the end.

    The query at position i measures time gaps from the moment the next
    action happens, as the reference does.
    """
    return ops.concatenate([timestamps[:, 1:], timestamps[:, -1:]], axis=1)


def positions_from_oldest(mask):
    """(B, L) position of each real token counted from the oldest kept one (padding: 0).

    Histories are front-padded; the reference pads at the end and numbers
    tokens from the first, so the oldest kept item reads position 0.
    """
    counts = ops.cumsum(ops.cast(mask, "int32"), axis=1) - 1
    return ops.maximum(counts, 0)


def causal_attention_mask(mask):
    """(B, L) bool token mask → (B, L, L) bool: query i sees real keys j ≤ i."""
    length = ops.shape(mask)[1]
    rows = ops.arange(length, dtype="int32")
    causal = ops.greater_equal(rows[:, None], rows[None, :])
    return ops.logical_and(causal[None, :, :], mask[:, None, :])


# Registered as "HSTUBlock": `keras_recsys>HSTU` is the model (`kr.models.HSTU`).
@keras.saving.register_keras_serializable(package="keras_recsys", name="HSTUBlock")
class HSTU(keras.layers.Layer):
    """One HSTU block: pointwise SiLU attention with a relative position and time bias.

    With X the (B, L, d) input (padded positions zero) and N = `max_length`:

        U, V, Q, K = split(SiLU(LN(X) · W_uvqk))          W_uvqk without bias
        A = SiLU(Q Kᵀ + rab) / N · allowed                no softmax, no 1/√d
        Y = (X + W_o · dropout(U ⊙ LN(A V))) · mask

    `LN` is a layer normalization without learned scale or shift (ε = 1e-6),
    the second one over all heads' values together. `allowed` is the causal
    mask (query i sees keys j ≤ i) restricted to real tokens. The relative
    attention bias, shared by all heads,

        rab(i, j) = w_pos[N − 1 + p_j − p_i] + w_time[bucket(t_{i+1} − t_j)]

    reads positions p (default 0, 1, …; only differences matter, so front
    padding changes nothing) and, when timestamps are given, log-bucketed
    time gaps with `bucket(Δ) = floor(ln(max(|Δ|, 1)) / 0.301)` clipped to
    [0, `num_time_buckets`], where the query at position i uses the next
    token's timestamp (the last one repeated). Without timestamps the time
    term is left out. N divides the attention whatever the batch's length,
    so a history's outputs do not depend on how much padding it got.

    `call_candidates` runs the same block for extra tokens that attend to a
    cached history and to themselves only (M-FALCON); `keys_and_values`
    gives that cache.

    Reference: Zhai et al., 2024, "Actions Speak Louder than Words:
    Trillion-Parameter Sequential Transducers for Generative
    Recommendations" (ICML).

    Args:
        max_length: N, the longest token sequence (the attention divisor and
            the size 2N − 1 of the position bias).
        num_heads: h.
        qk_dim: size of each head's queries and keys (default d / h).
        value_dim: size of each head's values and gates U (default d / h).
        num_time_buckets: largest time bucket (the reference: 128).
        dropout: dropout rate on U ⊙ LN(A V) before the output projection.
        epsilon: the layer normalizations' ε.
        use_time_bias: whether the time term exists (it is skipped anyway
            when `call` gets no timestamps).
        **kwargs: base `Layer` arguments.

    Example:

    >>> block = kr.layers.HSTU(max_length=50, num_heads=2)
    >>> x = keras.random.normal((8, 50, 64))
    >>> mask = keras.ops.ones((8, 50), "bool")
    >>> y = block(x, mask=mask)  # (8, 50, 64)
    """

    def __init__(
        self,
        max_length: int,
        num_heads: int = 1,
        qk_dim: int | None = None,
        value_dim: int | None = None,
        num_time_buckets: int = 128,
        dropout: float = 0.0,
        epsilon: float = 1e-6,
        use_time_bias: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(max_length) < 1 or int(num_heads) < 1:
            raise ValueError(
                f"HSTU needs max_length >= 1 and num_heads >= 1, got {max_length}, {num_heads}."
            )
        self.max_length = int(max_length)
        self.num_heads = int(num_heads)
        self.qk_dim = None if qk_dim is None else int(qk_dim)
        self.value_dim = None if value_dim is None else int(value_dim)
        self.num_time_buckets = int(num_time_buckets)
        self.dropout = float(dropout)
        self.epsilon = float(epsilon)
        self.use_time_bias = bool(use_time_bias)
        self.output_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        # `mask` marks real tokens; the output keeps it (padded positions are zero).
        self.supports_masking = True

    def build(self, input_shape) -> None:
        dim = int(input_shape[-1])
        self.qk_dim = self.qk_dim or max(1, dim // self.num_heads)
        self.value_dim = self.value_dim or max(1, dim // self.num_heads)
        width = self.num_heads * (2 * self.value_dim + 2 * self.qk_dim)
        self.uvqk_kernel = self.add_weight(
            name="uvqk_kernel", shape=(dim, width), initializer="glorot_uniform"
        )
        self.output_projection = keras.layers.Dense(
            dim, dtype=self.dtype_policy, name="output_projection"
        )
        self.output_projection.build((None, self.num_heads * self.value_dim))
        bias_init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.position_bias = self.add_weight(
            name="position_bias", shape=(2 * self.max_length - 1,), initializer=bias_init
        )
        if self.use_time_bias:
            self.time_bias = self.add_weight(
                name="time_bias", shape=(self.num_time_buckets + 1,), initializer=bias_init
            )
        self.built = True

    # ----------------------------------------------------------------- pieces
    def _norm(self, x):
        # Layer normalization without learned scale or shift, in float32.
        x = ops.cast(x, "float32")
        mean = ops.mean(x, axis=-1, keepdims=True)
        variance = ops.var(x, axis=-1, keepdims=True)
        return (x - mean) * ops.rsqrt(variance + self.epsilon)

    def _project(self, x):
        """(B, T, d) → U, V (B, T, h·dv) and Q, K (B, T, h, dqk)."""
        kernel = ops.cast(self.uvqk_kernel, self.compute_dtype)
        uvqk = ops.silu(ops.matmul(ops.cast(self._norm(x), self.compute_dtype), kernel))
        hv, hq = self.num_heads * self.value_dim, self.num_heads * self.qk_dim
        u = uvqk[..., :hv]
        v = uvqk[..., hv : 2 * hv]
        q = uvqk[..., 2 * hv : 2 * hv + hq]
        k = uvqk[..., 2 * hv + hq :]
        return u, v, self._heads(q, self.qk_dim), self._heads(k, self.qk_dim)

    def _heads(self, x, size: int):
        shape = ops.shape(x)
        return ops.reshape(x, (shape[0], shape[1], self.num_heads, size))

    def relative_bias(self, query_positions, key_positions, query_times=None, key_times=None):
        """(B, Tq, Tk) rab for queries and keys at the given positions (and times)."""
        offsets = key_positions[:, None, :] - query_positions[:, :, None] + self.max_length - 1
        offsets = ops.clip(offsets, 0, 2 * self.max_length - 2)
        bias = ops.take(ops.cast(self.position_bias, "float32"), offsets, axis=0)
        if self.use_time_bias and query_times is not None and key_times is not None:
            gaps = query_times[:, :, None] - key_times[:, None, :]
            buckets = time_buckets(gaps, self.num_time_buckets)
            bias = bias + ops.take(ops.cast(self.time_bias, "float32"), buckets, axis=0)
        return bias

    def _attend(self, q, k, v, bias, allowed):
        """Σ_j SiLU(q_i·k_j + rab_ij) / N · allowed_ij · v_j, per head: (B, Tq, h·dv)."""
        scores = ops.einsum("bihd,bjhd->bhij", ops.cast(q, "float32"), ops.cast(k, "float32"))
        weights = ops.silu(scores + bias[:, None, :, :]) / float(self.max_length)
        weights = weights * ops.cast(allowed, "float32")[:, None, :, :]
        values = self._heads(ops.cast(v, "float32"), self.value_dim)
        attended = ops.einsum("bhij,bjhd->bihd", weights, values)
        shape = ops.shape(attended)
        return ops.reshape(attended, (shape[0], shape[1], self.num_heads * self.value_dim))

    def _finish(self, x, u, attended, mask, training):
        gated = ops.cast(u, "float32") * self._norm(attended)
        gated = self.output_dropout(ops.cast(gated, self.compute_dtype), training=training)
        y = ops.cast(x, self.compute_dtype) + self.output_projection(gated)
        return y * ops.cast(mask, y.dtype)[:, :, None]

    # ------------------------------------------------------------------ calls
    def call(
        self,
        inputs,
        mask=None,
        timestamps=None,
        positions=None,
        query_timestamps=None,
        training=None,
    ):
        """(B, L, d) tokens → (B, L, d), causal.

        Args:
            inputs: the tokens; padded positions may hold anything.
            mask: (B, L) bool, True at real tokens (default: all real).
            timestamps: optional (B, L) integer times of the tokens.
            positions: optional (B, L) integer positions (default 0..L−1).
            query_timestamps: optional (B, L) times the queries measure gaps
                from (default: the next token's, `next_timestamps`).
        """
        x = inputs
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        if mask is None:
            mask = ops.ones((batch, length), "bool")
        mask = ops.cast(mask, "bool")
        x = x * ops.cast(mask, x.dtype)[:, :, None]
        if positions is None:
            positions = ops.broadcast_to(
                ops.arange(length, dtype="int32")[None, :], (batch, length)
            )
        positions = ops.cast(positions, "int32")
        query_times = key_times = None
        if timestamps is not None:
            key_times = timestamps
            query_times = query_timestamps
            if query_times is None:
                query_times = next_timestamps(timestamps)
        u, v, q, k = self._project(x)
        bias = self.relative_bias(positions, positions, query_times, key_times)
        attended = self._attend(q, k, v, bias, causal_attention_mask(mask))
        return self._finish(x, u, attended, mask, training)

    def keys_and_values(self, inputs, mask=None):
        """The (K, V) this block computes over `inputs`: a history's cache for `call_candidates`."""
        x = ops.convert_to_tensor(inputs)
        if mask is not None:
            x = x * ops.cast(mask, x.dtype)[:, :, None]
        _, v, _, k = self._project(x)
        return k, v

    def call_candidates(
        self,
        candidates,
        history_keys,
        history_values,
        history_mask,
        history_positions,
        candidate_positions,
        history_times=None,
        candidate_times=None,
        training=None,
    ):
        """(B, m, d) candidate tokens → (B, m, d); each sees the whole history and itself only.

        The M-FALCON attention: a candidate's query reads the history's
        cached keys and values (`keys_and_values` of this block's input over
        the history) and its own key and value, never another candidate's, so
        one pass over m candidates equals m passes of one candidate each.
        A candidate's time gaps are measured from its own timestamp.
        """
        x = ops.convert_to_tensor(candidates)
        batch, count = ops.shape(x)[0], ops.shape(x)[1]
        u, v, q, k = self._project(x)
        candidate_positions = ops.cast(candidate_positions, "int32")
        history_positions = ops.cast(history_positions, "int32")
        history_bias = self.relative_bias(
            candidate_positions, history_positions, candidate_times, history_times
        )
        # q_c·K_history and q_c·k_c: (B, h, m, n) and (B, h, m).
        qf, kf = ops.cast(q, "float32"), ops.cast(k, "float32")
        to_history = ops.einsum("bihd,bjhd->bhij", qf, ops.cast(history_keys, "float32"))
        to_self = ops.einsum("bihd,bihd->bhi", qf, kf)
        self_bias = ops.take(ops.cast(self.position_bias, "float32"), self.max_length - 1)
        # A candidate's gap to itself is 0: bucket 0.
        if self.use_time_bias and candidate_times is not None and history_times is not None:
            self_bias = self_bias + ops.cast(self.time_bias, "float32")[0]
        scale = 1.0 / float(self.max_length)
        history_weights = ops.silu(to_history + history_bias[:, None, :, :]) * scale
        history_weights = history_weights * ops.cast(history_mask, "float32")[:, None, None, :]
        self_weights = ops.silu(to_self + self_bias) * scale
        history_values = self._heads(ops.cast(history_values, "float32"), self.value_dim)
        own_values = self._heads(ops.cast(v, "float32"), self.value_dim)
        attended = ops.einsum("bhij,bjhd->bihd", history_weights, history_values)
        attended = attended + ops.transpose(self_weights, (0, 2, 1))[..., None] * own_values
        attended = ops.reshape(attended, (batch, count, self.num_heads * self.value_dim))
        return self._finish(x, u, attended, ops.ones((batch, count), "bool"), training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            max_length=self.max_length,
            num_heads=self.num_heads,
            qk_dim=self.qk_dim,
            value_dim=self.value_dim,
            num_time_buckets=self.num_time_buckets,
            dropout=self.dropout,
            epsilon=self.epsilon,
            use_time_bias=self.use_time_bias,
        )
        return config
