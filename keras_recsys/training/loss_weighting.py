"""Learned multi-task loss weighting: uncertainty weighting and GradNorm.

These layers hold the weighting's variables and its equations; a model
(`RecModel(loss_weighting=...)`) calls them from its loss computation. They
also track each task's unweighted loss (`<task>_loss` in the logs).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops


class _TaskLossWeighting(keras.layers.Layer):
    """Shared part: task names and one loss tracker per task."""

    def __init__(self, task_names: Sequence[str], **kwargs):
        super().__init__(**kwargs)
        self.task_names = [str(n) for n in task_names]
        if not self.task_names:
            raise ValueError(f"{type(self).__name__} needs at least one task.")
        self.loss_trackers = [keras.metrics.Mean(name=f"{n}_loss") for n in self.task_names]

    def track(self, losses, batch_size=None) -> None:
        """Records each task's unweighted loss of one batch."""
        for tracker, loss in zip(self.loss_trackers, losses):
            tracker.update_state(loss, sample_weight=batch_size)

    def compute_output_shape(self, input_shape):
        return ()

    def get_config(self):
        config = super().get_config()
        config["task_names"] = self.task_names
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class UncertaintyWeighting(_TaskLossWeighting):
    """Homoscedastic-uncertainty loss weighting with learned log-variances.

    L = Σ_k exp(−s_k) · L_k + s_k, with one trainable s_k = log σ_k² per
    task (initialized to 0, i.e. equal weights). A task whose loss stays
    large gets a larger s_k and hence a smaller weight exp(−s_k); the + s_k
    term keeps the weights from collapsing to zero.

    Reference: Kendall, Gal and Cipolla, 2018, "Multi-Task Learning Using
    Uncertainty to Weigh Losses for Scene Geometry and Semantics" (CVPR).

    Args:
        task_names: the tasks, in the order of the losses passed to `call`.

    Example:

    >>> weighting = kr.layers.UncertaintyWeighting(["click", "like"])
    >>> total = weighting([click_loss, like_loss])
    """

    def build(self, input_shape=None):
        self.log_variances = self.add_weight(
            name="log_variances",
            shape=(len(self.task_names),),
            initializer="zeros",
        )
        self.built = True

    def call(self, losses):
        losses = ops.stack([ops.cast(loss, "float32") for loss in losses])
        s = ops.cast(self.log_variances, "float32")
        return ops.sum(ops.exp(-s) * losses + s)

    def current_weights(self):
        """The current weights exp(−s_k) of the task losses."""
        return ops.exp(-self.log_variances)


@keras.saving.register_keras_serializable(package="keras_recsys")
class GradNormWeighting(_TaskLossWeighting):
    """GradNorm: task weights learned so that gradient norms train at equal rates.

    The total loss is L = Σ_k w_k · L_k. After each step the weights move
    down the gradient of

        L_grad = Σ_k |G_k − Ḡ · r_k^α|,

    where G_k = w_k · ‖∇_W L_k‖ is the gradient norm of task k's weighted
    loss on the last shared weights W, Ḡ the mean of the G_k,
    r_k = (L_k / L_k(0)) / mean_j(L_j / L_j(0)) the relative inverse
    training rate, and the targets Ḡ · r_k^α are held constant; then the
    weights are renormalized to sum to the number of tasks K.

    Reference: Chen, Badrinarayanan, Lee and Rabinovich, 2018, "GradNorm:
    Gradient Normalization for Adaptive Loss Balancing in Deep Multitask
    Networks" (ICML).

    Args:
        task_names: the tasks, in the order of the losses passed to `call`.
        alpha: the restoring-force strength α (the paper uses 0.12 to 3;
            larger pulls training rates together harder).
        initial_weights: starting w_k (default: all 1), rescaled to sum to K.

    Example:

    >>> weighting = kr.layers.GradNormWeighting(["click", "like"], alpha=1.5)
    >>> total = weighting([click_loss, like_loss])
    >>> grad_w = weighting.weight_gradient([click_loss, like_loss], [norm_1, norm_2])
    """

    def __init__(
        self,
        task_names: Sequence[str],
        alpha: float = 1.5,
        initial_weights: Sequence[float] | None = None,
        **kwargs,
    ):
        super().__init__(task_names, **kwargs)
        self.alpha = float(alpha)
        count = len(self.task_names)
        weights = [1.0] * count if initial_weights is None else [float(w) for w in initial_weights]
        if len(weights) != count or min(weights) <= 0:
            raise ValueError(
                f"GradNormWeighting: initial_weights must be {count} positive numbers, "
                f"got {initial_weights}."
            )
        self.initial_weights = [w * count / sum(weights) for w in weights]

    def build(self, input_shape=None):
        self.task_weights = self.add_weight(
            name="task_weights",
            shape=(len(self.task_names),),
            initializer=keras.initializers.Constant(self.initial_weights),
        )
        self.initial_losses = self.add_weight(
            name="initial_losses",
            shape=(len(self.task_names),),
            initializer="zeros",
            trainable=False,
        )
        self.built = True

    def call(self, losses):
        losses = ops.stack([ops.cast(loss, "float32") for loss in losses])
        return ops.sum(ops.stop_gradient(self.task_weights) * losses)

    def weight_gradient(self, losses, grad_norms):
        """∂L_grad/∂w_k = sign(G_k − T_k) · ‖∇_W L_k‖ (targets T_k held constant).

        Args:
            losses: the unweighted task losses L_k of this step.
            grad_norms: ‖∇_W L_k‖, each task's unweighted gradient norm on W.
        """
        losses = ops.stack([ops.cast(loss, "float32") for loss in losses])
        norms = ops.stack([ops.cast(n, "float32") for n in grad_norms])
        recorded = ops.convert_to_tensor(self.initial_losses)
        initial = ops.where(recorded > 0, recorded, losses)
        ratios = ops.divide_no_nan(losses, initial)
        relative = ops.divide_no_nan(ratios, ops.mean(ratios))
        weighted_norms = self.task_weights * norms
        targets = ops.mean(weighted_norms) * ops.power(relative, self.alpha)
        return ops.sign(weighted_norms - targets) * norms

    def record_initial_losses(self, losses) -> None:
        """Keeps the first step's losses L_k(0) (a no-op once they are set)."""
        losses = ops.stack([ops.cast(loss, "float32") for loss in losses])
        recorded = ops.convert_to_tensor(self.initial_losses)
        self.initial_losses.assign(ops.where(recorded > 0, recorded, losses))

    def renormalized(self, weights):
        """K · w / Σ w, every weight kept positive (at least 1e-4 before scaling)."""
        weights = ops.maximum(weights, 1e-4)
        return weights * len(self.task_names) / ops.sum(weights)

    def renormalize(self) -> None:
        """w ← K · w / Σ w, in place."""
        self.task_weights.assign(self.renormalized(self.task_weights))

    def current_weights(self):
        """The current task weights w_k."""
        return ops.convert_to_tensor(self.task_weights)

    def get_config(self):
        config = super().get_config()
        config.update(alpha=self.alpha, initial_weights=self.initial_weights)
        return config
