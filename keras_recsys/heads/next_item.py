"""`NextItemHead`: the output of next-item models, tied to the item embedding table."""

from __future__ import annotations

from typing import Any

import keras
import keras_rs
import numpy as np
from keras import ops

from keras_recsys.features.feature import NUM_RESERVED_IDS

LOSSES = ("bce", "sampled_softmax", "softmax")
SAMPLERS = ("uniform", "in_batch")

# Losses are computed in float32 whatever the compute dtype: log-sum-exp and
# softplus in bfloat16 lose the small differences the gradients live on.
_LOSS_DTYPE = "float32"
# A logit this low takes a candidate out of a softmax without producing NaN.
_REMOVED = -1e9


def _very_negative(dtype) -> float:
    # -1e9 overflows float16 to -inf; a softmax over only -inf entries is NaN.
    return -6e4 if keras.backend.standardize_dtype(dtype) == "float16" else _REMOVED


def _l2_normalize(x):
    # Norms in float32: zero rows (padded positions) would overflow rsqrt's
    # lower bound in float16; the result goes back to x's dtype.
    x32 = ops.cast(x, _LOSS_DTYPE)
    squares = ops.sum(ops.square(x32), axis=-1, keepdims=True)
    return ops.cast(x32 * ops.rsqrt(ops.maximum(squares, 1e-12)), x.dtype)


