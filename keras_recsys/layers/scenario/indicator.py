"""Scenario ids and the scenario-indicator shallow tower.

Multi-scenario models read one categorical feature declared with
`role="scenario"` (see `kr.Categorical`). Its ids follow the id convention
of every categorical feature: 0 is padding, 1 out-of-vocabulary, and
2 .. num_scenarios - 1 the scenarios of the vocabulary, where
`num_scenarios = spec.input_dim(name)` is the size of the id space. Layers
here take that `num_scenarios` and either keep one parameter row per id
(tables indexed by id) or one tower per vocabulary scenario.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_recsys.features.feature import NUM_RESERVED_IDS


def scenario_one_hot(ids, num_scenarios: int, reserved: bool = True, dtype="float32"):
    """One-hot rows of scenario ids, in `dtype` (the compute dtype of what they multiply).

    Args:
        ids: int scenario ids, shape (B,) or (B, 1).
        num_scenarios: size of the id space (reserved ids included).
        reserved: if True, columns are every id 0 .. num_scenarios - 1
            (shape (B, num_scenarios)); if False, only the vocabulary ids
            2 .. num_scenarios - 1 (shape (B, num_scenarios - 2)), so an
            example with a reserved id gets a zero row.

    Returns:
        (B, S) one-hot matrix.
    """
    ids = ops.cast(ops.reshape(ids, (-1,)), "int32")
    first = 0 if reserved else NUM_RESERVED_IDS
    columns = ops.arange(first, num_scenarios, dtype="int32")
    return ops.cast(ops.equal(ops.expand_dims(ids, -1), columns[None, :]), dtype)


def scenario_routing(ids, num_scenarios: int, dtype="float32"):
    """Routing weights over the vocabulary scenarios' towers, (B, S - 2).

    One-hot on the example's own tower; an example whose id is reserved
    (out-of-vocabulary: a scenario unseen in `adapt`) gets the uniform
    weights 1 / (num_scenarios - 2), i.e. the mean of all towers.
    """
    one_hot = scenario_one_hot(ids, num_scenarios, reserved=False, dtype=dtype)
    known = ops.sum(one_hot, axis=-1, keepdims=True)
    return one_hot + (1.0 - known) / float(num_scenarios - NUM_RESERVED_IDS)


def check_num_scenarios(num_scenarios: int, who: str) -> int:
    num_scenarios = int(num_scenarios)
    if num_scenarios < NUM_RESERVED_IDS + 1:
        raise ValueError(
            f"{who}: num_scenarios is the size of the scenario id space "
            f"(reserved ids 0 and 1 included), so it must be >= 3; got {num_scenarios}."
        )
    return num_scenarios


def scenario_feature_name(spec, who: str) -> str:
    """The name of the spec's scenario feature, or a clear error."""
    feature = spec.scenario_feature
    if feature is None:
        raise ValueError(
            f"{who} needs a scenario feature: declare one categorical feature "
            "with role='scenario', e.g. kr.Categorical('domain', role='scenario')."
        )
    return feature.name


