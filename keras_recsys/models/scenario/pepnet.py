"""PEPNet (EPNet + PPNet) and LHUC-style gating of embeddings and hidden units."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_recsys.layers.scenario.gating import PersonalizedGate
from keras_recsys.models.base import RecModel


@keras.saving.register_keras_serializable(package="keras_recsys")
class PEPNet(RecModel):
    """Per-task towers whose embeddings and hidden units are scaled by gates.

    With p = [embeddings of `gate_features`] (by default the scenario
    feature) and x0 all field embeddings:

    * EPNet (`epnet=True`): δ = Gate_ep([p, sg(x0)]) ∈ (0, 2)^F scales each
      field embedding, e_f ← δ_f · e_f;
    * PPNet (`ppnet=True`): in every layer l of every task tower t,
      h_{t,l+1} = δ_{t,l} ⊙ act(W_{t,l} h_{t,l} + b_{t,l}) with
      δ_{·,l} = Gate_l([p, sg(x)]) ∈ (0, 2)^{T·units_l}, x the (scaled)
      input of the towers;

    each gate a `PersonalizedGate` γ·sigmoid(MLP(·)), sg the stop-gradient.
    `epnet=False` leaves the gated hidden units alone: LHUC / PPNet. With
    both off the model is a DNN with one tower per task.

    Reference: Chang et al., 2023, "PEPNet: Parameter and Embedding
    Personalized Network for Infusing with Personalized Prior Information"
    (KDD); Swietojanski & Renals, 2014 (LHUC).

    Args:
        spec: a fitted `FeatureSpec`.
        tasks: the tasks.
        hidden_units: widths of each task tower.
        gate_features: names of the fields the gates read (categorical,
            bucketized or sequence features); default: the spec's
            `role="scenario"` feature.
        gate_hidden_units: hidden width of every gate.
        epnet: gate the field embeddings.
        ppnet: gate the towers' hidden units.
        gate_scale: γ, the upper bound of the scales.
        dropout: dropout rate after each tower layer.
        activation: activation of the tower layers.

    Example:

    >>> model = kr.models.PEPNet(spec, tasks=["click", "like"],
    ...                          gate_features=["domain", "user_id"])
    """

    def __init__(
        self,
        spec,
        tasks,
        hidden_units: Sequence[int] = (256, 128),
        gate_features: Sequence[str] | None = None,
        gate_hidden_units: int = 64,
        epnet: bool = True,
        ppnet: bool = True,
        gate_scale: float = 2.0,
        dropout: float = 0.0,
        activation: str = "relu",
        **kwargs,
    ):
        super().__init__(spec, tasks, **kwargs)
        if gate_features is None:
            scenario = self.spec.scenario_feature
            if scenario is None:
                raise ValueError(
                    "PEPNet needs `gate_features`, or a feature with role='scenario' "
                    "in the spec to gate on."
                )
            gate_features = [scenario.name]
        missing = [f for f in gate_features if f not in self.field_names]
        if missing:
            raise ValueError(
                f"PEPNet gate features {missing} are not embedded fields; the fields "
                f"are {self.field_names}."
            )
        self.hidden_units = [int(u) for u in hidden_units]
        self.gate_features = list(gate_features)
        self.gate_hidden_units = int(gate_hidden_units)
        self.epnet = bool(epnet)
        self.ppnet = bool(ppnet)
        self.gate_scale = float(gate_scale)
        self.dropout = float(dropout)
        self.activation = activation
        self.embedding_gate = (
            PersonalizedGate(
                len(self.field_names),
                self.gate_hidden_units,
                self.gate_scale,
                name="embedding_gate",
            )
            if self.epnet
            else None
        )
        num_tasks = len(self.tasks)
        self.unit_gates = (
            {
                f"layer_{i}": PersonalizedGate(
                    num_tasks * u,
                    self.gate_hidden_units,
                    self.gate_scale,
                    name=f"unit_gate_{i}",
                )
                for i, u in enumerate(self.hidden_units)
            }
            if self.ppnet
            else {}
        )
        self.tower_layers = {
            f"{task}_{i}": keras.layers.Dense(u, name=f"tower_{task}_{i}")
            for task in self.task_names
            for i, u in enumerate(self.hidden_units)
        }
        self.dropout_layer = keras.layers.Dropout(self.dropout) if self.dropout else None
        self.build_now()

    def compute_logits(self, inputs, training=None):
        embedded = self.embedding(inputs)
        fields = dict(embedded["fields"])
        persona = ops.concatenate([fields[f] for f in self.gate_features], axis=-1)
        if self.embedding_gate is not None:
            general = ops.stop_gradient(self.concat_inputs(embedded))
            scales = self.embedding_gate(ops.concatenate([persona, general], axis=-1))
            for i, name in enumerate(self.field_names):
                fields[name] = fields[name] * scales[:, i : i + 1]
        x = self.concat_inputs({"fields": fields, "dense": embedded["dense"]})
        gate_input = ops.concatenate([persona, ops.stop_gradient(x)], axis=-1)
        act = keras.activations.get(self.activation)
        hidden = {task: x for task in self.task_names}
        for i, units in enumerate(self.hidden_units):
            scales = None
            if self.ppnet:
                scales = self.unit_gates[f"layer_{i}"](gate_input)
            for k, task in enumerate(self.task_names):
                h = act(self.tower_layers[f"{task}_{i}"](hidden[task]))
                if scales is not None:
                    h = h * scales[:, k * units : (k + 1) * units]
                if self.dropout_layer is not None:
                    h = self.dropout_layer(h, training=training)
                hidden[task] = h
        return self.heads(hidden)

    def hyperparameters(self):
        return {
            "hidden_units": self.hidden_units,
            "gate_features": self.gate_features,
            "gate_hidden_units": self.gate_hidden_units,
            "epnet": self.epnet,
            "ppnet": self.ppnet,
            "gate_scale": self.gate_scale,
            "dropout": self.dropout,
            "activation": self.activation,
        }
