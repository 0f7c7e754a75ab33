"""`SequentialRecommender`: a sequence backbone plus a next-item head tied to the item table."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_recsys.features.feature import NUM_RESERVED_IDS, Sequence
from keras_recsys.features.spec import FeatureSpec
from keras_recsys.heads.next_item import NextItemHead
from keras_recsys.heads.top_k import top_k_items
from keras_recsys.models.top_k import TopKRecommender
from keras_recsys.training.replicas import scale_loss_for_replicas


class SequenceBackbone(keras.layers.Layer):
    """Item ids (B, L) → {"sequence": (B, L, d), "mask": (B, L)}; no loss.

    Owns the item embedding table (`item_embedding`, (V, d)), which the
    next-item head reuses as its output layer. Subclasses implement `body`.

    Args:
        num_items: size of the item id space V (ids 0 and 1 reserved).
        embedding_dim: d.
        max_length: L, the longest history the backbone reads.
    """

    def __init__(self, num_items: int, embedding_dim: int, max_length: int, **kwargs):
        super().__init__(**kwargs)
        self.num_items = int(num_items)
        self.embedding_dim = int(embedding_dim)
        self.max_length = int(max_length)
        self.item_embedding = keras.layers.Embedding(
            self.num_items,
            self.embedding_dim,
            embeddings_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            dtype=self.dtype_policy,
            name="item_embedding",
        )

    def call(self, ids, training=None) -> dict:
        mask = item_mask(ids)
        sequence = self.body(self.item_embedding(ids), mask, training=training)
        return {"sequence": sequence, "mask": mask}

    def body(self, embedded, mask, training=None):
        """(B, L, d) embedded items and their mask → (B, L, d) representations."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_items=self.num_items,
            embedding_dim=self.embedding_dim,
            max_length=self.max_length,
        )
        return config