@keras.saving.register_keras_serializable(package="keras_recsys")
class ScenarioIndicatorTower(keras.layers.Layer):
    """A shallow tower on scenario features whose logit joins the main logit.

    s = dropout(W_o · MLP([E_1[id_1], ..., E_k[id_k]]) + b_o), shape
    (B, units): each scenario feature id is embedded in the tower's own
    table, the embeddings are concatenated and passed through a small MLP
    and a linear output. A model adds s to its task logits before the
    activation (logit_t = main_t + s_t), so scenario-level biases are
    learnt apart from the main network. `dropout` acts on the shallow
    output, so the main network cannot lean entirely on the scenario shift.

    Any `RecModel` can add one with `scenario_tower=True` (or a dict of
    these arguments); STAR uses it as its auxiliary network.

    References: Zhao et al., 2019, "Recommending What Video to Watch Next:
    A Multitask Ranking System" (shallow tower); Sheng et al., 2021, "One
    Model to Serve All: Star Topology Adaptive Recommender for Multi-Domain
    CTR Prediction" (auxiliary network on the domain indicator).

    Args:
        input_dims: {feature_name: id space size} of the tower's features.
        units: output width (the sum of the tasks' logit widths).
        embedding_dim: embedding size of each feature in the tower.
        hidden_units: widths of the shallow MLP (empty: linear on the
            embeddings).
        dropout: dropout rate on the tower's output.
        activation: activation of the hidden layers.

    Example:

    >>> tower = kr.layers.ScenarioIndicatorTower({"domain": 6}, units=1)
    >>> tower({"domain": ids}).shape       # ids: int (B,)
    (B, 1)
    """

    def __init__(
        self,
        input_dims: dict[str, int],
        units: int = 1,
        embedding_dim: int = 8,
        hidden_units: Sequence[int] = (16,),
        dropout: float = 0.0,
        activation: str = "relu",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not input_dims:
            raise ValueError("ScenarioIndicatorTower needs at least one feature.")
        self.input_dims = {k: int(v) for k, v in input_dims.items()}
        self.units = int(units)
        self.embedding_dim = int(embedding_dim)
        self.hidden_units = [int(u) for u in hidden_units]
        self.dropout = float(dropout)
        self.activation = activation
        self.tables = {
            name: keras.layers.Embedding(dim, self.embedding_dim, name=f"table_{name}")
            for name, dim in self.input_dims.items()
        }
        self.hidden = [
            keras.layers.Dense(u, activation=activation, name=f"dense_{i}")
            for i, u in enumerate(self.hidden_units)
        ]
        self.output_layer = keras.layers.Dense(self.units, name="output")
        self.output_dropout = keras.layers.Dropout(self.dropout) if self.dropout else None

    @classmethod
    def from_spec(cls, spec, units: int = 1, features: Sequence[str] | None = None, **kwargs):
        """A tower on `features` (default: the spec's scenario feature)."""
        if features is None:
            features = [scenario_feature_name(spec, "The scenario-indicator tower")]
        input_dims = {}
        for name in features:
            feature = spec[name]
            if feature.kind not in ("categorical", "numeric") or (
                feature.kind == "numeric" and not feature.is_bucketized
            ):
                raise ValueError(
                    f"Scenario-tower feature '{name}' must be categorical or a "
                    f"bucketized numeric feature, got a {feature.kind} feature."
                )
            input_dims[name] = spec.input_dim(name)
        return cls(input_dims, units=units, **kwargs)

    def build(self, input_shape=None):
        for table in self.tables.values():
            table.build((None,))
        width = self.embedding_dim * len(self.tables)
        for layer in self.hidden:
            layer.build((None, width))
            width = layer.units
        self.output_layer.build((None, width))
        self.built = True

    def call(self, inputs, training=None):
        parts = [self.tables[name](ops.reshape(inputs[name], (-1,))) for name in self.input_dims]
        x = parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)
        for layer in self.hidden:
            x = layer(x)
        logits = self.output_layer(x)
        if self.output_dropout is not None:
            logits = self.output_dropout(logits, training=training)
        return logits

    def compute_output_shape(self, input_shape):
        return (None, self.units)

    def get_config(self):
        config = super().get_config()
        config.update(
            input_dims=self.input_dims,
            units=self.units,
            embedding_dim=self.embedding_dim,
            hidden_units=self.hidden_units,
            dropout=self.dropout,
            activation=self.activation,
        )
        return config


def scenario_tower_config(value) -> dict | None:
    """The `scenario_tower` argument as a dict of tower arguments, or None."""
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if isinstance(value, dict):
        allowed = {"features", "embedding_dim", "hidden_units", "dropout", "activation"}
        unknown = set(value) - allowed
        if unknown:
            raise ValueError(
                f"scenario_tower got unknown argument(s) {sorted(unknown)}; "
                f"allowed: {sorted(allowed)}."
            )
        return dict(value)
    raise TypeError(f"scenario_tower must be a bool or a dict, got {type(value).__name__}.")
