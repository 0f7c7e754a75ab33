"""How a model's task losses add up to its training loss.

One module for the three ways (`RecModel(loss_weighting=...)`):

* "fixed": Σ_k w_k · L_k with each task's `weight`, left to Keras'
  `compile(loss_weights=...)`;
* "uncertainty": Σ_k exp(−s_k) · L_k + s_k with learned log-variances s_k
  (Kendall et al., 2018), `UncertaintyWeighting`;
* "gradnorm": Σ_k w_k · L_k with w_k learned by GradNorm (Chen et al.,
  2018), `GradNormWeighting` plus the per-backend step in `gradnorm`.

With a learned weighting the model adds the losses up itself, so Keras gets
no loss and the per-task loss functions are kept here.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_recsys.training.loss_weighting import GradNormWeighting, UncertaintyWeighting

LOSS_WEIGHTINGS = ("fixed", "uncertainty", "gradnorm")


def make_loss_weighter(method: str, tasks, gradnorm_alpha: float = 1.5):
    """The learned weighting layer of `method` (None for "fixed"), built."""
    if method not in LOSS_WEIGHTINGS:
        raise ValueError(f"loss_weighting must be one of {LOSS_WEIGHTINGS}, got {method!r}.")
    if method == "fixed":
        return None
    names = [t.name for t in tasks]
    if method == "uncertainty":
        weighter = UncertaintyWeighting(names, name="loss_weighting")
    else:
        weighter = GradNormWeighting(
            names,
            alpha=gradnorm_alpha,
            initial_weights=[t.weight for t in tasks],
            name="loss_weighting",
        )
    weighter.build()
    return weighter


def per_task_losses(method: str, task_names: list[str], loss, loss_weights) -> dict:
    """{task: loss function} for a learned weighting, or a clear error."""
    if loss_weights is not None:
        raise ValueError(
            f"loss_weighting='{method}' learns the task weights; do not pass "
            "`loss_weights` (set Task(weight=...) for fixed weights)."
        )
    if not isinstance(loss, dict) or set(loss) != set(task_names):
        raise ValueError(
            f"loss_weighting='{method}' needs one loss per task, a dict keyed by "
            f"{task_names}; got {loss!r}."
        )
    return {name: keras.losses.get(loss[name]) for name in task_names}


def task_losses(loss_fns: dict, y, y_pred: dict, sample_weight=None) -> list:
    """The unweighted loss L_k of every task, in the order of `loss_fns`."""
    losses = []
    for name, loss_fn in loss_fns.items():
        y_true = y[name] if isinstance(y, dict) else y
        weight = sample_weight[name] if isinstance(sample_weight, dict) else sample_weight
        losses.append(loss_fn(y_true, y_pred[name], weight))
    return losses


def combine(weighter, losses: list, batch_size, extra_losses=()):
    """The learned combination of the task losses, plus regularization losses.

    Each L_k is tracked (logged as `<task>_loss`) with the batch size as weight.
    """
    weighter.track(losses, batch_size)
    total = weighter(losses)
    for extra in extra_losses:
        total = total + ops.cast(ops.sum(extra), total.dtype)
    return total