class SequentialRecommender(TopKRecommender):
    """A next-item model: `backbone` over the history, `NextItemHead` tied to its items.

    Calling the model on preprocessed inputs returns the backbone's named
    representations ({"sequence": (B, L, d), "mask": (B, L)}); the loss is
    the head's (`loss`), on the targets `kr.data.next_item_dataset` pairs
    with the inputs. At inference the representation at the last position
    (front padding puts the latest item there) scores every item:
    `score_all` for full-ranking evaluation, `recommend` for the top k with
    the history excluded, and `export` writes a SavedModel that maps a raw
    history to raw item ids.

    Subclasses (`SASRec`, `GRU4Rec`, `BERT4Rec`) build the backbone.

    Args:
        spec: a fitted `FeatureSpec` holding the history `Sequence`.
        backbone: a `SequenceBackbone`.
        history: name of the history feature (default: the spec's only
            sequence).
        timestamps: name of the input holding the history's timestamps
            ((B, L) integers aligned with the items, front-padded the same
            way), for backbones that read time (`HSTU`); None for none.
        loss, num_negatives, sampler, logq_correction, temperature,
            normalize: the next-item loss (see `NextItemHead`).
        seed: seed of the head's negative sampling.
    """

    target_style = "shifted"

    def __init__(
        self,
        spec: FeatureSpec,
        backbone: SequenceBackbone,
        history: str | None = None,
        timestamps: str | None = None,
        loss: str = "bce",
        num_negatives: int | None = None,
        sampler: str = "uniform",
        logq_correction: bool = True,
        temperature: float = 1.0,
        normalize: bool = False,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.spec = spec
        self.history_feature = history_feature(spec, history)
        self.timestamp_feature = timestamps
        self.backbone = backbone
        self.head_config = {
            "loss": loss,
            "num_negatives": num_negatives,
            "sampler": sampler,
            "logq_correction": logq_correction,
            "temperature": temperature,
            "normalize": normalize,
            "seed": seed,
        }
        self.head = NextItemHead(backbone.item_embedding, name="next_item", **self.head_config)

    # ------------------------------------------------------------ properties
    @property
    def item_feature(self) -> str:
        """The feature whose vocabulary names the recommended items."""
        return self.history_feature

    @property
    def num_items(self) -> int:
        return self.backbone.num_items

    @property
    def max_length(self) -> int:
        return self.backbone.max_length

    @property
    def item_table(self):
        """The (V, d) item embeddings shared by the backbone and the head."""
        return self.backbone.item_embedding.embeddings

    def training_pair(self, ids, timestamps=None):
        """(inputs, targets) from (B, max_length + 1) ids, as this model trains.

        "shifted" (SASRec, GRU4Rec, HSTU): inputs ids[:, :-1], targets
        ids[:, 1:]; "cloze" (BERT4Rec): both the latest `max_length` ids.
        `timestamps` aligned with `ids` are sliced like the inputs. Plain
        slicing, so NumPy arrays and tf.data tensors alike
        (`kr.data.next_item_dataset`).
        """
        inputs = slice(1, None) if self.target_style == "cloze" else slice(None, -1)
        x = {self.history_feature: ids[:, inputs]}
        if self.timestamp_feature is not None:
            if timestamps is None:
                raise ValueError(
                    f"{type(self).__name__} reads timestamps ('{self.timestamp_feature}'): "
                    "pass them aligned with the ids."
                )
            x[self.timestamp_feature] = timestamps[:, inputs]
        return x, ids[:, 1:]

    # ------------------------------------------------------------- computing
    def call(self, inputs, training=None) -> dict:
        if self.timestamp_feature is None:
            return self.backbone(self._ids(inputs, training), training=training)
        ids, timestamps = self._ids_and_timestamps(inputs, training)
        return self.backbone(ids, timestamps=timestamps, training=training)

    def _ids(self, inputs, training=None):
        """The history ids; at inference with unseen items dropped (`known_items_last`).

        Not in training, where the targets are aligned with the positions.
        """
        ids = inputs[self.history_feature] if isinstance(inputs, dict) else inputs
        ids = ops.cast(ids, "int32")
        return ids if training else known_items_last(ids)

    def _ids_and_timestamps(self, inputs, training=None):
        """`_ids` and the timestamps moved with them."""
        if not isinstance(inputs, dict) or self.timestamp_feature not in inputs:
            raise ValueError(
                f"{type(self).__name__} reads the history's timestamps: the inputs need "
                f"'{self.timestamp_feature}' next to '{self.history_feature}'."
            )
        ids = ops.cast(inputs[self.history_feature], "int32")
        timestamps = ops.cast(inputs[self.timestamp_feature], "int32")
        if training:
            return ids, timestamps
        order = known_items_order(ids)
        ids = ops.take_along_axis(ids, order, axis=-1)
        timestamps = ops.take_along_axis(timestamps, order, axis=-1)
        known = item_mask(ids)
        return ops.where(known, ids, 0), ops.where(known, timestamps, 0)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        targets = y_pred.get("targets", y) if isinstance(y_pred, dict) else y
        if targets is None:
            raise ValueError(
                f"{type(self).__name__} trains on next-item targets: feed "
                "`kr.data.next_item_dataset(df, model)`, which pairs the inputs with them."
            )
        loss = self.head.compute_loss(y_pred["sequence"], targets, sample_weight)
        for extra in self.losses:
            loss = loss + ops.cast(ops.sum(extra), loss.dtype)
        return scale_loss_for_replicas(loss)

    def query_vectors(self, inputs, training=False):
        """(B, d): the representation at the last position, which predicts the next item."""
        return self(inputs, training=training)["sequence"][:, -1, :]

    def score_all(self, inputs):
        """(B, V) scores of every item id for the next position (ids 0, 1 never rank)."""
        return ops.cast(self.head(self.query_vectors(inputs)), "float32")

    def scorer(self) -> keras.Model:
        """A compiled model of (B, L) history ids → (B, V) scores, for fast full-ranking evaluation.

        With timestamps it takes {history: ids, timestamps: times}.

        `scorer().predict_on_batch(ids)` runs `score_all` as one compiled
        function (jit on JAX) instead of op by op; built once, not saved.
        """
        scorer = self.__dict__.get("_scorer_model")
        if scorer is None:
            ids = keras.Input((self.max_length,), dtype="int32", name=self.history_feature)
            inputs = {self.history_feature: ids}
            if self.timestamp_feature is not None:
                inputs[self.timestamp_feature] = keras.Input(
                    (self.max_length,), dtype="int32", name=self.timestamp_feature
                )
            scores = self.head(self.query_vectors(inputs))
            scorer = keras.Model(
                ids if len(inputs) == 1 else inputs, scores, name=f"{self.name}_scorer"
            )
            # Not an attribute Keras tracks: the scorer shares the model's weights.
            object.__setattr__(self, "_scorer_model", scorer)
        return scorer

    def recommend(self, inputs, k: int = 10, exclude_history: bool = True) -> dict:
        """{"scores": (B, k), "item_ids": (B, k) internal ids} of the top k next items.

        With `exclude_history`, items already in the history never appear.
        """
        exclude = self._ids(inputs) if exclude_history else None
        return top_k_items(self.score_all(inputs), k, exclude)

    def candidate_embeddings(self, ids):
        """(B, d) vectors the model scores histories against, for internal item ids."""
        return self.head.item_vectors(ids)

    def build(self, input_shape=None):
        if self.built:
            return
        ids = ops.ones((2, self.max_length), "int32")
        if self.timestamp_feature is not None:
            ids = {self.history_feature: ids, self.timestamp_feature: ops.zeros_like(ids)}
        self.call(ids, training=False)
        self.built = True

    # --------------------------------------------------------- serialization
    def backbone_config(self) -> dict[str, Any]:
        """The subclass's own constructor arguments."""
        return {}

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "spec": self.spec.get_config(),
            "history": self.history_feature,
            "timestamps": self.timestamp_feature,
            **self.head_config,
            **self.backbone_config(),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        config = dict(config)
        spec = FeatureSpec.from_config(config.pop("spec"))
        return cls(spec, **config)


def history_feature(spec: FeatureSpec, name: str | None) -> str:
    """The history `Sequence` of a next-item model, or a clear error."""
    spec.check_adapted()
    sequences = [f.name for f in spec.features if isinstance(f, Sequence)]
    if name is None:
        if len(sequences) != 1:
            raise ValueError(
                "A next-item model reads one history Sequence; the spec has "
                f"{sequences or 'none'}: pass history=<feature name>."
            )
        return sequences[0]
    if name not in sequences:
        raise ValueError(
            f"history='{name}' is not a Sequence feature of the spec (sequences: {sequences})."
        )
    return name


def sequence_dims(spec: FeatureSpec, history: str | None) -> tuple[int, int, int]:
    """(num_items V, embedding size d, max_length L) of a spec's history feature."""
    name = history_feature(spec, history)
    return spec.input_dim(name), spec.embedding_dim(name), spec[name].max_length


def known_items_last(ids):
    """(B, L) ids with unseen items (1) dropped: known items keep their order, right-aligned.

    The preprocessing maps an unseen item to the out-of-vocabulary id 1 in
    place; a next-item model reads its query at the last position, so an
    unseen latest item would leave it nothing to read. Moving the known
    items to the end (a stable partition) makes the query the latest known
    item's, as if the unseen ones were never in the history.
    """
    moved = ops.take_along_axis(ids, known_items_order(ids), axis=-1)
    return ops.where(item_mask(moved), moved, ops.zeros_like(moved))


def known_items_order(ids):
    """(B, L) indices that move known items to the end, in order (a stable partition)."""
    length = ops.shape(ids)[1]
    known = ops.cast(item_mask(ids), "int32")
    return ops.argsort(known * length + ops.arange(length, dtype="int32"), axis=-1)


def item_mask(ids):
    """True where a position holds a known item: padding (0) and unseen items (1) are ignored."""
    return ops.greater_equal(ids, NUM_RESERVED_IDS)
