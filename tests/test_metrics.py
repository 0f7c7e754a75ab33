"""gAUC, AUC, log loss and NE against scikit-learn and by hand; `evaluate`."""

import keras
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

import keras_recsys as kr
from keras_recsys import metrics


def _random_case(seed, n=2000, groups=60):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.round(rng.random(n) + 0.4 * labels, 2)  # rounded: many ties
    weights = rng.random(n)
    group = rng.integers(0, groups, n)
    return labels, scores, weights, group


def gauc_sklearn(labels, scores, groups, weights=None):
    """Per-group roc_auc_score over groups with both classes, weighted by size."""
    total = size = 0.0
    for g in np.unique(groups):
        rows = groups == g
        if len(np.unique(labels[rows])) < 2:
            continue
        w = None if weights is None else weights[rows]
        n = rows.sum() if weights is None else w.sum()
        total += n * roc_auc_score(labels[rows], scores[rows], sample_weight=w)
        size += n
    return total / size


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_sklearn_with_ties_and_weights(seed):
    labels, scores, weights, _ = _random_case(seed)
    assert metrics.auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert metrics.auc(labels, scores, weights) == pytest.approx(
        roc_auc_score(labels, scores, sample_weight=weights), abs=1e-12
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gauc_matches_per_group_sklearn(seed):
    labels, scores, weights, groups = _random_case(seed, groups=200)
    # Some groups with one class only: they must be skipped.
    labels[groups < 5] = 1
    value, used, total, without_group = metrics.gauc(labels, scores, groups, return_details=True)
    assert value == pytest.approx(gauc_sklearn(labels, scores, groups), abs=1e-12)
    assert used < total == len(np.unique(groups))
    assert without_group == 0
    assert metrics.gauc(labels, scores, groups, weights) == pytest.approx(
        gauc_sklearn(labels, scores, groups, weights), abs=1e-12
    )
    # String group ids work the same.
    named = np.array([f"user-{g}" for g in groups], dtype=object)
    assert metrics.gauc(labels, scores, named) == pytest.approx(value, abs=1e-12)


def test_gauc_by_hand_and_degenerate_cases():
    labels = [1, 0, 1, 0, 0, 1, 1]
    scores = [0.9, 0.1, 0.2, 0.8, 0.5, 0.4, 0.3]
    groups = ["a", "a", "b", "b", "b", "c", "c"]
    # a: AUC 1 (2 rows); b: 0 (3 rows); c: one class only, skipped.
    assert metrics.gauc(labels, scores, groups) == pytest.approx((2 * 1.0 + 3 * 0.0) / 5)
    assert np.isnan(metrics.gauc([1, 1], [0.2, 0.3], ["a", "b"]))
    assert np.isnan(metrics.auc([0, 0], [0.2, 0.3]))
    assert metrics.auc([0, 1, 1, 0], [0.1, 0.8, 0.4, 0.4]) == 0.875


@pytest.mark.parametrize("missing", [None, np.nan, pd.NA], ids=["None", "nan", "pd.NA"])
def test_gauc_leaves_out_examples_without_a_group(missing):
    """A missing group id drops its example (counted, with a warning) instead of crashing."""
    labels = np.array([1, 0, 1, 0, 1, 1, 0])
    scores = np.array([0.9, 0.1, 0.8, 0.3, 0.2, 0.7, 0.6])
    groups = np.array(["u1", "u1", missing, "u2", "u2", "u3", missing], dtype=object)
    # By hand: u1 AUC 1 (2 rows), u2 AUC 0 (2 rows), u3 one class only.
    present = np.array([g is not missing for g in groups])
    assert gauc_sklearn(labels[present], scores[present], groups[present]) == 0.5
    with pytest.warns(UserWarning, match=r"2 of 7 examples have no group"):
        details = metrics.gauc(labels, scores, groups, return_details=True)
    assert details == (0.5, 2, 3, 2)
    assert details.rows_without_group == 2
    # The same with float group ids, NaN the missing one, and weights (0 drops a row).
    numbered = np.array([1.0, 1.0, np.nan, 2.0, 2.0, 3.0, np.nan])
    weights = np.array([1.0, 2.0, 1.0, 0.5, 1.0, 1.0, 0.0])
    with pytest.warns(UserWarning, match=r"1 of 6 examples have no group"):
        value = metrics.gauc(labels, scores, numbered, weights)
    keep = ~np.isnan(numbered) & (weights > 0)
    assert value == pytest.approx(
        gauc_sklearn(labels[keep], scores[keep], numbered[keep], weights[keep]), abs=1e-12
    )


def test_evaluate_counts_rows_without_a_group():
    df = pd.DataFrame({"click": [1, 0, 1, 0, 1], "user": ["u1", "u1", None, "u2", "u2"]})
    predictions = {"click": np.array([[0.9], [0.1], [0.8], [0.3], [0.2]])}
    with pytest.warns(UserWarning, match=r"1 of 5 examples have no group"):
        result = metrics.evaluate(
            None, df, group_column="user", tasks=["click"], predictions=predictions
        )["click"]
    assert result["gauc"] == 0.5 and result["gauc_groups"] == 2
    assert result["gauc_rows_without_group"] == 1
    assert result["count"] == 5  # the other metrics keep every row


def test_log_loss_and_normalized_entropy():
    labels, scores, weights, _ = _random_case(3)
    p = np.clip(scores / 1.5, 0.01, 0.99)
    assert metrics.log_loss(labels, p) == pytest.approx(sk_log_loss(labels, p), rel=1e-10)
    assert metrics.log_loss(labels, p, weights) == pytest.approx(
        sk_log_loss(labels, p, sample_weight=weights), rel=1e-10
    )
    rate = labels.mean()
    entropy = -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))
    assert metrics.normalized_entropy(labels, p) == pytest.approx(
        sk_log_loss(labels, p) / entropy, rel=1e-10
    )
    # Predicting the base rate everywhere gives NE = 1.
    assert metrics.normalized_entropy(labels, np.full(len(labels), rate)) == pytest.approx(1.0)
    assert np.isnan(metrics.normalized_entropy([1, 1], [0.5, 0.6]))
    with pytest.raises(ValueError, match="differ in length"):
        metrics.auc([0, 1], [0.5])


