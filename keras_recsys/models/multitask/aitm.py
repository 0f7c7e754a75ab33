"""AITM: Adaptive Information Transfer Multi-task framework for conversion funnels."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_recsys.layers.mlp import MLP
from keras_recsys.layers.multitask.information_transfer import AdaptiveInformationTransfer
from keras_recsys.layers.multitask.towers import TaskTowers
from keras_recsys.models.backbone import Backbone
from keras_recsys.models.base import RecModel
from keras_recsys.tasks import Task, as_tasks


@keras.saving.register_keras_serializable(package="keras_recsys")
class AITMBackbone(Backbone):
    """AITM's body: towers in funnel order, each fused with what the step before transfers.

    The tasks, in `task_units`' order, are the funnel's steps (e.g.
    impression → click → purchase). Every task's tower reads x0 (every
    field embedding and the numeric features): q_t = tower_t(x0). The
    first step keeps it, z_1 = q_1; every later step fuses its own q_t
    with the information transferred from the step before,
    p_{t−1} = g_t(z_{t−1}) (one Dense layer of the tower width with the
    towers' activation and dropout, as in the authors' code), by an
    `AdaptiveInformationTransfer` module: z_t = AIT([p_{t−1}, q_t]).
    "hidden" = {task t: z_t}, each (B, tower_units[-1]). There are no
    "logits".

    Args:
        spec, task_units, numeric_field_dim, oov_dropout: see `Backbone`.
        tower_units: widths of every task's tower (at least one layer);
            the last is the width d of q_t, p_t and z_t.
        dropout: dropout rate of the towers and the transfer layers.
        activation: tower and transfer activation.
        normalization: None, "batch" or "layer" in the towers.

    Example:

    >>> backbone = kr.models.AITMBackbone(spec, {"click": 1, "purchase": 1})
    >>> backbone(batch)["hidden"]["purchase"].shape
    (B, 32)
    """

    def __init__(
        self,
        spec,
        task_units: dict[str, int],
        tower_units: Sequence[int] = (128, 64, 32),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        super().__init__(spec, task_units, **kwargs)
        if not tower_units:
            raise ValueError(
                "AITM needs at least one tower layer: the information transferred "
                "between steps has the width of the towers' last layer."
            )
        self.tower_units = [int(u) for u in tower_units]
        self.dropout = float(dropout)
        self.activation = activation
        self.normalization = normalization
        self.towers = TaskTowers(
            self.task_names,
            self.tower_units,
            activation,
            dropout,
            normalization,
            dtype=self.dtype_policy,
            name="towers",
        )
        width = self.tower_units[-1]
        later = self.task_names[1:]
        # Keyed by the step that receives the information.
        self.transfers = {
            task: MLP(
                [width], activation, dropout, dtype=self.dtype_policy, name=f"transfer_{task}"
            )
            for task in later
        }
        self.information_transfers = {
            task: AdaptiveInformationTransfer(
                dtype=self.dtype_policy, name=f"information_transfer_{task}"
            )
            for task in later
        }

    def funnel(self, embedded: dict, training=None, return_weights: bool = False):
        """{task: z_t} (and {later task: AIT weights (B, 2) on [p_{t−1}, q_t]})."""
        towers = self.towers(self.concat_inputs(embedded), training=training)
        first = self.task_names[0]
        fused, weights = {first: towers[first]}, {}
        for previous, task in zip(self.task_names, self.task_names[1:]):
            transferred = self.transfers[task](fused[previous], training=training)
            fused[task], weights[task] = self.information_transfers[task](
                [transferred, towers[task]], return_weights=True
            )
        return (fused, weights) if return_weights else fused

    def body(self, embedded, inputs, training=None):
        return {"hidden": self.funnel(embedded, training=training)}

    def transfer_weights(self, inputs: dict) -> dict:
        """{task t after the first: (B, 2)} the AIT weights on [p_{t−1}, q_t] for
        preprocessed `inputs` (inference): how much each example's step takes
        from the step before."""
        embedded = self.embedding(inputs, training=False)
        _, weights = self.funnel(embedded, training=False, return_weights=True)
        return weights

    def get_config(self):
        config = super().get_config()
        config.update(
            tower_units=self.tower_units,
            dropout=self.dropout,
            activation=self.activation,
            normalization=self.normalization,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class AITM(RecModel):
    """Adaptive Information Transfer Multi-task: a conversion funnel with learned transfer.

    The tasks are the funnel's steps in order (e.g. impression → click →
    purchase: each step's positives are a subset of the step before's).
    Every step has a tower on the shared embeddings, q_t = tower_t(x0);
    the first keeps z_1 = q_1, every later one fuses its own q_t with the
    information p_{t−1} = g_t(z_{t−1}) transferred from the step before,
    by attention over the two (the AIT module):

        z_t = Σ_u w_u · h1(u),   w_u = softmax_u(⟨h2(u), h3(u)⟩ / √d),   u ∈ {p_{t−1}, q_t}
        ŷ_t = σ(head_t(z_t))

    Training adds the behavioural expectation calibrator, which penalizes
    a later step predicted more likely than the step before:

        L = Σ_t BCE(y_t, ŷ_t) + α · Σ_{t≥2} mean_batch max(ŷ_t − ŷ_{t−1}, 0)

    **Where the calibrator goes.** The penalty reads the predicted
    probabilities of all steps and no label, so the model adds it with
    `add_loss` in `call` when `training` is true; Keras adds the model's
    `losses` to the task losses in every loss path of `RecModel`: the fixed
    weights (`keras.Model.compute_loss`), uncertainty weighting and
    GradNorm (`loss_combiner.combine`, also inside GradNorm's TensorFlow
    step, which does not call `compute_loss`). It is not weighted by the
    task weights (α is its weight), nor by sample weights or masks (the
    funnel's tasks are all trained over every impression, as in the
    paper). `evaluate` and serving never compute it (as DIEN's auxiliary
    loss), so `evaluate`'s loss is the task losses alone;
    `calibration_penalty` gives it on any batch. The mean over the batch
    is the authors' code's (the paper writes a sum over examples). The
    body (towers, transfers and AIT modules) is `AITMBackbone`; the heads
    are linear, as the authors' output layer.

    Reference: Xi et al., 2021, "Modeling the Sequential Dependence among
    Audience Multi-step Conversions with Multi-task Learning in Targeted
    Display Advertising" (KDD). Defaults: the authors' code (towers
    128-64-32, α = 0.6; its dropout is 0.1, 0.3, 0.3 by layer, one rate
    here).

    Args:
        spec: a fitted `FeatureSpec`.
        tasks: two or more binary tasks, in funnel order (first the
            earliest step).
        tower_units: widths of every task's tower (at least one layer).
        dropout: dropout rate of the towers and transfer layers.
        activation: tower and transfer activation.
        normalization: None, "batch" or "layer" in the towers.
        calibration_weight: α, the calibrator's weight; 0 turns it off.

    Example:

    >>> model = kr.models.AITM(spec, tasks=["click", "purchase"])  # funnel order
    >>> model.compile(optimizer="adam")          # BCE per step + α · calibrator
    >>> weights = model.transfer_weights(batch)  # {"purchase": (B, 2)}
    """

    def __init__(
        self,
        spec,
        tasks,
        tower_units: Sequence[int] = (128, 64, 32),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        calibration_weight: float = 0.6,
        **kwargs,
    ):
        _check_funnel([Task.from_config(t) if isinstance(t, dict) else t for t in as_tasks(tasks)])
        if float(calibration_weight) < 0:
            raise ValueError(f"calibration_weight must be >= 0, got {calibration_weight}.")
        super().__init__(spec, tasks, **kwargs)
        self.calibration_weight = float(calibration_weight)
        self.backbone = AITMBackbone(
            tower_units=tower_units,
            dropout=dropout,
            activation=activation,
            normalization=normalization,
            **self.backbone_arguments(),
        )
        self.build_now()

    def call(self, inputs, training=None):
        logits = super().call(inputs, training=training)
        if training and self.calibration_weight:
            self.add_loss(self.calibration_weight * self.calibration_penalty(logits))
        return logits

    def calibration_penalty(self, logits: dict):
        """Σ_{t≥2} mean over the batch of max(ŷ_t − ŷ_{t−1}, 0), from `call`'s logits
        (the calibrator before its weight α)."""
        probabilities = [ops.sigmoid(ops.cast(logits[name], "float32")) for name in self.task_names]
        return sum(
            ops.mean(ops.relu(later - earlier))
            for earlier, later in zip(probabilities, probabilities[1:])
        )

    def transfer_weights(self, inputs: dict) -> dict:
        """{task after the first: (B, 2)} AIT weights on [transferred, own] for
        preprocessed `inputs` (`AITMBackbone.transfer_weights`)."""
        return self.backbone.transfer_weights(inputs)

    def get_config(self):
        config = super().get_config()
        config["calibration_weight"] = self.calibration_weight
        return config


def _check_funnel(tasks: list[Task]) -> None:
    if len(tasks) < 2:
        raise ValueError(
            "AITM models a funnel of two or more steps, given as tasks in funnel order "
            f"(e.g. ['click', 'purchase']); got {[t.name for t in tasks]}."
        )
    not_binary = [t.name for t in tasks if t.kind != "binary"]
    if not_binary:
        raise ValueError(
            f"AITM's funnel steps are binary tasks (the calibrator compares their "
            f"probabilities); task(s) {not_binary} are not."
        )
