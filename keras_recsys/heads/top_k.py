"""Top-k over all items with per-query exclusions: what retrieval serving returns."""

from __future__ import annotations

from keras import ops

from keras_recsys.features.feature import NUM_RESERVED_IDS

# Far below any real score, finite so that sorting and softmax stay defined.
EXCLUDED_SCORE = -1e9


def exclude_items(scores, ids):
    """Scores (B, V) with each row's `ids` (B, H) pushed to the bottom (pad id 0 included)."""
    batch, length = ops.shape(ids)[0], ops.shape(ids)[1]
    rows = ops.repeat(ops.arange(batch, dtype="int32"), length)
    indices = ops.stack([rows, ops.reshape(ops.cast(ids, "int32"), (-1,))], axis=1)
    # A scatter of ones, not a one-hot (B, H, V): memory stays B × V.
    seen = ops.scatter(indices, ops.ones((batch * length,), scores.dtype), ops.shape(scores))
    return ops.where(seen > 0, ops.full_like(scores, EXCLUDED_SCORE), scores)


def top_k_items(scores, k: int, exclude=None) -> dict:
    """{"scores": (B, k), "item_ids": (B, k)} of the best items, `exclude` (B, H) left out.

    Ids 0 (padding) and 1 (out of vocabulary) never rank.
    """
    num_items = ops.shape(scores)[1]
    if k > num_items - NUM_RESERVED_IDS:
        raise ValueError(
            f"k={k} is larger than the number of items ({num_items - NUM_RESERVED_IDS})."
        )
    reserved = ops.arange(num_items) < NUM_RESERVED_IDS
    scores = ops.where(reserved, ops.full_like(scores, EXCLUDED_SCORE), scores)
    if exclude is not None:
        scores = exclude_items(scores, exclude)
    top_scores, top_ids = ops.top_k(scores, k)
    return {"scores": top_scores, "item_ids": top_ids}
