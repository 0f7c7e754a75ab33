"""Offline top-K evaluation of next-item and retrieval models over the whole catalog.

Each query (a user history, a user id...) has one held-out target item. A
model scores every id of the catalog; the target's **rank** among the
candidates gives the metrics:

* HR@K (hit rate, = Recall@K with one target): 1 if rank <= K, else 0;
* NDCG@K: 1 / log2(rank + 1) if rank <= K, else 0 (the ideal DCG is 1);
* MRR: 1 / rank, over the full list (no cutoff).

Candidates are the real items, ids 2..V-1 (id 0 is padding, id 1 the
out-of-vocabulary id, V = `num_items`), minus the query's history (the items
the user already had), except that the target itself always stays a
candidate. The rank is the number of candidates that score at least as
high as the target, plus one: it needs no sort (O(V) per query) and counts
ties pessimistically, so a model that scores everything alike ranks last.
Scores are compared in float32 (what models output); a NaN score raises.

**Full ranking is the default protocol.** `evaluate_sampled_ranking` (the
target against 100 sampled negatives) is provided for comparison with
papers that use it; its numbers are biased (see its docstring).

The scoring side (masking, comparisons, gathers) runs in `keras.ops` on the
current backend, batch by batch (memory: batch_size x V scores); only the
(B,) ranks come back to numpy, where the metrics are computed.

Why not `keras_rs.metrics` (NDCG, RecallAtK, MeanReciprocalRank): they are
stateful `keras.metrics.Mean` subclasses over dense (B, list_size) labels.
They sort each list (O(V log V) per query), break score ties at random or
by position rather than pessimistically (a constant model would get a
positive score by luck), and average in float32 so that results depend on
how queries are batched. One target and a candidate mask reduce all three
metrics to the target's rank, which is what this module computes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_recsys.features.feature import NUM_RESERVED_IDS

DEFAULT_KS = (5, 10, 20)
# Rejection rounds before the sampler falls back to an explicit draw.
_MAX_REJECTION_ROUNDS = 8


# ---------------------------------------------------------------- inputs
def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, list | tuple | int | float):
        return np.asarray(x)
    return np.asarray(ops.convert_to_numpy(x))


def _check_ks(ks: int | Iterable[int]) -> tuple[int, ...]:
    ks = (ks,) if isinstance(ks, int | np.integer) else tuple(ks)
    if not ks:
        raise ValueError("ks is empty: pass at least one cutoff K, e.g. ks=(10,).")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"Every K must be a positive integer; got ks={ks}.")
    return tuple(int(k) for k in ks)


def _check_ks_fit(ks: tuple[int, ...], num_ranked: int, what: str) -> None:
    for k in ks:
        if k > num_ranked:
            raise ValueError(
                f"K={k} is larger than the number of items ranked ({num_ranked}{what})."
            )


def _check_targets(targets: Any, num_items: int | None = None) -> np.ndarray:
    targets = _to_numpy(targets)
    if targets.ndim == 2 and targets.shape[1] == 1:
        targets = targets[:, 0]
    if targets.ndim != 1:
        raise ValueError(
            f"targets must be a 1-D array of item ids (B,); got shape {targets.shape}."
        )
    if targets.size and not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"targets must be integer item ids; got dtype {targets.dtype}.")
    targets = targets.astype(np.int64)
    reserved = int(np.count_nonzero((targets >= 0) & (targets < NUM_RESERVED_IDS)))
    if reserved:
        raise ValueError(
            f"{reserved} of {len(targets)} targets are the padding id 0 or the OOV id 1: "
            "they have no item to rank; drop such queries before evaluating."
        )
    if num_items is not None:
        bad = int(np.count_nonzero((targets < 0) | (targets >= num_items)))
        if bad:
            raise ValueError(f"{bad} targets are outside the id space 0..{num_items - 1}.")
    return targets


def _check_exclude(exclude: Any, batch: int, num_items: int) -> np.ndarray | None:
    if exclude is None:
        return None
    exclude = _to_numpy(exclude)
    if exclude.ndim == 1 and batch == 1:
        exclude = exclude[None, :]
    if exclude.ndim != 2 or exclude.shape[0] != batch:
        raise ValueError(
            f"exclude must have shape (B, H) with B = {batch} (one row of ids per "
            f"target, padded with 0); got shape {exclude.shape} for targets of shape ({batch},)."
        )
    if exclude.size and not np.issubdtype(exclude.dtype, np.integer):
        raise ValueError(f"exclude must hold integer item ids; got dtype {exclude.dtype}.")
    exclude = exclude.astype(np.int64)
    bad = int(np.count_nonzero((exclude < 0) | (exclude >= num_items)))
    if bad:
        raise ValueError(f"{bad} ids in exclude are outside the id space 0..{num_items - 1}.")
    return exclude


def _score_matrix(scores: Any, batch: int):
    """(B, V) tensor on the current backend (shape checked against B targets), and V."""
    scores = ops.convert_to_tensor(scores)
    shape = tuple(ops.shape(scores))
    if len(shape) != 2 or shape[0] != batch:
        raise ValueError(
            f"scores must have shape (B, V) with one row per target; got scores of shape "
            f"{shape} for targets of shape ({batch},)."
        )
    if shape[1] <= NUM_RESERVED_IDS:
        raise ValueError(f"scores has {shape[1]} ids: no real item (ids 0 and 1 are reserved).")
    return scores, int(shape[1])


def _check_no_nan(nan_rows: Any) -> None:
    count = int(np.count_nonzero(_to_numpy(nan_rows)))
    if count:
        raise ValueError(f"scores of {count} queries contain NaN: their rank is undefined.")


# ----------------------------------------------------------------- ranks
def target_ranks(scores: Any, targets: Any, exclude: Any = None) -> np.ndarray:
    """1-based rank of each target among all candidates: (B,) int64.

    rank = 1 + |{i candidate, i != target : score_i >= score_target}|, candidates
    being ids 2..V-1 not in the row's `exclude` (the target is never excluded).

    Args:
        scores: (B, V) scores of every id (any backend tensor or array).
        targets: (B,) target ids (2..V-1).
        exclude: optional (B, H) ids to drop from the candidates (padded with 0).

    Returns:
        The ranks as a numpy array.

    Example:

    >>> target_ranks([[0.0, 0.0, 0.3, 0.9, 0.3]], [2])
    array([3])
    """
    targets = _check_targets(targets)
    batch = len(targets)
    scores, num_items = _score_matrix(scores, batch)
    targets = _check_targets(targets, num_items)
    exclude = _check_exclude(exclude, batch, num_items)

    target_ids = targets[:, None].astype(np.int32)
    indices = None
    if exclude is not None and exclude.shape[1]:
        # (row, id) pairs in numpy, marked by a scatter: memory stays B x V (no
        # one-hot (B, H, V)). Padding marks id 0, never a candidate anyway, so the
        # shape stays (B * H, 2) and each batch size compiles once.
        rows = np.repeat(np.arange(batch, dtype=np.int32), exclude.shape[1])
        indices = np.stack([rows, exclude.reshape(-1).astype(np.int32)], axis=1)
    counts, nan_rows = _compiled(_count_full)(scores, target_ids, indices)
    _check_no_nan(nan_rows)
    return _to_numpy(counts).astype(np.int64) + 1


def _count_full(scores, target_ids, indices):
    """(B,) candidates scoring >= their row's target, and (B,) rows with a NaN score."""
    scores = ops.cast(scores, "float32")
    batch, num_items = ops.shape(scores)
    ids = ops.expand_dims(ops.arange(num_items, dtype="int32"), 0)
    target_scores = ops.take_along_axis(scores, target_ids, axis=1)
    candidate = ops.logical_and(
        ops.greater_equal(ids, NUM_RESERVED_IDS), ops.not_equal(ids, target_ids)
    )
    if indices is not None:
        seen = ops.scatter(indices, ops.ones((indices.shape[0],), "int32"), (batch, num_items))
        candidate = ops.logical_and(candidate, ops.equal(seen, 0))
    # Ties count as ranked above the target (pessimistic).
    above = ops.logical_and(candidate, ops.greater_equal(scores, target_scores))
    counts = ops.sum(ops.cast(above, "int32"), axis=1)
    return counts, ops.any(ops.isnan(scores), axis=1)


