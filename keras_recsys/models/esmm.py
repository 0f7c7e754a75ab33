"""ESMM: Entire Space Multi-task Model (post-click conversion rate)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_recsys.layers.towers import TaskTowers
from keras_recsys.models.base import RecModel
from keras_recsys.tasks import Task, as_tasks


def default_esmm_tasks() -> list[Task]:
    """CTR on the `click` column, CTCVR on the `conversion` column."""
    return [Task("ctr", label="click"), Task("ctcvr", label="conversion")]


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
    unsupervised output named `cvr`, exported beside them.

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
        self.tower_units = [int(u) for u in tower_units]
        self.dropout = float(dropout)
        self.activation = activation
        self.normalization = normalization
        self.towers = TaskTowers(
            self._head_names(),
            self.tower_units,
            activation,
            dropout,
            normalization,
            name="towers",
        )
        self.build_now()

    def _head_names(self) -> list[str]:
        return [self.tasks[0].name, self.cvr_output]

    def head_units(self):
        return {name: 1 for name in self._head_names()}

    def tower_logits(self, inputs, training=None) -> tuple:
        """(CTR logit, CVR logit), scenario-tower logits included."""
        x0 = self.concat_inputs(self.embedding(inputs))
        logits = self.heads(self.towers(x0, training=training))
        ctr, ctcvr = self.task_names
        logits = self.add_scenario_logits(
            inputs, {ctr: logits[ctr], ctcvr: logits[self.cvr_output]}, training=training
        )
        return logits[ctr], logits[ctcvr]

    def call(self, inputs, training=None):
        ctr_logit, cvr_logit = self.tower_logits(inputs, training=training)
        p_ctr = ops.sigmoid(ctr_logit)
        p_cvr = ops.sigmoid(cvr_logit)
        ctr, ctcvr = self.task_names
        return {ctr: p_ctr, self.cvr_output: p_cvr, ctcvr: p_ctr * p_cvr}

    def compute_logits(self, inputs, training=None):
        """{ctr: a, ctcvr: logit(σ(a)·σ(b))}, computed without forming the product.

        log(pCTR·pCVR) = −softplus(−a) − softplus(−b) = ℓ, and the logit is
        ℓ − log(−expm1(ℓ)).
        """
        a, b = self.tower_logits(inputs, training=training)
        log_p = -ops.softplus(-a) - ops.softplus(-b)
        ctr, ctcvr = self.task_names
        return {ctr: a, ctcvr: log_p - ops.log(-ops.expm1(log_p))}

    def hyperparameters(self):
        return {
            "tower_units": self.tower_units,
            "dropout": self.dropout,
            "activation": self.activation,
            "normalization": self.normalization,
        }


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
