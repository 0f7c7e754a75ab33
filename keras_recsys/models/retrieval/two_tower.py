"""Two-tower retrieval: a query tower and a candidate tower scored by a dot product."""

from __future__ import annotations

from collections.abc import Sequence as SequenceType
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_recsys.features.feature import NUM_RESERVED_IDS, Categorical, Numeric, Sequence
from keras_recsys.features.spec import FeatureSpec
from keras_recsys.heads.retrieval import InBatchSoftmax
from keras_recsys.heads.top_k import EXCLUDED_SCORE, top_k_items
from keras_recsys.layers.embedding import FeatureEmbedding
from keras_recsys.layers.mlp import MLP
from keras_recsys.models.top_k import TopKRecommender
from keras_recsys.training.replicas import scale_loss_for_replicas


@keras.saving.register_keras_serializable(package="keras_recsys")
class TwoTower(TopKRecommender):
    """Two towers into one space: score(query, candidate) = ⟨u(query), v(candidate)⟩.

    The query tower reads the query features (user, context, a pooled
    history), the candidate tower the candidate features (the item id and
    categorical item attributes); both are MLPs over the shared embedding
    front end, so a history that shares the item vocabulary shares its
    table. `normalize=True` makes the score a cosine. Trained with the
    in-batch softmax of `InBatchSoftmax` (temperature, logQ correction,
    accidental-hit removal, optional hard-negative mining) on rows holding a
    query and its positive candidate.

    At inference every item of the catalogue is scored (one matmul; the
    catalogue maps each item id to its candidate features,
    `set_candidate_catalog`): `recommend` returns the top k with the
    history excluded, and `export` writes a SavedModel whose
    `serving_default` maps raw query features to raw `item_ids` and
    `scores`, with an `item_embeddings` signature for external indexes.
    keras-rs `BruteForceRetrieval` is not used for this top k: it cannot
    exclude each query's own history.

    Reference: Yi et al., 2019, "Sampling-Bias-Corrected Neural Modeling for
    Large Corpus Item Recommendations" (RecSys); Covington et al., 2016,
    "Deep Neural Networks for YouTube Recommendations".

    Args:
        spec: a fitted `FeatureSpec`.
        candidate_features: the candidate tower's features (categorical);
            every other input feature is a query feature.
        candidate_id: the categorical feature that identifies an item
            (default: the first candidate feature).
        tower_units: hidden widths of each tower.
        output_dim: size of the shared space.
        activation, dropout: of the towers' hidden layers.
        normalize: L2-normalize both vectors (cosine scores).
        temperature: softmax temperature (0.05 is a common choice with
            cosine scores).
        logq_correction, remove_accidental_hits, num_hard_negatives: see
            `InBatchSoftmax`.

    Example:

    >>> model = kr.models.TwoTower(spec, candidate_features=["item_id", "genre"])
    >>> model.compile(optimizer="adam")
    >>> model.fit(kr.data.from_pandas(train_df, model, shuffle=True), epochs=5)
    >>> model.recommend(kr.data.to_numpy(users_df, model), k=10)["item_ids"]
    """

    def __init__(
        self,
        spec: FeatureSpec,
        candidate_features: SequenceType[str],
        candidate_id: str | None = None,
        tower_units: SequenceType[int] = (128,),
        output_dim: int = 64,
        activation: str = "relu",
        dropout: float = 0.0,
        normalize: bool = True,
        temperature: float = 0.05,
        logq_correction: bool = True,
        remove_accidental_hits: bool = True,
        num_hard_negatives: int | None = None,
        **kwargs,
    ):
        if isinstance(spec, dict):
            spec = FeatureSpec.from_config(spec)
        kwargs.setdefault("name", "two_tower")
        super().__init__(**kwargs)
        spec.check_adapted()
        self.spec = spec
        self.candidate_features = _candidate_features(spec, candidate_features)
        self.candidate_id = candidate_id or self.candidate_features[0]
        if self.candidate_id not in self.candidate_features:
            raise ValueError(
                f"candidate_id '{self.candidate_id}' is not one of the candidate features "
                f"{self.candidate_features}."
            )
        self.query_features = [
            f.name for f in spec.input_features if f.name not in self.candidate_features
        ]
        if not self.query_features:
            raise ValueError("TwoTower needs at least one query feature besides the candidates.")
        self.history_feature = _history(spec, self.query_features, self.candidate_id)
        self.tower_units = [int(u) for u in tower_units]
        self.output_dim = int(output_dim)
        self.activation = activation
        self.dropout = float(dropout)
        self.normalize = bool(normalize)
        self.num_items = spec.input_dim(self.candidate_id)
        self.embedding = FeatureEmbedding.from_spec(spec, name="embedding")
        self.query_tower = _tower(self.tower_units, output_dim, activation, dropout, "query")
        self.candidate_tower = _tower(
            self.tower_units, output_dim, activation, dropout, "candidate"
        )
        self.head = InBatchSoftmax(
            self.num_items,
            temperature=temperature,
            logq_correction=logq_correction,
            remove_accidental_hits=remove_accidental_hits,
            num_hard_negatives=num_hard_negatives,
            name="retrieval",
        )
        self.head.build()
        # Row i: the candidate features of item i (ids), for scoring the whole catalogue.
        catalog = np.ones((self.num_items, len(self.candidate_features)), "int32")
        catalog[:, self.candidate_features.index(self.candidate_id)] = np.arange(self.num_items)
        self.catalog = self.add_weight(
            name="candidate_catalog",
            shape=catalog.shape,
            initializer=keras.initializers.Constant(catalog),
            dtype="int32",
            trainable=False,
        )
        self.build()

    # ------------------------------------------------------------ properties
    @property
    def item_feature(self) -> str:
        """The feature whose vocabulary names the retrieved items."""
        return self.candidate_id

    @property
    def serving_features(self) -> list[str]:
        """The raw inputs of the served model: the query features."""
        return list(self.query_features)

    # ------------------------------------------------------------- computing
    def _vectors(self, tower, fields: list, training=None):
        x = tower(ops.concatenate(fields, axis=-1), training=training)
        x = ops.cast(x, "float32")
        return ops.normalize(x, axis=-1) if self.normalize else x

    def _fields(self, inputs: dict, names: list[str]) -> list:
        """One vector per feature: ids embedded, sequences pooled, numerics as they are.

        Looks up only the features asked for, so the served query tower
        needs no candidate inputs.
        """
        parts = []
        for name in names:
            feature = self.spec[name]
            if isinstance(feature, Numeric) and not feature.is_bucketized:
                part = ops.expand_dims(inputs[name], -1)
            else:
                part = self.embedding.lookup(self._table(name), inputs[name])
                if isinstance(feature, Sequence):
                    mask = ops.greater_equal(inputs[name], NUM_RESERVED_IDS)
                    part = self.embedding.poolings[name](part, mask=mask)
            parts.append(ops.cast(part, self.compute_dtype))
        return parts

    def query_vectors(self, inputs, training=False):
        """(B, d) query vectors of preprocessed query features."""
        fields = self._fields(inputs, self.query_features)
        return self._vectors(self.query_tower, fields, training)

    def candidate_embeddings(self, ids, training=False):
        """(B, d) candidate vectors of internal item ids, their features from the catalogue."""
        rows = ops.take(self.catalog, ops.cast(ids, "int32"), axis=0)
        inputs = {name: rows[:, i] for i, name in enumerate(self.candidate_features)}
        return self._candidate_vectors(inputs, training)

    def _candidate_vectors(self, inputs, training=False):
        fields = self._fields(inputs, self.candidate_features)
        return self._vectors(self.candidate_tower, fields, training)

    def _table(self, name: str) -> str:
        return self.spec.vocabulary_owner(name).name

    def call(self, inputs, training=None) -> dict:
        """{"query": (B, d), "candidate": (B, d)} for rows of queries and their positives."""
        return {
            "query": self.query_vectors(inputs, training=training),
            "candidate": self._candidate_vectors(inputs, training=training),
        }

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = self.head.compute_loss(
            y_pred["query"], y_pred["candidate"], x[self.candidate_id], sample_weight
        )
        for extra in self.losses:
            loss = loss + ops.cast(ops.sum(extra), loss.dtype)
        return scale_loss_for_replicas(loss)

    def score_all(self, inputs):
        """(B, V) scores of every item id (ids 0 and 1 never rank)."""
        items = self.candidate_embeddings(ops.arange(self.num_items, dtype="int32"))
        scores = ops.matmul(self.query_vectors(inputs), ops.transpose(items))
        reserved = ops.arange(self.num_items) < NUM_RESERVED_IDS
        return ops.where(reserved, ops.full_like(scores, EXCLUDED_SCORE), scores)

    def recommend(self, inputs, k: int = 10, exclude_history: bool = True) -> dict:
        """{"scores", "item_ids" (internal)}: the top k items, the history excluded."""
        exclude = inputs[self.history_feature] if exclude_history and self.history_feature else None
        return top_k_items(self.score_all(inputs), k, exclude)

    def set_candidate_frequencies(self, counts) -> None:
        """Candidate counts (V,) in the training data, for the logQ correction."""
        self.head.set_candidate_frequencies(counts)

    def set_candidate_catalog(self, df) -> None:
        """Fills the catalogue from a DataFrame with one row per item and its candidate features."""
        catalog = ops.convert_to_numpy(self.catalog).copy()
        ids = self.spec.lookup(self.candidate_id, df[self.spec[self.candidate_id].column])
        for i, name in enumerate(self.candidate_features):
            catalog[ids, i] = self.spec.lookup(name, df[self.spec[name].column])
        catalog[:, self.candidate_features.index(self.candidate_id)] = np.arange(self.num_items)
        self.catalog.assign(catalog)

    def build(self, input_shape=None):
        if self.built:
            return
        dummy = {}
        for feature in self.spec.input_features:
            if isinstance(feature, Sequence):
                dummy[feature.name] = ops.ones((2, feature.max_length), "int32")
            elif isinstance(feature, Numeric) and not feature.is_bucketized:
                dummy[feature.name] = ops.zeros((2,), "float32")
            else:
                dummy[feature.name] = ops.ones((2,), "int32")
        self.call(dummy, training=False)
        self.built = True

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "spec": self.spec.get_config(),
            "candidate_features": self.candidate_features,
            "candidate_id": self.candidate_id,
            "tower_units": self.tower_units,
            "output_dim": self.output_dim,
            "activation": self.activation,
            "dropout": self.dropout,
            "normalize": self.normalize,
            "temperature": self.head.temperature,
            "logq_correction": self.head.logq_correction,
            "remove_accidental_hits": self.head.remove_accidental_hits,
            "num_hard_negatives": self.head.num_hard_negatives,
        }


def _tower(units: list[int], output_dim: int, activation: str, dropout: float, name: str):
    return keras.Sequential(
        [
            MLP(units, activation, dropout, name=f"{name}_mlp"),
            keras.layers.Dense(output_dim, name=f"{name}_output"),
        ],
        name=f"{name}_tower",
    )


def _candidate_features(spec: FeatureSpec, names) -> list[str]:
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise ValueError("TwoTower needs at least one candidate feature (the item id).")
    for name in names:
        if name not in spec:
            raise ValueError(f"Candidate feature '{name}' is not in the spec: {spec.names}.")
        if not isinstance(spec[name], Categorical):
            raise ValueError(
                f"Candidate feature '{name}' is a {spec[name].kind} feature; the candidate "
                "tower reads categorical item features (ids and attributes)."
            )
    return names


def _history(spec: FeatureSpec, query_features: list[str], candidate_id: str) -> str | None:
    """The query sequence over the candidates' vocabulary (excluded at inference), if any."""
    for name in query_features:
        feature = spec[name]
        if isinstance(feature, Sequence) and feature.shares_vocabulary_with == candidate_id:
            return name
    return None
