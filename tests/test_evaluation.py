"""Full-ranking and sampled HR@K / NDCG@K / MRR against a sort-every-row numpy reference."""

import math

import keras
import numpy as np
import pytest

from keras_recsys import evaluation
from keras_recsys.evaluation import (
    evaluate_full_ranking,
    evaluate_sampled_ranking,
    full_ranking_metrics,
    popularity_scores,
    sample_negatives,
    sampled_ranking_metrics,
)

KS = (5, 10, 20)


# ------------------------------------------------------------- reference
def reference_rank(row_scores, target, candidates):
    """Sorts the candidates (target placed last, stable sort): ties end up above the target."""
    ranked = [i for i in candidates if i != target] + [target]
    order = np.argsort(-row_scores[ranked], kind="stable")
    return int(np.flatnonzero(np.asarray(ranked)[order] == target)[0]) + 1


def reference_full_ranks(scores, targets, exclude=None):
    num_items = scores.shape[1]
    ranks = []
    for row, target in enumerate(targets):
        history = set() if exclude is None else set(exclude[row].tolist())
        candidates = [i for i in range(2, num_items) if i == target or i not in history]
        ranks.append(reference_rank(scores[row], target, candidates))
    return ranks


def reference_metrics(ranks, ks=KS):
    n = len(ranks)
    out = {}
    for k in ks:
        out[f"HR@{k}"] = sum(1.0 for r in ranks if r <= k) / n
        out[f"NDCG@{k}"] = sum(1.0 / math.log2(r + 1) for r in ranks if r <= k) / n
    out["MRR"] = sum(1.0 / r for r in ranks) / n
    out["num_queries"] = float(n)
    return out


def assert_metrics_close(actual, expected, tol=1e-12):
    assert set(actual) == set(expected)
    for key, value in expected.items():
        assert isinstance(actual[key], float), key
        assert actual[key] == pytest.approx(value, abs=tol), key


