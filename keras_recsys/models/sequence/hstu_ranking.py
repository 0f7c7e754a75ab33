"""HSTU for ranking: item and action tokens interleaved, a multi-task head on item tokens."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import keras
from keras import ops

from keras_recsys.features.feature import NUM_RESERVED_IDS
from keras_recsys.features.spec import FeatureSpec
from keras_recsys.layers.sequence.hstu import HSTU as HSTUBlock
from keras_recsys.layers.sequence.hstu import positions_from_oldest
from keras_recsys.layers.sequence.m_falcon import m_falcon
from keras_recsys.models.sequence.base import item_mask
from keras_recsys.models.sequence.hstu import hstu_optimizer
from keras_recsys.training.compile_config import OwnLossCompile
from keras_recsys.training.replicas import scale_loss_for_replicas


@keras.saving.register_keras_serializable(package="keras_recsys")
class HSTURanker(OwnLossCompile, keras.Model):
    """Generative ranking with HSTU: predict each item's actions from everything before it.

    A user's history of n (item, action) pairs becomes 2n tokens
    x_0, a_0, x_1, a_1, …: an item token is √d · E_item[x] + P[position], an
    action token √d · E_action[a] + P[position] (positions counted from the
    oldest kept token). Causal HSTU blocks run over the tokens; the output at
    item token x_i, which sees x_0 … a_{i−1} and x_i but not a_i, goes
    through a layer normalization and one logit per task: the probability
    that the user takes task k's action on item i. Training reads every item
    token of the history at once (teacher forcing).

    Ranking m candidates for a user appends them as item tokens after the
    history, each attending to the whole history and to itself only, all at
    the first position after it (M-FALCON, `kr.layers.m_falcon`): one pass
    gives every candidate the score it would get alone, in ⌈m / b⌉
    micro-batches of `micro_batch` candidates over a cached history.

    Actions are a `Sequence` aligned with the history (one value per item:
    a rating, an event name, a combination such as "click+like"); each task
    names the raw action values that count as its positive. An action value
    unknown to the vocabulary is no label (the item is not trained on).

    Reference: Zhai et al., 2024, "Actions Speak Louder than Words:
    Trillion-Parameter Sequential Transducers for Generative
    Recommendations" (ICML), §2 (ranking) and §3.4 (M-FALCON).

    Args:
        spec: a fitted `FeatureSpec` with the history and action `Sequence`s
            (same `max_length` L) and the candidate `Sequence` (its
            `max_length` is the most candidates a request may hold); the
            history and the candidates must share one item vocabulary
            (the candidates `shares_vocabulary_with` the history).
        tasks: {task name: raw action values that are positives}, e.g.
            {"liked": [4, 5], "loved": [5]}.
        history, actions, candidates: names of the three sequences.
        num_blocks, num_heads, dropout: the HSTU blocks.
        micro_batch: b, candidates per M-FALCON micro-batch.

    Example:

    >>> spec = kr.FeatureSpec([
    ...     kr.Sequence("history", max_length=50),
    ...     kr.Sequence("history_actions", max_length=50),
    ...     kr.Sequence("candidates", max_length=100, shares_vocabulary_with="history"),
    ... ], 64)
    >>> spec.adapt(train_df)  # candidates may be empty lists there
    >>> model = kr.models.HSTURanker(spec, tasks={"liked": [4, 5], "loved": [5]})
    """

    def __init__(
        self,
        spec: FeatureSpec,
        tasks: Mapping[str, Sequence[Any]],
        history: str = "history",
        actions: str = "history_actions",
        candidates: str = "candidates",
        num_blocks: int = 2,
        num_heads: int = 1,
        dropout: float = 0.2,
        micro_batch: int = 128,
        **kwargs: Any,
    ):
        if isinstance(spec, dict):
            spec = FeatureSpec.from_config(spec)
        kwargs.setdefault("name", "hstu_ranker")
        super().__init__(**kwargs)
        spec.check_adapted()
        for name in (history, actions, candidates):
            if name not in spec or spec[name].kind != "sequence":
                raise ValueError(f"HSTURanker: '{name}' must be a Sequence feature of the spec.")
        if spec.vocabulary_owner(history).name != spec.vocabulary_owner(candidates).name:
            raise ValueError(
                f"HSTURanker: the history '{history}' and the candidates '{candidates}' must "
                f"share one item vocabulary: Sequence('{candidates}', "
                f"shares_vocabulary_with='{history}')."
            )
        if spec[history].max_length != spec[actions].max_length:
            raise ValueError(
                f"HSTURanker: '{history}' and '{actions}' must keep the same max_length "
                f"(they are aligned), got {spec[history].max_length} and {spec[actions].max_length}."
            )
        if not tasks:
            raise ValueError("HSTURanker needs at least one task: {name: positive action values}.")
        self.spec = spec
        self.task_positives = {name: list(values) for name, values in tasks.items()}
        self.history_feature, self.action_feature = history, actions
        self.candidate_feature = candidates
        self.max_length = spec[history].max_length
        self.max_candidates = spec[candidates].max_length
        self.num_blocks, self.num_heads = int(num_blocks), int(num_heads)
        self.dropout, self.micro_batch = float(dropout), int(micro_batch)
        dim = spec.embedding_dim(history)
        self.embedding_dim = dim
        # 2L history tokens and the candidate after them.
        self.num_tokens = 2 * self.max_length + 1
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.item_embedding = keras.layers.Embedding(
            spec.input_dim(history), dim, embeddings_initializer=init, name="item_embedding"
        )
        self.action_embedding = keras.layers.Embedding(
            spec.input_dim(actions), dim, embeddings_initializer=init, name="action_embedding"
        )
        self.position_embedding = keras.layers.Embedding(
            self.num_tokens, dim, embeddings_initializer=init, name="position_embedding"
        )
        self.input_dropout = keras.layers.Dropout(dropout)
        self.blocks = [
            HSTUBlock(
                max_length=self.num_tokens,
                num_heads=self.num_heads,
                dropout=dropout,
                use_time_bias=False,
                name=f"block_{i}",
            )
            for i in range(self.num_blocks)
        ]
        self.output_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="output_norm")
        self.task_logits = keras.layers.Dense(len(self.task_positives), name="task_logits")
        self.action_labels = self._action_label_table()
        self.build()

    # ------------------------------------------------------------ properties
    @property
    def task_names(self) -> list[str]:
        return list(self.task_positives)

    @property
    def tasks(self) -> tuple:
        return ()

    @property
    def item_feature(self) -> str:
        return self.candidate_feature

    @property
    def serving_features(self) -> list[str]:
        return [self.history_feature, self.action_feature, self.candidate_feature]

    def _action_label_table(self):
        """(V_actions, T) float32: 1 where action id v is a positive of task t; −1 for no label."""
        values = self.spec.vocabulary_values(
            self.action_feature, list(range(self.spec.input_dim(self.action_feature)))
        )
        rows = []
        for index, value in enumerate(values):
            if index < NUM_RESERVED_IDS:
                rows.append([-1.0] * len(self.task_positives))  # padding / unknown: no label
                continue
            rows.append(
                [
                    1.0 if _same_value(value, positives) else 0.0
                    for positives in self.task_positives.values()
                ]
            )
        return ops.convert_to_tensor(rows, "float32")

    # -------------------------------------------------------------- tokens
    def _scaled(self, embedded):
        return embedded * ops.cast(math.sqrt(self.embedding_dim), embedded.dtype)

    def history_tokens(self, items, actions, training=None):
        """(B, 2L, d) interleaved item and action tokens, (B, 2L) mask, (B, 2L) positions."""
        items, actions = ops.cast(items, "int32"), ops.cast(actions, "int32")
        batch, length = ops.shape(items)[0], ops.shape(items)[1]
        pair_mask = item_mask(items)
        item_vectors = self._scaled(self.item_embedding(items))
        action_vectors = self._scaled(self.action_embedding(actions))
        tokens = ops.reshape(
            ops.stack([item_vectors, action_vectors], axis=2),
            (batch, 2 * length, self.embedding_dim),
        )
        mask = ops.reshape(ops.stack([pair_mask, pair_mask], axis=2), (batch, 2 * length))
        positions = positions_from_oldest(mask)
        tokens = tokens + self.position_embedding(positions)
        tokens = self.input_dropout(tokens, training=training)
        return tokens * ops.cast(mask, tokens.dtype)[:, :, None], mask, positions

    def call(self, inputs, training=None):
        """{"logits": (B, L, T) task logits at every history item token, "mask": (B, L)}."""
        items = inputs[self.history_feature]
        tokens, mask, positions = self.history_tokens(
            items, inputs[self.action_feature], training=training
        )
        for block in self.blocks:
            tokens = block(tokens, mask=mask, positions=positions, training=training)
        at_items = tokens[:, 0::2, :]
        logits = self.task_logits(self.output_norm(at_items))
        return {"logits": ops.cast(logits, "float32"), "mask": item_mask(ops.cast(items, "int32"))}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Mean binary cross-entropy from logits over every (history item, task) with a label."""
        actions = ops.cast(x[self.action_feature], "int32")
        labels = ops.take(self.action_labels, actions, axis=0)  # (B, L, T), −1: no label
        known = ops.logical_and(ops.greater_equal(labels, 0.0), y_pred["mask"][:, :, None])
        weights = ops.cast(known, "float32")
        logits = y_pred["logits"]
        # −[y log σ(z) + (1 − y) log(1 − σ(z))] = softplus(z) − y z, stable for any z.
        losses = ops.softplus(logits) - ops.maximum(labels, 0.0) * logits
        loss = ops.sum(losses * weights) / ops.maximum(ops.sum(weights), 1.0)
        for extra in self.losses:
            loss = loss + ops.cast(ops.sum(extra), loss.dtype)
        return scale_loss_for_replicas(loss)

    # ---------------------------------------------------------------- ranking
    def score_candidates(self, inputs) -> dict:
        """{task: (B, M) probabilities} of each candidate slot (padding slots: 0), by M-FALCON."""
        tokens, mask, _ = self.history_tokens(
            inputs[self.history_feature], inputs[self.action_feature]
        )
        candidates = ops.cast(inputs[self.candidate_feature], "int32")
        next_position = ops.sum(ops.cast(mask, "int32"), axis=1, keepdims=True)
        next_position = ops.minimum(next_position, self.num_tokens - 1)
        vectors = self._scaled(self.item_embedding(candidates))
        vectors = vectors + self.position_embedding(next_position)
        outputs = m_falcon(self.blocks, tokens, vectors, mask, micro_batch=self.micro_batch)
        probabilities = ops.sigmoid(
            ops.cast(self.task_logits(self.output_norm(outputs)), "float32")
        )
        real = ops.cast(item_mask(candidates), "float32")[:, :, None]
        probabilities = probabilities * real
        return {name: probabilities[:, :, k] for k, name in enumerate(self.task_names)}

    def predict_outputs(self, inputs) -> dict:
        """The served outputs: each task's (B, M) scores and the candidates' `item_ids`."""
        outputs = self.score_candidates(inputs)
        outputs["item_ids"] = ops.cast(inputs[self.candidate_feature], "int32")
        return outputs

    # -------------------------------------------------------------- training
    def compile(self, optimizer=None, **kwargs):
        """Compiles with `hstu_optimizer()` unless an optimizer is given; the loss is the model's."""
        optimizer = hstu_optimizer() if optimizer is None else optimizer
        return super().compile(optimizer=optimizer, **kwargs)

    def build(self, input_shape=None):
        if self.built:
            return
        ids = ops.ones((2, self.max_length), "int32")
        self.call({self.history_feature: ids, self.action_feature: ids})
        self.score_candidates(
            {
                self.history_feature: ids,
                self.action_feature: ids,
                self.candidate_feature: ops.ones((2, self.max_candidates), "int32"),
            }
        )
        self.built = True

    def export(self, base_dir: str, version: int | None = None, **kwargs) -> str:
        """A SavedModel: raw history, actions and candidate list in, each candidate's scores out."""
        from keras_recsys.export import export_model

        return export_model(self, base_dir, version=version, **kwargs)

    # --------------------------------------------------------- serialization
    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "spec": self.spec.get_config(),
            "tasks": self.task_positives,
            "history": self.history_feature,
            "actions": self.action_feature,
            "candidates": self.candidate_feature,
            "num_blocks": self.num_blocks,
            "num_heads": self.num_heads,
            "dropout": self.dropout,
            "micro_batch": self.micro_batch,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        config = dict(config)
        return cls(FeatureSpec.from_config(config.pop("spec")), **config)


def _same_value(value, positives) -> bool:
    """Whether a raw action value is among the positives (3 == "3" == 3.0)."""
    number = _as_number(value)
    return any(
        str(value) == str(p) or (number is not None and number == _as_number(p)) for p in positives
    )


def _as_number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