def _count_sampled(scores, ranked):
    """(B,) of the ranked ids [target, negatives...] scoring >= the target; NaN rows."""
    gathered = ops.take_along_axis(ops.cast(scores, "float32"), ranked, axis=1)
    above = ops.greater_equal(gathered[:, 1:], gathered[:, :1])  # ties: pessimistic
    counts = ops.sum(ops.cast(above, "int32"), axis=1)
    return counts, ops.any(ops.isnan(gathered), axis=1)


@functools.cache
def _compiled(fn):
    """`fn` itself, or `jax.jit(fn)` on JAX, where eager ops compile one by one per shape."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(fn)
    return fn


def _sampled_ranks(scores: Any, targets: np.ndarray, negatives: Any) -> np.ndarray:
    """1-based rank of each target among itself and its (B, m) sampled negatives."""
    batch = len(targets)
    scores, num_items = _score_matrix(scores, batch)
    targets = _check_targets(targets, num_items)
    negatives = _to_numpy(negatives)
    if negatives.ndim != 2 or negatives.shape[0] != batch or negatives.shape[1] < 1:
        raise ValueError(
            f"negatives must have shape (B, m) with B = {batch}, m >= 1; got shape "
            f"{negatives.shape} for targets of shape ({batch},)."
        )
    negatives = negatives.astype(np.int64)
    if np.any((negatives < NUM_RESERVED_IDS) | (negatives >= num_items)):
        raise ValueError(f"negatives must be real item ids 2..{num_items - 1}.")
    if np.any(negatives == targets[:, None]):
        raise ValueError("a query's sampled negatives contain its own target.")
    ranked = np.concatenate([targets[:, None], negatives], axis=1).astype(np.int32)
    counts, nan_rows = _compiled(_count_sampled)(scores, ranked)
    _check_no_nan(nan_rows)
    return _to_numpy(counts).astype(np.int64) + 1


def _metric_sums(ranks: np.ndarray, ks: tuple[int, ...]) -> dict[str, float]:
    # math.fsum: the exactly rounded sum, the same whatever the order of the ranks.
    ranks = np.asarray(ranks, dtype=np.int64)
    sums: dict[str, float] = {}
    for k in ks:
        hits = ranks[ranks <= k]
        sums[f"HR@{k}"] = float(len(hits))
        sums[f"NDCG@{k}"] = math.fsum((1.0 / np.log2(hits + 1.0)).tolist())
    sums["MRR"] = math.fsum((1.0 / ranks).tolist())
    sums["num_queries"] = float(len(ranks))
    return sums


def metrics_from_ranks(ranks: Any, ks: int | Iterable[int] = DEFAULT_KS) -> dict[str, float]:
    """Mean HR@K, NDCG@K and MRR of 1-based target ranks, plus num_queries.

    HR@K = mean[r <= K], NDCG@K = mean([r <= K] / log2(r + 1)), MRR = mean 1 / r.

    Example:

    >>> metrics_from_ranks([1, 3, 50], ks=(10,))["HR@10"]
    0.6666666666666666
    """
    ks = _check_ks(ks)
    ranks = _to_numpy(ranks).reshape(-1)
    if ranks.size == 0:
        raise ValueError("No queries to evaluate (ranks is empty).")
    if np.any(ranks < 1):
        raise ValueError("ranks are 1-based: every rank must be >= 1.")
    sums = _metric_sums(ranks, ks)
    count = sums["num_queries"]
    return {key: (value if key == "num_queries" else value / count) for key, value in sums.items()}


def full_ranking_metrics(
    scores: Any,
    targets: Any,
    exclude: Any = None,
    ks: int | Iterable[int] = DEFAULT_KS,
) -> dict[str, float]:
    """Summed HR@K, NDCG@K, MRR of one batch over the whole catalog, and num_queries.

    Per query, with rank r = 1 + |{candidates scoring >= the target}|:
    HR@K = [r <= K], NDCG@K = [r <= K] / log2(r + 1), MRR = 1 / r.

    The values are **sums** over the batch: add the dicts of several batches
    key by key and divide each metric by `num_queries` to get the means
    (`evaluate_full_ranking` does this for you, independently of batch size).

    Candidates are ids 2..V-1 (0 and 1 are reserved, never ranked) minus the
    row's `exclude` ids. A history item equal to the target is **not**
    excluded for that row: the target always stays a candidate, so that
    data with repeat consumption (the next item is one the user already
    had) keeps a well-defined rank. Ties are pessimistic: a candidate
    scoring exactly the target's score counts as ranked above it, so a
    constant model gets rank = number of candidates, not 1.

    Args:
        scores: (B, V) scores of every id (tensor of any backend, or array).
        targets: (B,) target ids, never 0 (padding) or 1 (OOV).
        exclude: optional (B, H) ids to remove from each row's candidates,
            typically the user's history, padded with 0.
        ks: the cutoffs K; each must be <= V - 2, the number of items.

    Returns:
        {"HR@K": sum, "NDCG@K": sum, ..., "MRR": sum, "num_queries": B}.

    Example:

    >>> sums = full_ranking_metrics(model.score_all(history), next_item, exclude=history)
    >>> sums["HR@10"] / sums["num_queries"]
    """
    ks = _check_ks(ks)
    targets = _check_targets(targets)
    num_items = _num_ids(scores)
    _check_ks_fit(ks, num_items - NUM_RESERVED_IDS, f": ids 2..{num_items - 1}")
    return _metric_sums(target_ranks(scores, targets, exclude), ks)


def sampled_ranking_metrics(
    scores: Any,
    targets: Any,
    negatives: Any,
    ks: int | Iterable[int] = DEFAULT_KS,
) -> dict[str, float]:
    """Summed HR@K, NDCG@K, MRR of one batch, each target ranked among its negatives only.

    Per query, with r = 1 + |{j : score(negatives_j) >= score(target)}| (ties
    pessimistic): HR@K = [r <= K], NDCG@K = [r <= K] / log2(r + 1), MRR = 1 / r.
    Biased estimates of the full-ranking metrics: see `evaluate_sampled_ranking`.

    Args:
        scores: (B, V) scores of every id.
        targets: (B,) target ids.
        negatives: (B, m) sampled negative ids per query (`sample_negatives`).
        ks: the cutoffs K; each must be <= m + 1.

    Returns:
        {"HR@K": sum, "NDCG@K": sum, ..., "MRR": sum, "num_queries": B}.

    Example:

    >>> negatives = sample_negatives(next_item, num_items, 100, exclude=history, seed=0)
    >>> sampled_ranking_metrics(model.score_all(history), next_item, negatives)
    """
    ks = _check_ks(ks)
    targets = _check_targets(targets)
    num_ranked = int(_to_numpy(negatives).shape[-1]) + 1
    _check_ks_fit(ks, num_ranked, ": the target and its sampled negatives")
    return _metric_sums(_sampled_ranks(scores, targets, negatives), ks)


# -------------------------------------------------------------- sampling
def _popularity_weights(item_popularity: Any, num_items: int | None) -> np.ndarray:
    weights = np.asarray(_to_numpy(item_popularity), dtype=np.float64).copy()
    if weights.ndim != 1 or (num_items is not None and len(weights) != num_items):
        raise ValueError(
            f"item_popularity must have shape (V,) = ({num_items},), one weight per id; "
            f"got shape {weights.shape}."
        )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError("item_popularity must be finite and non-negative.")
    weights[:NUM_RESERVED_IDS] = 0.0
    return weights


def sample_negatives(
    targets: Any,
    num_items: int,
    num_negatives: int = 100,
    exclude: Any = None,
    seed: int | np.random.Generator | None = 0,
    item_popularity: Any = None,
) -> np.ndarray:
    """(B, num_negatives) distinct negative ids per query, for the sampled protocol.

    P(item i) ∝ 1 (uniform) or ∝ item_popularity[i], without replacement,
    over ids 2..V-1 other than the query's target and its `exclude` ids.

    Deterministic: rows are drawn one after the other from one
    `np.random.default_rng(seed)` stream, so sampling all queries at once or
    batch by batch from the same Generator gives the same negatives.

    Args:
        targets: (B,) target ids.
        num_items: V, the size of the id space (ids 0 and 1 included).
        num_negatives: m, negatives per query.
        exclude: optional (B, H) ids never drawn for that row (the history).
        seed: an int seed, or a `np.random.Generator` to continue.
        item_popularity: optional (V,) non-negative weights (e.g.
            `popularity_scores`); items of weight 0 are never drawn.

    Returns:
        An int64 array (B, num_negatives).

    Example:

    >>> sample_negatives([5, 7], num_items=1000, num_negatives=100, seed=0).shape
    (2, 100)
    """
    num_items = int(num_items)
    num_negatives = int(num_negatives)
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be >= 1; got {num_negatives}.")
    targets = _check_targets(targets, num_items)
    exclude = _check_exclude(exclude, len(targets), num_items)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if item_popularity is None:
        weights = cdf = None
        drawable = np.ones(num_items, dtype=bool)
        drawable[:NUM_RESERVED_IDS] = False
    else:
        weights = _popularity_weights(item_popularity, num_items)
        drawable = weights > 0
        cdf = np.cumsum(weights)
        last_drawable = int(np.flatnonzero(drawable)[-1]) if drawable.any() else 0
    num_drawable = int(np.count_nonzero(drawable))

    negatives = np.empty((len(targets), num_negatives), dtype=np.int64)
    for row, target in enumerate(targets.tolist()):
        banned = {target}
        if exclude is not None:
            banned.update(exclude[row].tolist())
        available = num_drawable - sum(1 for i in banned if drawable[i])
        if available < num_negatives:
            raise ValueError(
                f"Query {row} has only {available} items that can be drawn as negatives "
                f"(not its target or history{'' if weights is None else ', popularity > 0'}), "
                f"fewer than num_negatives={num_negatives}."
            )
        chosen: dict[int, None] = {}  # insertion-ordered set
        for _ in range(_MAX_REJECTION_ROUNDS):
            need = num_negatives - len(chosen)
            if need == 0:
                break
            size = 2 * need + 8
            if cdf is None:
                draws = rng.integers(NUM_RESERVED_IDS, num_items, size)
            else:
                draws = np.searchsorted(cdf, rng.random(size) * cdf[-1], side="right")
                draws = np.minimum(draws, last_drawable)
            for item in draws.tolist():
                if item not in banned and item not in chosen:
                    chosen[item] = None
                    if len(chosen) == num_negatives:
                        break
        need = num_negatives - len(chosen)
        if need:  # few drawable items left: draw the rest explicitly
            allowed = drawable.copy()
            allowed[list(banned | set(chosen))] = False
            pool = np.flatnonzero(allowed)
            p = None if weights is None else weights[pool] / weights[pool].sum()
            for item in rng.choice(pool, need, replace=False, p=p).tolist():
                chosen[int(item)] = None
        negatives[row] = list(chosen)
    return negatives


# ------------------------------------------------------------- batching
def _num_rows(queries: Any) -> tuple[int, str]:
    if isinstance(queries, Mapping):
        if not queries:
            raise ValueError("queries is an empty dict.")
        lengths = {name: len(value) for name, value in queries.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"The arrays of queries differ in length: {lengths}.")
        shapes = {name: np.shape(value) for name, value in queries.items()}
        return next(iter(lengths.values())), str(shapes)
    if isinstance(queries, tuple):
        lengths = [len(value) for value in queries]
        if len(set(lengths)) != 1:
            raise ValueError(f"The arrays of queries differ in length: {lengths}.")
        return lengths[0], str(tuple(np.shape(v) for v in queries))
    return len(queries), str(np.shape(queries))


def _slice(queries: Any, start: int, stop: int) -> Any:
    if isinstance(queries, Mapping):
        return {name: value[start:stop] for name, value in queries.items()}
    if isinstance(queries, tuple):
        return tuple(value[start:stop] for value in queries)
    return queries[start:stop]


def _prepare(queries: Any, targets: Any, exclude: Any, batch_size: int):
    if isinstance(queries, list):
        queries = np.asarray(queries)
    targets = _check_targets(targets)
    num_queries, query_shape = _num_rows(queries)
    if num_queries != len(targets):
        raise ValueError(
            f"queries and targets differ in batch size: queries of shape {query_shape}, "
            f"targets of shape {targets.shape}."
        )
    if num_queries == 0:
        raise ValueError("No queries to evaluate.")
    if exclude is not None:
        exclude = _to_numpy(exclude)
        if exclude.ndim != 2 or exclude.shape[0] != num_queries:
            raise ValueError(
                f"exclude must have shape (B, H) with B = {num_queries}; got exclude of shape "
                f"{exclude.shape}, targets of shape {targets.shape}."
            )
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
    return queries, targets, exclude, num_queries


def _batches(queries, targets, exclude, num_queries, batch_size, score_fn):
    for start in range(0, num_queries, int(batch_size)):
        stop = min(start + int(batch_size), num_queries)
        scores = score_fn(_slice(queries, start, stop))
        excluded = None if exclude is None else exclude[start:stop]
        yield scores, targets[start:stop], excluded


def _num_ids(scores: Any) -> int:
    shape = tuple(scores.shape) if hasattr(scores, "shape") else np.shape(scores)
    if len(shape) != 2:
        raise ValueError(f"score_fn must return (batch, V) scores; got shape {shape}.")
    return int(shape[1])


def evaluate_full_ranking(
    score_fn: Callable[[Any], Any],
    queries: Any,
    targets: Any,
    exclude: Any = None,
    ks: int | Iterable[int] = DEFAULT_KS,
    batch_size: int = 256,
) -> dict[str, float]:
    """Mean HR@K, NDCG@K and MRR of a scorer, each target ranked against the whole catalog.

    rank r = 1 + |{candidates i != target : s_i >= s_target}|; HR@K = mean[r <= K],
    NDCG@K = mean([r <= K] / log2(r + 1)), MRR = mean 1 / r (no cutoff).

    This is the default, unbiased protocol. Candidates are ids 2..V-1 minus
    the query's `exclude` ids (its history); a history item equal to the
    target is not excluded for that row (the target always stays a
    candidate, which matters with repeat consumption). Ties are pessimistic:
    a candidate scoring the same as the target is ranked above it. The rank
    is a count (O(V) per query, no sort), computed with `keras.ops` on the
    current backend; memory is bounded by batch_size x V scores. The ranks of
    all queries are kept (one int each) and reduced once at the end, so the
    result does not depend on `batch_size`.

    Args:
        score_fn: callable, a batch of queries -> (b, V) scores of every id
            (a backend tensor or array), e.g. `model.score_all`.
        queries: a dict of arrays (or one array, or a tuple of arrays), sliced
            along axis 0 into batches for `score_fn`.
        targets: (N,) target ids (not 0 or 1: drop such queries first).
        exclude: optional (N, H) ids removed from each query's candidates,
            padded with 0; usually the history itself.
        ks: the cutoffs K, each <= V - 2 (the number of items).
        batch_size: queries scored at once.

    Returns:
        {"HR@5", "NDCG@5", "HR@10", ..., "MRR", "num_queries"} as Python floats.

    Example:

    >>> evaluate_full_ranking(model.score_all, {"history": h}, next_item, exclude=h)
    {'HR@5': 0.061, 'NDCG@5': 0.038, 'HR@10': 0.102, ..., 'MRR': 0.043, 'num_queries': 6040.0}
    """
    ks = _check_ks(ks)
    queries, targets, exclude, num_queries = _prepare(queries, targets, exclude, batch_size)
    ranks = []
    for scores, batch_targets, batch_exclude in _batches(
        queries, targets, exclude, num_queries, batch_size, score_fn
    ):
        num_items = _num_ids(scores)
        _check_ks_fit(ks, num_items - NUM_RESERVED_IDS, f": ids 2..{num_items - 1}")
        ranks.append(target_ranks(scores, batch_targets, batch_exclude))
    return metrics_from_ranks(np.concatenate(ranks), ks)


def evaluate_sampled_ranking(
    score_fn: Callable[[Any], Any],
    queries: Any,
    targets: Any,
    exclude: Any = None,
    num_negatives: int = 100,
    ks: int | Iterable[int] = DEFAULT_KS,
    seed: int | np.random.Generator | None = 0,
    item_popularity: Any = None,
    batch_size: int = 256,
) -> dict[str, float]:
    """Sampled-negatives HR@K, NDCG@K and MRR: each target ranked against m sampled items.

    r = 1 + |{j <= m : s(negative_j) >= s(target)}|; HR@K = mean[r <= K],
    NDCG@K = mean([r <= K] / log2(r + 1)), MRR = mean 1 / r.

    **Biased: use `evaluate_full_ranking` (the default protocol) to compare
    models.** Krichene & Rendle (KDD 2020, "On Sampled Metrics for Item
    Recommendation") show that sampled metrics are inconsistent with the
    full-ranking ones: they overestimate them (a rank among 101 items is
    far smaller than among the whole catalog) and can even reverse the order
    of two models. This protocol exists to reproduce papers that report it.

    Negatives (`sample_negatives`) are `num_negatives` distinct ids 2..V-1,
    neither the target nor in the query's `exclude` ids, drawn uniformly or
    proportionally to `item_popularity`. Queries are sampled in order from one
    `np.random.default_rng(seed)` stream, so the negatives (and the result)
    do not depend on `batch_size`, and `sample_negatives(targets, V,
    num_negatives, exclude, seed, item_popularity)` reproduces them.

    Args:
        score_fn: callable, a batch of queries -> (b, V) scores of every id.
        queries: a dict of arrays (or one array), sliced along axis 0.
        targets: (N,) target ids (not 0 or 1).
        exclude: optional (N, H) ids never drawn as negatives (the history).
        num_negatives: m, negatives per query (100 in the literature).
        ks: the cutoffs K, each <= m + 1.
        seed: seed of the negative sampler (or a `np.random.Generator`).
        item_popularity: optional (V,) weights: popularity-proportional
            sampling instead of uniform.
        batch_size: queries scored at once.

    Returns:
        {"HR@5", "NDCG@5", ..., "MRR", "num_queries"} as Python floats.

    Example:

    >>> evaluate_sampled_ranking(model.score_all, {"history": h}, next_item, exclude=h)
    """
    ks = _check_ks(ks)
    _check_ks_fit(ks, int(num_negatives) + 1, ": the target and its sampled negatives")
    queries, targets, exclude, num_queries = _prepare(queries, targets, exclude, batch_size)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    ranks = []
    for scores, batch_targets, batch_exclude in _batches(
        queries, targets, exclude, num_queries, batch_size, score_fn
    ):
        negatives = sample_negatives(
            batch_targets,
            _num_ids(scores),
            num_negatives,
            exclude=batch_exclude,
            seed=rng,
            item_popularity=item_popularity,
        )
        ranks.append(_sampled_ranks(scores, batch_targets, negatives))
    return metrics_from_ranks(np.concatenate(ranks), ks)


# ------------------------------------------------------------- baseline
def popularity_scores(train_sequences: Any, num_items: int) -> np.ndarray:
    """(V,) number of occurrences of each id in the training data (ids 0, 1 get 0).

    pop[i] = |{occurrences of i in train_sequences}|, for i >= 2.

    A most-popular baseline scorer, and the weights of popularity sampling.

    Args:
        train_sequences: a list of id lists (ragged), or a padded 2-D array
            (or a flat 1-D array) of internal ids.
        num_items: V, the size of the id space.

    Returns:
        An int64 array of counts, shape (num_items,).

    Example:

    >>> pop = popularity_scores(train_histories, num_items)
    >>> evaluate_full_ranking(lambda q: np.broadcast_to(pop, (len(q), len(pop))), h, y, h)
    """
    num_items = int(num_items)
    if isinstance(train_sequences, np.ndarray) and train_sequences.dtype != object:
        ids = train_sequences.reshape(-1)
    else:
        parts = [np.asarray(_to_numpy(row)).reshape(-1) for row in train_sequences]
        ids = np.concatenate(parts) if parts else np.zeros((0,), dtype=np.int64)
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"train_sequences must hold integer ids; got dtype {ids.dtype}.")
    ids = ids.astype(np.int64)
    bad = int(np.count_nonzero((ids < 0) | (ids >= num_items)))
    if bad:
        raise ValueError(
            f"{bad} ids in train_sequences are outside the id space 0..{num_items - 1}."
        )
    counts = np.bincount(ids, minlength=num_items).astype(np.int64)
    counts[:NUM_RESERVED_IDS] = 0
    return counts