def random_case(seed=0, num_queries=60, num_items=50, history=8, tie_decimals=1):
    """float32 scores (half the rows rounded: many ties), histories padded with 0."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(num_queries, num_items)).astype("float32")
    scores[::2] = np.round(scores[::2], tie_decimals)
    scores[3] = 0.25  # a constant row
    targets = rng.integers(2, num_items, num_queries)
    exclude = rng.integers(2, num_items, (num_queries, history))
    exclude[:, history // 2 :] *= rng.random((num_queries, history - history // 2)) < 0.5
    exclude[0, 0] = targets[0]  # a history holding the target (repeat consumption)
    exclude[1, :] = 0  # an empty history
    exclude[2, :4] = exclude[2, 0]  # one item seen four times
    exclude[4, :2] = 1  # out-of-vocabulary ids, never candidates
    return scores, targets, exclude


# ------------------------------------------------------------ full ranking
@pytest.mark.multibackend
def test_full_ranking_matches_sorting_reference_with_ties_and_histories():
    scores, targets, exclude = random_case()
    expected_ranks = reference_full_ranks(scores, targets, exclude)
    expected = reference_metrics(expected_ranks)

    ranks = evaluation.target_ranks(keras.ops.convert_to_tensor(scores), targets, exclude)
    np.testing.assert_array_equal(ranks, expected_ranks)

    sums = full_ranking_metrics(scores, targets, exclude, ks=KS)
    assert sums["num_queries"] == len(targets)
    means = {k: v if k == "num_queries" else v / sums["num_queries"] for k, v in sums.items()}
    assert_metrics_close(means, expected)

    result = evaluate_full_ranking(lambda q: scores[q], np.arange(len(targets)), targets, exclude)
    assert list(result) == [
        "HR@5", "NDCG@5", "HR@10", "NDCG@10", "HR@20", "NDCG@20", "MRR", "num_queries"
    ]  # fmt: skip
    assert_metrics_close(result, expected)

    # Without exclusion too.
    no_history = reference_metrics(reference_full_ranks(scores, targets))
    assert_metrics_close(
        evaluate_full_ranking(lambda q: scores[q], np.arange(len(targets)), targets), no_history
    )


@pytest.mark.multibackend
def test_batch_size_does_not_change_the_result():
    scores, targets, exclude = random_case(seed=1, num_queries=45)
    queries = {"row": np.arange(len(targets)), "history": exclude}

    batch_lengths = []

    def score_fn(batch):
        assert set(batch) == {"row", "history"}
        assert len(batch["row"]) == len(batch["history"])
        batch_lengths.append(len(batch["row"]))
        return keras.ops.convert_to_tensor(scores[batch["row"]])

    results = []
    for size in (1, 7, 1000):
        batch_lengths.clear()
        results.append(
            evaluate_full_ranking(score_fn, queries, targets, exclude, ks=KS, batch_size=size)
        )
        assert max(batch_lengths) == min(size, 45) and sum(batch_lengths) == 45
    assert results[0] == results[1] == results[2]
    assert_metrics_close(
        results[0], reference_metrics(reference_full_ranks(scores, targets, exclude))
    )


def test_ties_are_pessimistic_and_constant_model_scores_nothing():
    num_items = 30
    scores = np.zeros((4, num_items), "float32")
    targets = np.array([2, 10, 29, 5])
    result = evaluate_full_ranking(lambda q: scores[q], np.arange(4), targets, ks=(5, 10))
    assert result["HR@10"] == 0.0 and result["NDCG@10"] == 0.0
    assert result["MRR"] == pytest.approx(1 / (num_items - 2))
    # One tie above the target: rank 2, not 1.
    scores = np.array([[9.0, 9.0, 0.5, 0.5, 0.1, 0.0]], "float32")
    assert evaluation.target_ranks(scores, [2]).tolist() == [2]
    assert evaluation.target_ranks(scores, [3]).tolist() == [2]


def test_history_holding_the_target_keeps_the_target():
    scores = np.array([[5.0, 5.0, 0.9, 0.8, 0.7, 0.6, 0.1]], "float32")
    # Target 5; ids 2 and 3 score above it and are in the history, as is 5 itself.
    ranks = evaluation.target_ranks(scores, [5], exclude=[[2, 3, 5, 0, 0]])
    assert ranks.tolist() == [2]  # only id 4 is still above it; reserved 0, 1 never count
    assert evaluation.target_ranks(scores, [5]).tolist() == [4]


def test_agrees_with_keras_rs_metrics_when_there_are_no_ties():
    import keras_rs

    rng = np.random.default_rng(3)
    scores = rng.normal(size=(16, 40)).astype("float32")
    targets = rng.integers(2, 40, 16)
    exclude = rng.integers(0, 40, (16, 5))
    labels = np.zeros_like(scores)
    labels[np.arange(16), targets] = 1.0
    mask = np.ones(scores.shape, bool)
    mask[:, :2] = False
    for row in range(16):
        mask[row, [i for i in exclude[row] if i != targets[row]]] = False
    ours = evaluate_full_ranking(lambda q: scores[q], np.arange(16), targets, exclude, ks=(10,))
    for metric, key in [
        (keras_rs.metrics.NDCG(k=10), "NDCG@10"),
        (keras_rs.metrics.RecallAtK(k=10), "HR@10"),
        (keras_rs.metrics.MeanReciprocalRank(), "MRR"),
    ]:
        metric.update_state({"labels": labels, "mask": mask}, scores)
        assert float(metric.result()) == pytest.approx(ours[key], abs=1e-5), key


# ---------------------------------------------------------------- sampled
def test_sample_negatives_are_valid_distinct_and_reproducible():
    targets = np.array([5, 7, 9, 11])
    exclude = np.array([[5, 6, 0], [2, 3, 4], [0, 0, 0], [12, 13, 14]])
    negatives = sample_negatives(targets, 150, 100, exclude=exclude, seed=4)
    assert negatives.shape == (4, 100) and negatives.dtype == np.int64
    for row in range(4):
        assert len(set(negatives[row].tolist())) == 100
        assert negatives[row].min() >= 2 and negatives[row].max() < 150
        assert targets[row] not in negatives[row]
        assert not set(exclude[row].tolist()) & set(negatives[row].tolist())
    np.testing.assert_array_equal(
        negatives, sample_negatives(targets, 150, 100, exclude=exclude, seed=4)
    )
    # Nearly exhausted pool (101 drawable ids for 100 negatives) still works.
    tight = sample_negatives([5], 106, 100, exclude=[[6, 7, 0]], seed=0)
    assert len(set(tight[0].tolist()) | {5, 6, 7}) == 103
    with pytest.raises(ValueError, match="only 98 items .* num_negatives=100"):
        sample_negatives([5], 103, 100, exclude=[[6, 7, 0]], seed=0)


def test_popularity_sampling_follows_the_weights():
    num_items = 400
    popularity = np.zeros(num_items)
    popularity[2:200] = 1.0
    popularity[200:210] = 50.0
    negatives = sample_negatives(np.full(200, 3), num_items, 20, seed=0, item_popularity=popularity)
    assert negatives.max() < 210  # weight 0 never drawn
    heavy = np.mean(negatives >= 200)
    # Successive sampling of 20 without replacement: the 10 heavy items take most slots.
    assert heavy > 0.35
    with pytest.raises(ValueError, match="popularity > 0"):
        sample_negatives([3], num_items, 300, item_popularity=popularity)


@pytest.mark.multibackend
def test_sampled_protocol_matches_reference_with_the_same_negatives():
    scores, targets, exclude = random_case(seed=2, num_queries=40, num_items=300, history=10)
    negatives = sample_negatives(targets, 300, 100, exclude=exclude, seed=7)
    expected_ranks = [
        reference_rank(scores[row], targets[row], [targets[row], *negatives[row].tolist()])
        for row in range(len(targets))
    ]
    expected = reference_metrics(expected_ranks)

    sums = sampled_ranking_metrics(scores, targets, negatives, ks=KS)
    means = {k: v if k == "num_queries" else v / sums["num_queries"] for k, v in sums.items()}
    assert_metrics_close(means, expected)
    for batch_size in (7, 1000):  # sampling is row-sequential: batch size does not matter
        result = evaluate_sampled_ranking(
            lambda q: keras.ops.convert_to_tensor(scores[q]),
            np.arange(len(targets)),
            targets,
            exclude,
            num_negatives=100,
            ks=KS,
            seed=7,
            batch_size=batch_size,
        )
        assert_metrics_close(result, expected)


def test_sampled_metrics_overestimate_full_ranking():
    # Random scores: full HR@10 ~ 10 / 1998, sampled HR@10 ~ 10 / 101 (Krichene & Rendle).
    rng = np.random.default_rng(5)
    scores = rng.random((300, 2000)).astype("float32")
    targets = rng.integers(2, 2000, 300)
    exclude = rng.integers(0, 2000, (300, 20))
    queries = np.arange(300)
    full = evaluate_full_ranking(lambda q: scores[q], queries, targets, exclude, ks=(10,))
    sampled = evaluate_sampled_ranking(lambda q: scores[q], queries, targets, exclude, ks=(10,))
    assert sampled["HR@10"] >= full["HR@10"]
    assert sampled["HR@10"] == pytest.approx(10 / 101, abs=0.05)
    assert full["HR@10"] < 0.03
    assert sampled["MRR"] > full["MRR"]


# --------------------------------------------------------------- baseline
def test_popularity_scores_and_the_popularity_baseline():
    ragged = [[2, 3, 3], [4, 3, 2, 5], [3]]
    padded = np.array([[0, 2, 3, 3], [4, 3, 2, 5], [0, 0, 1, 3]])
    pop = popularity_scores(ragged, 7)
    np.testing.assert_array_equal(pop, [0, 0, 2, 4, 1, 1, 0])
    np.testing.assert_array_equal(popularity_scores(padded, 7), pop)
    with pytest.raises(ValueError, match="outside the id space"):
        popularity_scores([[2, 9]], 7)

    histories = np.array([[2, 0], [3, 4], [0, 0]])
    targets = np.array([3, 2, 6])
    result = evaluate_full_ranking(
        lambda q: np.broadcast_to(pop, (len(q), len(pop))), histories, targets, histories, ks=(1, 2)
    )
    # Target 3 first (2 excluded); 2 first (3, 4 excluded); 6 (count 0) ties with 2..5: last.
    ranks = reference_full_ranks(np.tile(pop, (3, 1)).astype("float32"), targets, histories)
    assert ranks == [1, 1, 5]
    assert_metrics_close(result, reference_metrics(ranks, ks=(1, 2)))


# ------------------------------------------------------------- bad inputs
def test_bad_inputs_raise_clear_errors():
    scores, targets, exclude = random_case(num_queries=6)
    bad_targets = targets.copy()
    bad_targets[[1, 4]] = [0, 1]
    with pytest.raises(ValueError, match="2 of 6 targets .*padding.*OOV.*drop"):
        full_ranking_metrics(scores, bad_targets)
    with pytest.raises(ValueError, match="2 of 6 targets"):
        evaluate_full_ranking(lambda q: scores[q], np.arange(6), bad_targets)
    with pytest.raises(ValueError, match=r"K=60 .*number of items ranked \(48"):
        full_ranking_metrics(scores, targets, ks=(10, 60))
    with pytest.raises(ValueError, match=r"K=60 .*number of items ranked \(48"):
        evaluate_full_ranking(lambda q: scores[q], np.arange(6), targets, ks=(60,))
    with pytest.raises(ValueError, match=r"K=200 .*\(101"):
        evaluate_sampled_ranking(lambda q: scores[q], np.arange(6), targets, ks=(200,))
    with pytest.raises(ValueError, match=r"\(5, 50\).*\(6,\)"):
        full_ranking_metrics(scores[:5], targets)
    with pytest.raises(ValueError, match=r"\(5, 8\).*\(6,\)"):
        full_ranking_metrics(scores, targets, exclude[:5])
    with pytest.raises(ValueError, match=r"\(7,\).*\(6,\)"):
        evaluate_full_ranking(lambda q: scores[q], np.arange(7), targets)
    with pytest.raises(ValueError, match=r"\(3, 50\).*\(6,\)"):
        evaluate_full_ranking(lambda q: scores[:3], np.arange(6), targets)
    nan_scores = scores.copy()
    nan_scores[2, 7] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        full_ranking_metrics(nan_scores, targets)