@keras.saving.register_keras_serializable(package="keras_recsys")
class NextItemHead(keras.layers.Layer):
    """Tied next-item output: s(h, j) = ⟨h, e_j⟩ / τ (⟨h/‖h‖, e_j/‖e_j‖⟩ / τ with `normalize`).

    e_j is row j of the item embedding table (V, d) of `item_embedding`, the
    same table the backbone reads its inputs from (Press & Wolf, 2017); the
    head creates no trainable weight of its own. Ids 0 (padding) and 1 (out
    of vocabulary) are never candidates: real items are 2 .. V-1.

    Losses (`compute_loss`), averaged over the valid positions, i.e. those
    whose target is a real item (target 0, padding or no target, and target
    1, an item unknown to the vocabulary, are ignored):

    * `"bce"` (SASRec's): −log σ(s_pos) − Σ_k log(1 − σ(s_neg_k)), with
      `num_negatives` (default 1) negatives per position drawn uniformly
      from [2, V). The reference draws negatives outside the user's
      history; over V ≈ 12k items a uniform draw almost never hits it, and
      a draw equal to the positive itself is dropped from the sum.
    * `"sampled_softmax"`: softmax cross-entropy of the positive against
      `num_negatives` negatives shared by all positions of the batch:
      `sampler="uniform"` draws them uniformly from [2, V) (default 100);
      the logQ correction is then a constant that cancels in the softmax and
      is skipped. `sampler="in_batch"` uses the batch's own targets (all
      B·L positions, memory (B·L)², or `num_negatives` drawn among the
      valid ones), which occur in proportion to their frequency Q, so with
      `logq_correction` every logit is lowered by log Q(item) (Yi et al.,
      2019). Q comes from `set_item_frequencies` and is stored in a
      non-trainable weight, saved with the model; until it is set Q is
      uniform, which is no correction at all. In both samplers a negative
      equal to the row's positive (an accidental hit) is removed from its
      softmax.
    * `"softmax"`: full softmax over all real items [2, V); the logits take
      memory B·L·V (a 256 × 50 batch over 12k items: 600 MB in float32).

    `call(vectors)` scores every id (reserved ids 0 and 1 get a very
    negative score), for top-k serving and full-ranking evaluation.

    keras-rs 0.4.0's `RemoveAccidentalHits` adds +1e-40 (`SMALLEST_FLOAT`)
    to the accidental hits' logits, which removes nothing:
    `RemoveAccidentalHits()(zeros((2, 3)), eye(2, 3), [5, 5, 7])` returns
    zeros, so row 0 still counts the second 5 in its softmax. The masking is
    done here; `SamplingProbabilityCorrection` is keras-rs's.

    `get_config` leaves out `item_embedding`: the owning model passes its
    live table again when it rebuilds the head (`from_config` needs
    `config["item_embedding"]` set to that layer). keras-hub's `MaskedLMHead`
    serializes its `token_embedding` instead, which on deserialization
    builds a separate, untied copy; its tasks avoid that by rebuilding the
    head from the backbone, as models do here.

    References: Kang & McAuley, 2018, "Self-Attentive Sequential
    Recommendation" (ICDM); Yi et al., 2019, "Sampling-Bias-Corrected Neural
    Modeling for Large Corpus Item Recommendations" (RecSys); Zhai et al.,
    2024, "Actions Speak Louder than Words" (HSTU, ICML) for `normalize`
    with τ = 0.05.

    Args:
        item_embedding: a `keras.layers.Embedding` (or `ReversibleEmbedding`)
            whose `.embeddings` (V, d) is the item table.
        loss: "bce", "sampled_softmax" or "softmax".
        num_negatives: negatives per position ("bce", default 1) or per
            batch ("sampled_softmax": default 100 uniform, all batch targets
            in_batch); not used by "softmax".
        sampler: "uniform" or "in_batch" (only with "sampled_softmax").
        logq_correction: subtract log Q from in-batch logits.
        temperature: τ, divides every logit and score.
        normalize: L2-normalize sequence vectors and item embeddings.
        seed: seed of the negative sampling.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Example:

    >>> items = keras.layers.Embedding(12103, 64)
    >>> head = kr.heads.NextItemHead(items, loss="sampled_softmax", num_negatives=100)
    >>> loss = head.compute_loss(sequence, targets)  # (B, L, d), (B, L) next item ids
    >>> scores = head(sequence[:, -1, :])  # (B, 12103)
    """

    def __init__(
        self,
        item_embedding: keras.layers.Embedding,
        loss: str = "bce",
        num_negatives: int | None = None,
        sampler: str = "uniform",
        logq_correction: bool = True,
        temperature: float = 1.0,
        normalize: bool = False,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not hasattr(item_embedding, "input_dim") or not hasattr(item_embedding, "output_dim"):
            raise ValueError(
                "item_embedding must be a keras.layers.Embedding (or ReversibleEmbedding), "
                f"got {type(item_embedding).__name__}."
            )
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}.")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}.")
        if sampler != "uniform" and loss != "sampled_softmax":
            raise ValueError(f"sampler={sampler!r} is only used with loss='sampled_softmax'.")
        if loss == "softmax" and num_negatives is not None:
            raise ValueError("loss='softmax' scores all items: leave num_negatives=None.")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}.")
        if num_negatives is None:
            if loss == "bce":
                num_negatives = 1
            elif loss == "sampled_softmax" and sampler == "uniform":
                num_negatives = 100
        if num_negatives is not None and int(num_negatives) < 1:
            raise ValueError(f"num_negatives must be positive, got {num_negatives}.")
        self.num_items = int(item_embedding.input_dim)
        if self.num_items <= NUM_RESERVED_IDS:
            raise ValueError(
                f"The item table has {self.num_items} rows: no real item after the "
                f"{NUM_RESERVED_IDS} reserved ids."
            )

        self.item_embedding = item_embedding
        self.loss = loss
        self.num_negatives = None if num_negatives is None else int(num_negatives)
        self.sampler = sampler
        self.logq_correction = bool(logq_correction)
        self.temperature = float(temperature)
        self.normalize = bool(normalize)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="negatives_seed")
        self.correction = keras_rs.layers.SamplingProbabilityCorrection(
            # The default 1e-6 floor would flatten the rarest items of catalogs
            # with more than a million interactions.
            epsilon=1e-12,
            dtype=_LOSS_DTYPE,
        )
        # Created here, not in `build`: the loss reads it outside `call`, maybe
        # first inside a jitted train step, where no variable can be created.
        # float32 whatever the policy: log Q of rare items needs the precision.
        self.item_probability = self.add_weight(
            name="item_probability",
            shape=(self.num_items,),
            initializer=keras.initializers.Constant(1.0 / self.num_items),
            trainable=False,
            dtype=_LOSS_DTYPE,
        )
        self.built = True

    # ------------------------------------------------------------ item side
    def _table(self):
        if not self.item_embedding.built:
            # The backbone normally builds it on its first call.
            self.item_embedding.build()
        return ops.cast(self.item_embedding.embeddings, self.compute_dtype)

    def _queries(self, vectors):
        vectors = ops.cast(vectors, self.compute_dtype)
        return _l2_normalize(vectors) if self.normalize else vectors

    def item_vectors(self, ids):
        """(..., d) item vectors the queries are scored against (normalized with `normalize`)."""
        vectors = ops.take(self._table(), ops.cast(ids, "int32"), axis=0)
        return _l2_normalize(vectors) if self.normalize else vectors

    def set_item_frequencies(self, counts) -> None:
        """Sets Q from item counts (V,) of the training targets; zero counts get the smallest."""
        counts = np.asarray(keras.ops.convert_to_numpy(counts), dtype="float64")
        if counts.shape != (self.num_items,):
            raise ValueError(f"Expected counts of shape ({self.num_items},), got {counts.shape}.")
        if (counts < 0).any() or counts.sum() <= 0:
            raise ValueError("Item counts must be non-negative with a positive sum.")
        # A zero-count item that still shows up (a target outside the counted
        # data) would otherwise get log Q = -inf.
        counts = np.maximum(counts, counts[counts > 0].min())
        self.item_probability.assign((counts / counts.sum()).astype(_LOSS_DTYPE))

    # --------------------------------------------------------------- scores
    def call(self, vectors):
        """(B, d) vectors (or (..., d)) → (B, V) scores of every id; ids 0 and 1 never rank."""
        table = _l2_normalize(self._table()) if self.normalize else self._table()
        scores = ops.matmul(self._queries(vectors), ops.transpose(table))
        scores = scores / ops.cast(self.temperature, scores.dtype)
        reserved = ops.arange(self.num_items) < NUM_RESERVED_IDS
        return ops.where(reserved, ops.full_like(scores, _very_negative(scores.dtype)), scores)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_items,)

    # ------------------------------------------------------------ negatives
    def sample_negatives(self, targets):
        """Negative item ids for a batch of `targets` (B, L) or (B,).

        "bce": targets.shape + (num_negatives,) uniform in [2, V);
        "sampled_softmax" uniform: (num_negatives,) uniform in [2, V);
        in_batch: the flattened targets (B·L,) (padding included, masked in
        the loss) or `num_negatives` of them drawn among the valid ones.
        """
        if self.loss == "softmax":
            raise ValueError("loss='softmax' scores all items and samples no negatives.")
        if self.loss == "bce":
            shape = tuple(ops.shape(targets)) + (self.num_negatives,)
            return self._uniform(shape)
        if self.sampler == "uniform":
            return self._uniform((self.num_negatives,))
        flat = ops.reshape(ops.cast(targets, "int32"), (-1,))
        if self.num_negatives is None:
            return flat
        # Positions drawn uniformly among the valid ones: an item is drawn in
        # proportion to its frequency, which the logQ correction assumes.
        logits = ops.where(flat >= NUM_RESERVED_IDS, 0.0, _REMOVED)
        logits = ops.cast(ops.expand_dims(logits, 0), _LOSS_DTYPE)
        picks = keras.random.categorical(logits, self.num_negatives, seed=self.seed_generator)
        return ops.take(flat, ops.reshape(picks, (-1,)), axis=0)

    def _uniform(self, shape):
        return keras.random.randint(
            shape, NUM_RESERVED_IDS, self.num_items, dtype="int32", seed=self.seed_generator
        )

    # ----------------------------------------------------------------- loss
    def compute_loss(self, sequence, targets, sample_weight=None, negatives=None):
        """Mean loss over the valid positions (target id >= 2); 0 for a batch with none.

        Args:
            sequence: (B, L, d) or (B, d) vectors.
            targets: (B, L) or (B,) int item ids; 0 and 1 are ignored.
            sample_weight: optional weights broadcastable from the front
                ((B,) or (B, L)).
            negatives: optional negative ids as `sample_negatives` returns
                them (drawn when None).
        """
        targets = ops.cast(targets, "int32")
        dim = sequence.shape[-1]
        queries = self._queries(ops.reshape(sequence, (-1, dim)))
        flat_targets = ops.reshape(targets, (-1,))
        valid = flat_targets >= NUM_RESERVED_IDS
        # Invalid rows read a real item and get weight 0: their loss stays finite.
        positives = ops.where(valid, flat_targets, NUM_RESERVED_IDS)

        weights = ops.cast(valid, _LOSS_DTYPE)
        if sample_weight is not None:
            weight = ops.cast(sample_weight, _LOSS_DTYPE)
            extra = len(targets.shape) - len(weight.shape)
            weight = ops.reshape(weight, tuple(ops.shape(weight)) + (1,) * extra)
            weights = weights * ops.reshape(ops.broadcast_to(weight, ops.shape(targets)), (-1,))

        if self.loss == "softmax":
            losses = self._softmax_losses(queries, positives)
        else:
            if negatives is None:
                negatives = self.sample_negatives(targets)
            negatives = ops.cast(negatives, "int32")
            if self.loss == "bce":
                negatives = ops.reshape(negatives, (-1, self.num_negatives))
                losses = self._bce_losses(queries, positives, negatives)
            else:
                losses = self._sampled_softmax_losses(queries, positives, negatives)
        # Zero weights zero the numerator too, so an empty batch gives 0, not NaN.
        return ops.sum(losses * weights) / ops.maximum(ops.sum(weights), 1e-12)

    def _logits(self, scores):
        return ops.cast(scores, _LOSS_DTYPE) / self.temperature

    def _bce_losses(self, queries, positives, negatives):
        positive = self._logits(ops.einsum("nd,nd->n", queries, self.item_vectors(positives)))
        negative = self._logits(ops.einsum("nd,nkd->nk", queries, self.item_vectors(negatives)))
        counted = ops.cast(ops.not_equal(negatives, positives[:, None]), _LOSS_DTYPE)
        # −log σ(s) = softplus(−s) and −log(1 − σ(s)) = softplus(s), both stable.
        return ops.softplus(-positive) + ops.sum(ops.softplus(negative) * counted, axis=1)

    def _sampled_softmax_losses(self, queries, positives, negatives):
        positive = self._logits(ops.einsum("nd,nd->n", queries, self.item_vectors(positives)))
        negative = self._logits(ops.matmul(queries, ops.transpose(self.item_vectors(negatives))))
        logits = ops.concatenate([positive[:, None], negative], axis=1)
        if self.sampler == "in_batch" and self.logq_correction:
            ids = ops.concatenate(
                [positives[:, None], ops.broadcast_to(negatives[None, :], ops.shape(negative))],
                axis=1,
            )
            logits = self.correction(logits, ops.take(self.item_probability, ids, axis=0))
        # Accidental hits (the row's own positive among its negatives) and
        # padding targets drawn in-batch leave the softmax. Not keras-rs 0.4.0's
        # RemoveAccidentalHits: it adds +1e-40 to the hits' logits, so
        # RemoveAccidentalHits()(zeros((2, 3)), eye(2, 3), [5, 5, 7]) is still
        # all zeros and row 0 keeps the second 5 in its softmax.
        removed = ops.logical_or(
            ops.equal(negatives[None, :], positives[:, None]),
            (negatives < NUM_RESERVED_IDS)[None, :],
        )
        removed = ops.concatenate([ops.zeros_like(removed[:, :1]), removed], axis=1)
        logits = ops.where(removed, _REMOVED, logits)
        return ops.logsumexp(logits, axis=1) - logits[:, 0]

    def _softmax_losses(self, queries, positives):
        # Only real items are classes: the reserved rows 0 and 1 are left out.
        items = self._table()[NUM_RESERVED_IDS:]
        if self.normalize:
            items = _l2_normalize(items)
        logits = self._logits(ops.matmul(queries, ops.transpose(items)))
        index = ops.expand_dims(positives - NUM_RESERVED_IDS, 1)
        return ops.logsumexp(logits, axis=1) - ops.take_along_axis(logits, index, axis=1)[:, 0]

    # ------------------------------------------------------------ config
    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            loss=self.loss,
            num_negatives=self.num_negatives,
            sampler=self.sampler,
            logq_correction=self.logq_correction,
            temperature=self.temperature,
            normalize=self.normalize,
            seed=self.seed,
        )
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> NextItemHead:
        if not isinstance(config.get("item_embedding"), keras.layers.Layer):
            raise ValueError(
                "NextItemHead does not serialize its item table: rebuild it with the "
                "owner's live layer, NextItemHead.from_config({**config, "
                "'item_embedding': embedding_layer})."
            )
        return cls(**config)
