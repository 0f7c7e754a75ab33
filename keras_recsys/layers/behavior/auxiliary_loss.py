"""DIEN's auxiliary loss: each interest state predicts the next behaviour."""

from __future__ import annotations

from keras import ops


def next_behavior_loss(states, behaviors, negatives, mask):
    """L_aux: the mean, over pairs of consecutive real behaviours, of
    −log σ(⟨h_t, e_{t+1}⟩) − log(1 − σ(⟨h_t, ê_{t+1}⟩)).

    h_t is the interest extractor's state after behaviour t, e_{t+1} the
    embedding of the behaviour that followed it and ê_{t+1} that of a sampled
    item the user did not take at step t+1. Only steps t where both t and
    t+1 are real (`mask`) count; a batch without such a pair gives 0. The
    paper sums over t and averages over examples; averaging over the pairs
    keeps the loss's scale independent of the history lengths, so the
    weight α of L = L_target + α · L_aux means the same for short and long
    histories.

    Reference: Zhou et al., 2019, "Deep Interest Evolution Network for
    Click-Through Rate Prediction" (AAAI), the interest extractor layer.

    Args:
        states: (B, L, d) extractor states h_t.
        behaviors: (B, L, d) behaviour embeddings e_t.
        negatives: (B, L, d) embeddings of the sampled negatives ê_t.
        mask: (B, L), true at real behaviours.

    Returns:
        A float32 scalar.

    Example:

    >>> h = keras.random.normal((4, 20, 8))
    >>> e, neg = keras.random.normal((4, 20, 8)), keras.random.normal((4, 20, 8))
    >>> next_behavior_loss(h, e, neg, keras.ops.ones((4, 20), "bool"))
    """
    states = ops.cast(states[:, :-1], "float32")
    positive = ops.sum(states * ops.cast(behaviors[:, 1:], "float32"), axis=-1)
    negative = ops.sum(states * ops.cast(negatives[:, 1:], "float32"), axis=-1)
    mask = ops.cast(mask, "bool")
    pairs = ops.cast(ops.logical_and(mask[:, :-1], mask[:, 1:]), "float32")
    # −log σ(x) = softplus(−x) and −log(1 − σ(x)) = softplus(x), stable for large |x|.
    losses = ops.softplus(-positive) + ops.softplus(negative)
    return ops.sum(losses * pairs) / ops.maximum(ops.sum(pairs), 1.0)
