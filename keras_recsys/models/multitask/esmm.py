"""ESMM: Entire Space Multi-task Model (post-click conversion rate)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_recsys.layers.multitask.towers import TaskTowers
from keras_recsys.models.backbone import Backbone
from keras_recsys.models.base import RecModel
from keras_recsys.tasks import Task, as_tasks


def default_esmm_tasks() -> list[Task]:
    """CTR on the `click` column, CTCVR on the `conversion` column."""
    return [Task("ctr", label="click"), Task("ctcvr", label="conversion")]


@keras.saving.register_keras_serializable(package="keras_recsys")
class ESMMBackbone(Backbone):
    """ESMM's body: "hidden" = {head: tower_head(x0)}, one tower per head.

    ESMM's heads are the CTR head and the (unsupervised) CVR head, so
    `task_units` is {CTR task name: 1, "cvr": 1} and "hidden" holds each
    tower's (B, tower_units[-1]) output. Both towers read the same x0 (every
    field embedding and the numeric features): the embeddings are what the
    CTR task, trained on all impressions, shares with the CVR tower. There
    are no "logits"; the pCTR × pCVR product is the model's (`ESMM`).

    Args:
        spec, task_units, numeric_field_dim, oov_dropout: see `Backbone`.
        tower_units: widths of both towers.
        dropout: dropout rate of the towers.
        activation: tower activation.
        normalization: None, "batch" or "layer" in the towers.

    Example:

    >>> backbone = kr.models.ESMMBackbone(spec, {"ctr": 1, "cvr": 1}, tower_units=[64])
    >>> backbone(batch)["hidden"]["cvr"].shape
    (B, 64)
    """

    def __init__(
        self,
        spec,
        task_units: dict[str, int],
        tower_units: Sequence[int] = (128, 64),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        super().__init__(spec, task_units, **kwargs)
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

    def body(self, embedded, inputs, training=None):
        return {"hidden": self.towers(self.concat_inputs(embedded), training=training)}

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
class ESMM(RecModel):
    """Entire Space Multi-task Model: pCTCVR = pCTR × pCVR.

    A CTR tower and a CVR tower read the same embeddings (x0). Over all
    impressions the model is trained on

        L = BCE(click, pCTR) + BCE(click ∧ conversion, pCTR · pCVR),

    pCTR = σ(head_ctr(tower_ctr(x0))), pCVR = σ(head_cvr(tower_cvr(x0))), so
    pCVR is learned over the entire impression space without ever being
    supervised directly (no sample selection bias). The two tasks are the
    CTR task and the CTCVR task, whose label must be click AND conversion
    (a conversion column that implies a click will do); pCVR is an extra,
    unsupervised output named `cvr`, exported beside them. The towers are
    `ESMMBackbone`; the heads are the CTR head and the CVR head.

    Reference: Ma et al., 2018, "Entire Space Multi-Task Model: An Effective
    Approach for Estimating Post-Click Conversion Rate" (SIGIR).

    Args:
        spec: a fitted `FeatureSpec`.
        tasks: [CTR task, CTCVR task], two binary tasks without masks;
            default: `Task("ctr", label="click")`,
            `Task("ctcvr", label="conversion")`.
        tower_units: widths of both towers.
        dropout: dropout rate of the towers.
        activation: tower activation.
        normalization: None, "batch" or "layer" in the towers.

    Example:

    >>> model = kr.models.ESMM(spec)       # outputs ctr, cvr, ctcvr
    >>> model.compile(optimizer="adam")    # BCE on ctr and ctcvr
    """

    cvr_output = "cvr"

    def __init__(
        self,
        spec,
        tasks=None,
        tower_units: Sequence[int] = (128, 64),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        tasks = default_esmm_tasks() if tasks is None else tasks
        _check_tasks([Task.from_config(t) if isinstance(t, dict) else t for t in as_tasks(tasks)])
        super().__init__(spec, tasks, **kwargs)
        self.backbone = ESMMBackbone(
            tower_units=tower_units,
            dropout=dropout,
            activation=activation,
            normalization=normalization,
            **self.backbone_arguments(),
        )
        self.build_now()

    def _head_names(self) -> list[str]:
        return [self.tasks[0].name, self.cvr_output]

    def head_units(self):
        """{CTR task name: 1, "cvr": 1}: the heads (and towers) are CTR and CVR;
        the CTCVR task has no head of its own."""
        return {name: 1 for name in self._head_names()}

    def tower_logits(self, inputs, training=None) -> tuple:
        """(CTR logit, CVR logit), scenario-tower logits included."""
        # RecModel's logits: the heads on the backbone's towers, {ctr, cvr}.
        logits = super().compute_logits(inputs, training=training)
        ctr, ctcvr = self.task_names
        logits = self.add_scenario_logits(
            inputs, {ctr: logits[ctr], ctcvr: logits[self.cvr_output]}, training=training
        )
        return logits[ctr], logits[ctcvr]

    def call(self, inputs, training=None):
        """Logits {ctr: a, cvr: b, ctcvr: logit(σ(a)·σ(b))}; `serving_outputs` are the products."""
        a, b = self.tower_logits(inputs, training=training)
        a, b = ops.cast(a, "float32"), ops.cast(b, "float32")
        ctr, ctcvr = self.task_names
        return {ctr: a, self.cvr_output: b, ctcvr: ctcvr_logit(a, b)}

    def serving_outputs(self, logits):
        ctr, ctcvr = self.task_names
        p_ctr = ops.sigmoid(logits[ctr])
        p_cvr = ops.sigmoid(logits[self.cvr_output])
        return {ctr: p_ctr, self.cvr_output: p_cvr, ctcvr: p_ctr * p_cvr}

    def compute_logits(self, inputs, training=None):
        """The tasks' logits {ctr: a, ctcvr: logit(σ(a)·σ(b))} (no `cvr`: not a task)."""
        logits = self.call(inputs, training=training)
        return {name: logits[name] for name in self.task_names}


def ctcvr_logit(a, b):
    """logit(σ(a)·σ(b)), computed in log space without forming the product.

    ℓ = log(σ(a)·σ(b)) = −softplus(−a) − softplus(−b), and the logit is
    ℓ − log(−expm1(ℓ)). The binary cross-entropy on this logit keeps its
    gradient where the product of probabilities would underflow or clip
    (target 1, a = b = −9: gradient −1 on each logit's path, where a loss on
    the clipped product has 0). ℓ is kept below −1e-30 so that a product
    that rounds to 1 gives a large finite logit instead of +inf.
    """
    log_p = ops.minimum(-ops.softplus(-a) - ops.softplus(-b), -1e-30)
    return log_p - ops.log(-ops.expm1(log_p))


def _check_tasks(tasks: list[Task]) -> None:
    if len(tasks) != 2 or any(t.kind != "binary" for t in tasks):
        raise ValueError(
            "ESMM takes exactly two binary tasks, [CTR task, CTCVR task], e.g. "
            "[Task('ctr', label='click'), Task('ctcvr', label='conversion')]; got "
            f"{tasks}."
        )
    masked = [t.name for t in tasks if t.mask is not None]
    if masked:
        raise ValueError(
            f"ESMM's tasks are trained over all impressions; task(s) {masked} have a "
            "`mask`, which would reintroduce the sample selection bias ESMM removes."
        )
    if ESMM.cvr_output in [t.name for t in tasks]:
        raise ValueError(
            f"ESMM names its pCVR output '{ESMM.cvr_output}'; name the tasks otherwise "
            "(e.g. 'ctr' and 'ctcvr')."
        )
