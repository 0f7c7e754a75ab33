"""Offline ranking metrics Keras lacks: gAUC and normalized entropy, and `evaluate`.

Everything here is plain numpy (no scikit-learn), computed on whole
prediction arrays after `model.predict`:

* `auc`: area under the ROC curve, the Mann-Whitney statistic with tied
  scores counted one half;
* `gauc`: group AUC, Σ_g n_g · AUC_g / Σ_g n_g over the groups (users,
  usually) that have both a positive and a negative example, n_g the
  group's number of examples (or weight); examples without a group
  (None/NaN) are left out and counted;
* `log_loss` and `normalized_entropy`: NE = log loss / H(p̄), with
  H(p̄) = −p̄ log p̄ − (1 − p̄) log(1 − p̄) the entropy of the average label
  (He et al., 2014, "Practical Lessons from Predicting Clicks on Ads at
  Facebook"); NE < 1 means better than always predicting the base rate;
* `evaluate`: all of them per task for a model and a DataFrame.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd

_EPSILON = 1e-7


def _as_arrays(labels, scores, sample_weight=None):
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(
            f"labels and scores differ in length: {labels.shape[0]} vs {scores.shape[0]}."
        )
    if sample_weight is None:
        weights = np.ones_like(labels)
    else:
        weights = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
        if weights.shape != labels.shape:
            raise ValueError("sample_weight must have one value per example.")
    return labels, scores, weights


def _grouped_auc(labels, scores, weights, groups):
    """(AUC per group, weight per group, has both classes) for integer group codes."""
    order = np.lexsort((scores, groups))
    labels, scores, weights, groups = labels[order], scores[order], weights[order], groups[order]
    positive = weights * (labels > 0.5)
    negative = weights * (labels <= 0.5)
    # Blocks of equal (group, score): tied scores share their pairs half and half.
    starts = np.r_[True, (groups[1:] != groups[:-1]) | (scores[1:] != scores[:-1])]
    block = np.cumsum(starts) - 1
    block_pos = np.bincount(block, positive)
    block_neg = np.bincount(block, negative)
    block_group = groups[starts]
    # Weight of the negatives strictly below each block, within its group.
    exclusive = np.cumsum(block_neg) - block_neg
    group_start = np.r_[True, block_group[1:] != block_group[:-1]]
    first = np.maximum.accumulate(np.where(group_start, np.arange(len(block_group)), 0))
    below = exclusive - exclusive[first]
    count = int(groups.max()) + 1 if len(groups) else 0
    pairs = np.bincount(block_group, block_pos * (below + 0.5 * block_neg), minlength=count)
    pos = np.bincount(block_group, block_pos, minlength=count)
    neg = np.bincount(block_group, block_neg, minlength=count)
    valid = (pos > 0) & (neg > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(valid, pairs / (pos * neg), np.nan)
    return values, pos + neg, valid


def auc(labels, scores, sample_weight=None) -> float:
    """ROC AUC: P(score of a positive > score of a negative), ties counting 1/2.

    Args:
        labels: 0/1 labels.
        scores: predicted scores (any monotone scale).
        sample_weight: optional per-example weights (0 drops an example).

    Returns:
        The AUC, or NaN when only one class is present.

    Example:

    >>> kr.metrics.auc([0, 1, 1, 0], [0.1, 0.8, 0.4, 0.4])
    0.875
    """
    labels, scores, weights = _as_arrays(labels, scores, sample_weight)
    values, _, _ = _grouped_auc(labels, scores, weights, np.zeros(len(labels), np.int64))
    return float(values[0]) if len(values) else float("nan")


class GAUCDetails(NamedTuple):
    """`gauc(..., return_details=True)`: the value and what it was computed on."""

    gauc: float
    groups_used: int
    groups: int
    rows_without_group: int


def gauc(labels, scores, groups, sample_weight=None, return_details: bool = False):
    """Group AUC: the size-weighted mean of per-group AUCs.

    gAUC = Σ_g n_g · AUC_g / Σ_g n_g over groups with both classes, n_g the
    number of examples of group g (the sum of their weights when
    `sample_weight` is given). Groups with one class only are skipped.

    Examples whose group is missing (None, NaN, `pd.NA`) belong to no group,
    so they are left out, counted and reported with a warning (and in
    `return_details`) rather than pooled into a group of their own, which
    would mix unrelated users into one AUC.

    Reference: Zhou et al., 2018, "Deep Interest Network for Click-Through
    Rate Prediction" (KDD), with impressions as the group weights.

    Args:
        labels: 0/1 labels.
        scores: predicted scores.
        groups: group of every example (user ids, usually), any hashable
            values; missing ones leave their example out.
        sample_weight: optional per-example weights (0 drops an example).
        return_details: return a `GAUCDetails` tuple instead of the value.

    Returns:
        The gAUC (NaN when no group has both classes), or with
        `return_details` the tuple (gauc, groups used, groups, rows without
        a group), counting examples of non-zero weight.

    Example:

    >>> kr.metrics.gauc(df["click"], predictions, df["user_id"])
    """
    labels, scores, weights = _as_arrays(labels, scores, sample_weight)
    groups = np.asarray(groups).reshape(-1)
    if groups.shape != labels.shape:
        raise ValueError("groups must have one value per example.")
    keep = weights > 0
    labels, scores, weights, groups = labels[keep], scores[keep], weights[keep], groups[keep]
    # factorize codes missing values (None, NaN, NaT, pd.NA) as -1.
    codes = pd.factorize(groups)[0].astype(np.int64)
    without_group = codes < 0
    dropped = int(without_group.sum())
    if dropped:
        warnings.warn(
            f"gauc: {dropped} of {len(codes)} examples have no group (None/NaN) and are left out.",
            stacklevel=2,
        )
        present = ~without_group
        labels, scores, weights, codes = (
            labels[present],
            scores[present],
            weights[present],
            codes[present],
        )
    values, sizes, valid = _grouped_auc(labels, scores, weights, codes)
    result = (
        float(np.sum(values[valid] * sizes[valid]) / np.sum(sizes[valid]))
        if valid.any()
        else float("nan")
    )
    if return_details:
        return GAUCDetails(result, int(valid.sum()), int(len(valid)), dropped)
    return result


def log_loss(labels, probabilities, sample_weight=None) -> float:
    """Mean binary cross-entropy −[y log p + (1 − y) log(1 − p)], p clipped to [1e-7, 1 − 1e-7]."""
    labels, probabilities, weights = _as_arrays(labels, probabilities, sample_weight)
    p = np.clip(probabilities, _EPSILON, 1 - _EPSILON)
    losses = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    return float(np.sum(weights * losses) / np.sum(weights))


def normalized_entropy(labels, probabilities, sample_weight=None) -> float:
    """NE = log loss / H(p̄), H(p̄) the entropy of the (weighted) average label.

    Reference: He et al., 2014, "Practical Lessons from Predicting Clicks
    on Ads at Facebook" (ADKDD).

    Returns:
        NE (lower is better, 1 = the base-rate predictor), NaN when every
        label is the same.

    Example:

    >>> kr.metrics.normalized_entropy(df["click"], predictions)
    """
    labels, probabilities, weights = _as_arrays(labels, probabilities, sample_weight)
    rate = float(np.sum(weights * labels) / np.sum(weights))
    if rate <= 0 or rate >= 1:
        return float("nan")
    entropy = -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))
    return log_loss(labels, probabilities, weights) / entropy


def evaluate(
    model,
    df: pd.DataFrame,
    group_column: str | None = None,
    tasks=None,
    batch_size: int = 4096,
    predictions: dict | None = None,
) -> dict[str, dict[str, float]]:
    """Per-task offline metrics of a model on a DataFrame.

    Each task is measured on its own examples: a task with a `mask` only on
    the rows where the mask column is 1, and with its `sample_weight`
    column as weights. Binary tasks get `auc`, `logloss`, `ne` and, with
    `group_column`, `gauc` (plus `gauc_groups`, the number of groups with
    both classes, and `gauc_rows_without_group`, the examples left out
    because their group is missing); regression tasks `rmse` and `mae`;
    multiclass tasks `accuracy` and `logloss`. Every task also gets
    `count`, its number of examples.

    Args:
        model: a keras_recsys model (None will do when `tasks` and
            `predictions` are both given).
        df: rows with the model's input columns and the tasks' label columns.
        group_column: column to group by for gAUC (e.g. "user_id").
        tasks: the tasks to measure (default: the model's); a task whose
            name is an unsupervised output, e.g. ESMM's
            `Task("cvr", label="conversion", mask="click")`, measures it.
        batch_size: prediction batch size.
        predictions: {output name: array} already computed on `df`
            (skips `model.predict`).

    Returns:
        {task name: {metric name: value}}.

    Example:

    >>> kr.metrics.evaluate(model, test_df, group_column="user_id")
    {'click': {'auc': 0.79, 'gauc': 0.71, 'logloss': 0.52, 'ne': 0.83, ...}}
    """
    from keras_recsys.data import from_pandas
    from keras_recsys.tasks import as_tasks

    tasks = list(model.tasks) if tasks is None else as_tasks(tasks)
    if group_column is not None and group_column not in df.columns:
        raise KeyError(f"Group column '{group_column}' is not in the DataFrame.")
    if predictions is None:
        predictions = model.predict(
            from_pandas(df, model, batch_size=batch_size, labels=False), verbose=0
        )
    results = {}
    for task in tasks:
        if task.name not in predictions:
            raise KeyError(
                f"The model has no output '{task.name}'; its outputs are {sorted(predictions)}."
            )
        predicted = np.asarray(predictions[task.name])
        labels = task.label_array(df)
        weights = task.weight_array(df)
        keep = weights > 0
        result: dict[str, float] = {"count": int(keep.sum())}
        if task.kind == "binary":
            scores = predicted.reshape(-1)
            result["auc"] = auc(labels, scores, weights)
            result["logloss"] = log_loss(labels[keep], scores[keep], weights[keep])
            result["ne"] = normalized_entropy(labels[keep], scores[keep], weights[keep])
            if group_column is not None:
                details = gauc(
                    labels, scores, df[group_column].to_numpy(), weights, return_details=True
                )
                result["gauc"] = details.gauc
                result["gauc_groups"] = details.groups_used
                result["gauc_rows_without_group"] = details.rows_without_group
        elif task.kind == "regression":
            errors = predicted.reshape(-1)[keep] - labels.reshape(-1)[keep]
            w = weights[keep]
            result["rmse"] = float(np.sqrt(np.sum(w * errors**2) / np.sum(w)))
            result["mae"] = float(np.sum(w * np.abs(errors)) / np.sum(w))
        else:
            classes = labels.reshape(-1)[keep]
            probabilities = predicted[keep]
            w = weights[keep]
            picked = np.clip(probabilities[np.arange(len(classes)), classes], _EPSILON, 1)
            result["accuracy"] = float(
                np.sum(w * (probabilities.argmax(-1) == classes)) / np.sum(w)
            )
            result["logloss"] = float(-np.sum(w * np.log(picked)) / np.sum(w))
        results[task.name] = result
    return results
