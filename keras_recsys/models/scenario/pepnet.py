"""PEPNet (EPNet + PPNet) and LHUC-style gating of embeddings and hidden units."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from keras_recsys.layers.scenario.gating import PersonalizedGate
from keras_recsys.models.backbone import Backbone
from keras_recsys.models.base import RecModel


@keras.saving.register_keras_serializable(package="keras_recsys")
class PEPNetBackbone(Backbone):
    """PEPNet's body: EPNet-gated embeddings, then PPNet-gated towers, one per task.

    "hidden" = {task: (B, width)}: task t's tower output h_{t,L} times its
    PPNet "head" scales (h_{t,L} alone when PPNet is off), i.e. the input
    of the task's linear head, already gated; width = `hidden_units[-1]`
    (x's width when `hidden_units` is empty). See `PEPNet` for the gates,
    and `gated_tower_inputs` for the gated tower input and the scales.

    Args:
        spec, task_units, numeric_field_dim, oov_dropout: see `Backbone`.
        hidden_units, gate_features, gate_hidden_units, epnet, ppnet,
            gate_scale, dropout, activation, epnet_features,
            ppnet_features: see `PEPNet`. `gate_features` only fills in
            the other two lists; the config holds those.

    Example:

    >>> backbone = kr.models.PEPNetBackbone(spec, {"click": 1, "like": 1},
    ...                                     hidden_units=[64, 32],
    ...                                     epnet_features=["domain"],
    ...                                     ppnet_features=["user_id", "item_id"])
    >>> {k: v.shape for k, v in backbone(batch)["hidden"].items()}
    {'click': (B, 32), 'like': (B, 32)}
    """

    def __init__(
        self,
        spec,
        task_units: dict[str, int],
        hidden_units: Sequence[int] = (256, 128),
        gate_features: Sequence[str] | None = None,
        gate_hidden_units: int = 64,
        epnet: bool = True,
        ppnet: bool = True,
        gate_scale: float = 2.0,
        dropout: float = 0.0,
        activation: str = "relu",
        epnet_features: Sequence[str] | None = None,
        ppnet_features: Sequence[str] | None = None,
        **kwargs,
    ):
        super().__init__(spec, task_units, **kwargs)
        if epnet_features is None:
            epnet_features = gate_features
        if epnet_features is None and self.spec.scenario_feature is not None:
            epnet_features = [self.spec.scenario_feature.name]
        if ppnet_features is None:
            ppnet_features = gate_features if gate_features is not None else epnet_features
        self.epnet = bool(epnet)
        self.ppnet = bool(ppnet)
        self.epnet_features = self._gate_fields("epnet_features", epnet_features, self.epnet)
        self.ppnet_features = self._gate_fields("ppnet_features", ppnet_features, self.ppnet)
        self.hidden_units = [int(u) for u in hidden_units]
        self.gate_hidden_units = int(gate_hidden_units)
        self.gate_scale = float(gate_scale)
        self.dropout = float(dropout)
        self.activation = activation
        self.embedding_gate = (
            PersonalizedGate(
                len(self.field_names),
                self.gate_hidden_units,
                self.gate_scale,
                dtype=self.dtype_policy,
                name="embedding_gate",
            )
            if self.epnet
            else None
        )
        # Layer l's input width: x = [field embeddings, numeric features]
        # for the first layer, then the hidden widths; the last entry is the
        # heads' input.
        widths = [self.input_width(), *self.hidden_units]
        gate_names = [f"layer_{i}" for i in range(len(self.hidden_units))] + ["head"]
        num_tasks = len(self.task_units)
        self.unit_gates = (
            {
                name: PersonalizedGate(
                    num_tasks * width,
                    self.gate_hidden_units,
                    self.gate_scale,
                    dtype=self.dtype_policy,
                    name=f"unit_gate_{name}",
                )
                for name, width in zip(gate_names, widths)
            }
            if self.ppnet
            else {}
        )
        self.tower_layers = {
            f"{task}_{i}": keras.layers.Dense(u, dtype=self.dtype_policy, name=f"tower_{task}_{i}")
            for task in self.task_names
            for i, u in enumerate(self.hidden_units)
        }
        self.dropout_layer = (
            keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name="dropout")
            if self.dropout
            else None
        )

    def _gate_fields(self, argument: str, names, needed: bool) -> list[str] | None:
        """The checked field names a gate reads (None when that gate is off and unnamed)."""
        if names is None:
            if needed:
                raise ValueError(
                    f"PEPNet needs `{argument}` (or `gate_features`), or a feature with "
                    "role='scenario' in the spec to gate on."
                )
            return None
        names = [names] if isinstance(names, str) else list(names)
        if needed and not names:
            raise ValueError(f"PEPNet `{argument}` is empty; name the fields its gate reads.")
        missing = [f for f in names if f not in self.field_names]
        if missing:
            raise ValueError(
                f"PEPNet {argument} {missing} are not embedded fields; the fields "
                f"are {self.field_names}."
            )
        return names

    def gated_tower_inputs(self, inputs: dict, training=None) -> dict:
        """The EPNet-scaled tower input x and PPNet's scales of every layer input.

        Returns `{"x": (B, D), "scales": {gate name: (B, T·width)}}`, one
        scale entry per tower layer (`layer_0`, ...) and one for the heads'
        input (`head`), task t's scales in columns [t·width, (t+1)·width);
        `scales` is empty when PPNet is off. For inspection and tests.
        """
        return self._gate(self.embedding(inputs, training=training))

    def _gate(self, embedded: dict) -> dict:
        """`gated_tower_inputs` from the front end's output."""
        fields = dict(embedded["fields"])
        if self.embedding_gate is not None:
            domain = ops.concatenate([fields[f] for f in self.epnet_features], axis=-1)
            general = ops.stop_gradient(self.concat_inputs(embedded))
            scales = self.embedding_gate(ops.concatenate([domain, general], axis=-1))
            for i, name in enumerate(self.field_names):
                fields[name] = fields[name] * scales[:, i : i + 1]
        x = self.concat_inputs({"fields": fields, "dense": embedded["dense"]})
        unit_scales = {}
        if self.ppnet:
            prior = ops.concatenate([embedded["fields"][f] for f in self.ppnet_features], axis=-1)
            gate_input = ops.concatenate([prior, ops.stop_gradient(x)], axis=-1)
            unit_scales = {name: gate(gate_input) for name, gate in self.unit_gates.items()}
        return {"x": x, "scales": unit_scales}

    def _gated(self, h, scales, k: int):
        """Task k's slice of a layer's scales times its input h (h when PPNet is off)."""
        if scales is None:
            return h
        width = h.shape[-1]
        return h * scales[:, k * width : (k + 1) * width]

    def body(self, embedded, inputs, training=None):
        gated = self._gate(embedded)
        scales = gated["scales"]
        act = keras.activations.get(self.activation)
        hidden = {task: gated["x"] for task in self.task_names}
        for i in range(len(self.hidden_units)):
            layer_scales = scales.get(f"layer_{i}")
            for k, task in enumerate(self.task_names):
                h = self._gated(hidden[task], layer_scales, k)
                h = act(self.tower_layers[f"{task}_{i}"](h))
                if self.dropout_layer is not None:
                    h = self.dropout_layer(h, training=training)
                hidden[task] = h
        head_scales = scales.get("head")
        return {
            "hidden": {
                task: self._gated(hidden[task], head_scales, k)
                for k, task in enumerate(self.task_names)
            }
        }

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            hidden_units=self.hidden_units,
            epnet_features=self.epnet_features,
            ppnet_features=self.ppnet_features,
            gate_hidden_units=self.gate_hidden_units,
            epnet=self.epnet,
            ppnet=self.ppnet,
            gate_scale=self.gate_scale,
            dropout=self.dropout,
            activation=self.activation,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class PEPNet(RecModel):
    """Per-task towers whose embeddings and layer inputs are scaled by gates.

    With E all field embeddings, x0 = [E, numeric features], p_ep the
    embeddings of `epnet_features` (the paper's domain-side features; by
    default the scenario feature) and p_pp those of `ppnet_features` (the
    paper's user, item and author ids):

    * EPNet (`epnet=True`): δ = Gate_ep([p_ep, sg(x0)]) ∈ (0, 2)^F scales each
      field embedding, e_f ← δ_f · e_f, giving x (x = x0 when off);
    * PPNet (`ppnet=True`): every layer of every task tower t takes a gated
      input: h_{t,0} = x and
      h_{t,l+1} = act(W_{t,l} (δ_{t,l} ⊙ h_{t,l}) + b_{t,l}), with
      δ_{·,l} = Gate_l([p_pp, sg(x)]) ∈ (0, 2)^{T·width(h_l)} split by task;
      the task head is the tower's last layer, so its input h_{t,L} is
      gated too (one gate per hidden layer plus one for the heads);

    each gate a `PersonalizedGate` γ·sigmoid(MLP(·)), sg the stop-gradient
    (the gates do not train the embeddings they read through x). The paper
    gates a layer's input, so the first layer sees the gated embeddings,
    not only later hidden units. `epnet=False` keeps the unit gates alone:
    LHUC / PPNet. With both off the model is a DNN with one tower per task.
    The gates and towers are `PEPNetBackbone`; the model adds the heads.

    Reference: Chang et al., 2023, "PEPNet: Parameter and Embedding
    Personalized Network for Infusing with Personalized Prior Information"
    (KDD), eqs. for EPNet (δ_domain) and PPNet (δ_pnn); Swietojanski &
    Renals, 2014 (LHUC).

    Args:
        spec: a fitted `FeatureSpec`.
        tasks: the tasks.
        hidden_units: widths of each task tower.
        gate_features: shorthand for the same list as `epnet_features` and
            `ppnet_features` (how configs written before the two were
            separate name it).
        gate_hidden_units: hidden width of every gate.
        epnet: gate the field embeddings.
        ppnet: gate the inputs of the towers' layers.
        gate_scale: γ, the upper bound of the scales.
        dropout: dropout rate after each tower layer.
        activation: activation of the tower layers.
        epnet_features: names of the fields EPNet's gate reads (categorical,
            bucketized or sequence features): the domain / scenario side.
            Default: `gate_features`, else the spec's `role="scenario"`
            feature.
        ppnet_features: names of the fields PPNet's gates read: the
            personalization prior (user, item, author ids in the paper).
            Default: `gate_features`, else the EPNet features (the spec does
            not say which fields are user or item ids; name them).

    Example:

    >>> model = kr.models.PEPNet(spec, tasks=["click", "like"],
    ...                          epnet_features=["domain"],
    ...                          ppnet_features=["user_id", "item_id", "author_id"])
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
        epnet_features: Sequence[str] | None = None,
        ppnet_features: Sequence[str] | None = None,
        **kwargs,
    ):
        super().__init__(spec, tasks, **kwargs)
        self.backbone = PEPNetBackbone(
            hidden_units=hidden_units,
            gate_features=gate_features,
            gate_hidden_units=gate_hidden_units,
            epnet=epnet,
            ppnet=ppnet,
            gate_scale=gate_scale,
            dropout=dropout,
            activation=activation,
            epnet_features=epnet_features,
            ppnet_features=ppnet_features,
            **self.backbone_arguments(),
        )
        self.build_now()

    def gated_tower_inputs(self, inputs: dict, training=None) -> dict:
        """The backbone's `PEPNetBackbone.gated_tower_inputs`: the EPNet-scaled
        tower input `"x"` and PPNet's `"scales"` of every layer input."""
        return self.backbone.gated_tower_inputs(inputs, training=training)