def test_evaluate_per_task_with_groups_and_masks(census_small, census_spec):
    train, test = census_small
    test = test.head(800).copy()
    tasks = [kr.Task("marital"), kr.Task("income", mask="marital")]
    keras.utils.set_random_seed(0)
    model = kr.models.DCN(census_spec, tasks, num_cross_layers=1, hidden_units=[8])
    predictions = model.predict(kr.data.from_pandas(test, model, labels=False), verbose=0)
    result = metrics.evaluate(model, test, group_column="education", predictions=predictions)
    p = predictions["marital"].ravel()
    y = test["marital"].to_numpy()
    assert result["marital"]["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-9)
    assert result["marital"]["logloss"] == pytest.approx(sk_log_loss(y, p), rel=1e-6)
    groups = test["education"].to_numpy()
    assert result["marital"]["gauc"] == pytest.approx(gauc_sklearn(y, p, groups), abs=1e-9)
    # The masked task is measured on its own rows only.
    rows = y == 1
    income = test["income"].to_numpy()[rows]
    assert result["income"]["count"] == rows.sum()
    assert result["income"]["auc"] == pytest.approx(
        roc_auc_score(income, predictions["income"].ravel()[rows]), abs=1e-9
    )
    # Without predictions, evaluate runs the model itself.
    again = metrics.evaluate(model, test)
    assert again["marital"]["auc"] == pytest.approx(result["marital"]["auc"], abs=1e-6)
    with pytest.raises(KeyError, match="Group column"):
        metrics.evaluate(model, test, group_column="nope")
    with pytest.raises(KeyError, match="no output 'cvr'"):
        metrics.evaluate(
            model, test, tasks=[kr.Task("cvr", label="income")], predictions=predictions
        )


def test_evaluate_regression_and_multiclass():
    df = pd.DataFrame({"y": [1.0, 2.0, 4.0], "c": [0, 2, 1]})
    predictions = {"y": np.array([[1.5], [2.0], [3.0]]), "c": np.eye(3)[[0, 2, 2]] * 0.8 + 0.2 / 3}
    tasks = [kr.Task("y", kind="regression"), kr.Task("c", kind="multiclass", num_classes=3)]
    result = metrics.evaluate(None, df, tasks=tasks, predictions=predictions)
    assert result["y"]["rmse"] == pytest.approx(np.sqrt((0.25 + 0 + 1) / 3))
    assert result["y"]["mae"] == pytest.approx(1.5 / 3)
    assert result["c"]["accuracy"] == pytest.approx(2 / 3)
    picked = np.array([0.8 + 0.2 / 3, 0.8 + 0.2 / 3, 0.2 / 3])
    assert result["c"]["logloss"] == pytest.approx(-np.log(picked).mean())
