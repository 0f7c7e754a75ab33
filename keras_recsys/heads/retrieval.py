"""`InBatchSoftmax`: the retrieval head of two-tower models."""

from __future__ import annotations

from typing import Any

import keras
import keras_rs
from keras import ops

# A logit this low takes a candidate out of a softmax without producing NaN.
_REMOVED = -1e9


@keras.saving.register_keras_serializable(package="keras_recsys")
class InBatchSoftmax(keras.layers.Layer):
    """In-batch sampled softmax: every other positive in the batch is a negative.

    For queries q_i and their positive candidates c_i (B of each):

        s_ij = ⟨q_i, c_j⟩ / τ − log Q(c_j),  loss = mean_i −log softmax_j(s_ij)[i]

    with the logQ correction (Yi et al., 2019): a candidate appears as an
    in-batch negative in proportion to its frequency Q, so its logit is
    lowered by log Q (`set_candidate_frequencies`; without frequencies no
    correction). Accidental hits, other columns holding the row's own
    positive item, are removed from its softmax. With `num_hard_negatives`,
    only the positive and the hardest negatives of each row enter the loss
    (keras-rs `HardNegativeMining`).

    keras-rs 0.4.0's `RemoveAccidentalHits` adds +1e-40 (`SMALLEST_FLOAT`) to
    the accidental hits' logits, which removes nothing (logits zeros (2, 3),
    labels eye(2, 3), ids [5, 5, 7]: row 0 keeps logit 0 for the second 5),
    so the masking is done here; `SamplingProbabilityCorrection` and
    `HardNegativeMining` are keras-rs's.

    Reference: Yi et al., 2019, "Sampling-Bias-Corrected Neural Modeling for
    Large Corpus Item Recommendations" (RecSys).

    Args:
        num_candidates: size of the candidate id space (for the frequencies).
        temperature: τ.
        logq_correction: subtract log Q when frequencies are set.
        remove_accidental_hits: mask other columns with the row's item id.
        num_hard_negatives: keep only this many hardest negatives per row.

    Example:

    >>> head = kr.heads.InBatchSoftmax(num_candidates=1684, temperature=0.05)
    >>> loss = head.compute_loss(query_vectors, candidate_vectors, candidate_ids)
    """

    def __init__(
        self,
        num_candidates: int,
        temperature: float = 1.0,
        logq_correction: bool = True,
        remove_accidental_hits: bool = True,
        num_hard_negatives: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}.")
        self.num_candidates = int(num_candidates)
        self.temperature = float(temperature)
        self.logq_correction = bool(logq_correction)
        self.remove_accidental_hits = bool(remove_accidental_hits)
        self.num_hard_negatives = None if num_hard_negatives is None else int(num_hard_negatives)
        self.correction = keras_rs.layers.SamplingProbabilityCorrection(dtype="float32")
        self.mining = None
        if self.num_hard_negatives is not None:
            self.mining = keras_rs.layers.HardNegativeMining(self.num_hard_negatives)

    def build(self, input_shape=None):
        # Sampling probabilities Q of the candidate ids; uniform until set.
        self.sampling_probability = self.add_weight(
            name="sampling_probability",
            shape=(self.num_candidates,),
            initializer=keras.initializers.Constant(1.0 / self.num_candidates),
            trainable=False,
            dtype="float32",
        )
        self.built = True

    def set_candidate_frequencies(self, counts) -> None:
        """Sets Q from candidate counts (V,) in the training data (zeros get the smallest Q)."""
        import numpy as np

        counts = np.asarray(counts, dtype="float64")
        if counts.shape != (self.num_candidates,):
            raise ValueError(
                f"Expected counts of shape ({self.num_candidates},), got {counts.shape}."
            )
        counts = np.maximum(counts, max(counts[counts > 0].min(initial=1.0), 1.0) * 1e-3)
        self.sampling_probability.assign((counts / counts.sum()).astype("float32"))

    def logits(self, queries, candidates, candidate_ids):
        """(B, B) corrected logits and (B, B) one-hot labels (the diagonal)."""
        queries = ops.cast(queries, "float32")
        candidates = ops.cast(candidates, "float32")
        logits = ops.matmul(queries, ops.transpose(candidates)) / self.temperature
        if self.logq_correction:
            probability = ops.take(self.sampling_probability, ops.cast(candidate_ids, "int32"))
            logits = self.correction(logits, ops.broadcast_to(probability, ops.shape(logits)))
        labels = ops.eye(ops.shape(logits)[0], dtype="float32")
        if self.remove_accidental_hits:
            ids = ops.cast(candidate_ids, "int32")
            same = ops.equal(ops.expand_dims(ids, 1), ops.expand_dims(ids, 0))
            hit = ops.logical_and(same, ops.equal(labels, 0.0))
            logits = ops.where(hit, ops.full_like(logits, _REMOVED), logits)
        return logits, labels

    def compute_loss(self, queries, candidates, candidate_ids, sample_weight=None):
        """Mean in-batch softmax cross-entropy of each query against its own candidate."""
        logits, labels = self.logits(queries, candidates, candidate_ids)
        if self.mining is not None:
            logits, labels = self.mining(logits, labels)
        losses = keras.losses.categorical_crossentropy(labels, logits, from_logits=True)
        if sample_weight is None:
            return ops.mean(losses)
        weight = ops.cast(ops.reshape(sample_weight, (-1,)), "float32")
        return ops.sum(losses * weight) / ops.maximum(ops.sum(weight), 1e-12)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_candidates=self.num_candidates,
            temperature=self.temperature,
            logq_correction=self.logq_correction,
            remove_accidental_hits=self.remove_accidental_hits,
            num_hard_negatives=self.num_hard_negatives,
        )
        return config
