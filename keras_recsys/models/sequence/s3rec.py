"""S3-Rec: self-supervised pre-training of a SASRec encoder, then fine-tuning as SASRec.

`S3RecPretrainer` trains a bidirectional `SASRecBackbone` with S3-Rec's four
mutual-information objectives; `transfer_to` copies the trained encoder into
a `SASRec`, which is then fine-tuned left to right as usual. The masking and
segment sampling are NumPy (`s3rec_pretraining_batch`, and
`S3RecPretrainingData`, the `keras.utils.PyDataset` that draws them anew every
epoch), so pre-training runs with plain `fit` on every backend.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_recsys.features.feature import NUM_RESERVED_IDS
from keras_recsys.features.spec import FeatureSpec
from keras_recsys.models.sequence.base import history_feature, item_mask, sequence_dims
from keras_recsys.models.sequence.sasrec import SASRecBackbone
from keras_recsys.training.replicas import scale_loss_for_replicas

OBJECTIVES = ("aap", "mip", "map", "sp")
# The keys of a pre-training batch (`s3rec_pretraining_batch`).
INPUTS = ("items", "item_masked", "negatives", "segment", "segment_negatives")
# Losses are computed in float32 whatever the compute dtype (as in NextItemHead).
_LOSS_DTYPE = "float32"
# Redraws of a negative that falls in its sequence before it is kept anyway
# (only a sequence holding almost every item would get that far).
_MAX_REDRAWS = 100


# --------------------------------------------------------------------- data
def s3rec_pretraining_sequences(ids: np.ndarray, max_length: int | None = None) -> np.ndarray:
    """Every non-empty prefix of every sequence, front-padded: S3-Rec's pre-training rows.

    The reference pre-trains on each prefix s[:1], s[:2], ..., s[:n] of a
    user's training items s (the latest `max_length` of them) as a sample
    of its own, so the last position (always masked) covers every item.

    Args:
        ids: (N, T) front-padded internal ids (0 padding; ids below 2, padding
            and unseen items, are dropped).
        max_length: the latest items of a row that are kept (default T).

    Returns:
        (M, max_length) int32 rows, M = the total number of kept items, the
        prefixes of row 0 first, shortest first.

    Example:

    >>> s3rec_pretraining_sequences(np.array([[0, 5, 6, 7]]), max_length=3)
    array([[0, 0, 5],
           [0, 5, 6],
           [5, 6, 7]], dtype=int32)
    """
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise ValueError(f"ids must be (N, T) front-padded rows, got shape {ids.shape}.")
    length = int(max_length or ids.shape[1])
    blocks = []
    for row in ids:
        items = row[row >= NUM_RESERVED_IDS][-length:]
        n = len(items)
        if not n:
            continue
        # Prefix k (1..n) right-aligned: column c holds items[c - (length - k)].
        k = np.arange(1, n + 1)[:, None]
        source = np.arange(length)[None, :] - (length - k)
        blocks.append(np.where(source >= 0, items[np.clip(source, 0, None)], 0))
    if not blocks:
        return np.zeros((0, length), np.int32)
    return np.concatenate(blocks).astype(np.int32)


def _negatives(ids: np.ndarray, where: np.ndarray, num_items: int, rng) -> np.ndarray:
    """Uniform items in [2, V) outside each row's items, at `where` (0 elsewhere)."""
    negatives = rng.integers(NUM_RESERVED_IDS, num_items, size=ids.shape)
    for _ in range(_MAX_REDRAWS):
        clash = where & (negatives[:, :, None] == ids[:, None, :]).any(axis=-1)
        if not clash.any():
            break
        negatives[clash] = rng.integers(NUM_RESERVED_IDS, num_items, size=int(clash.sum()))
    return np.where(where, negatives, 0).astype(np.int32)


def s3rec_pretraining_batch(
    sequences: np.ndarray,
    num_items: int,
    mask_probability: float = 0.2,
    segment_pool: np.ndarray | None = None,
    rng: np.random.Generator | int | None = None,
) -> dict[str, np.ndarray]:
    """One pre-training batch: item masks, negative items and segments, as S3-Rec samples them.

    For each row (n items, front-padded):

    * every item but the last is masked with probability `mask_probability`;
      the last item is always masked. Each masked position gets a negative
      item drawn uniformly among the items not in the row (MIP).
    * rows with n >= 2 get a segment: a length drawn uniformly from
      1..⌊n/2⌋ and a start uniformly from 0..n − length; its negative is the
      run of the same length at a uniform start in `segment_pool` (SP).

    Args:
        sequences: (B, L) front-padded internal ids (0 before the items, no
            unseen-item id 1 among them), e.g. rows of
            `s3rec_pretraining_sequences`.
        num_items: V; items are 2 .. V-1.
        mask_probability: the masking rate (paper: 0.2).
        segment_pool: a 1-D array of item ids, the training sequences one
            after another, where negative segments are cut (default: this
            batch's items). It must be at least as long as a segment.
        rng: a NumPy generator or a seed.

    Returns:
        {"items": (B, L) the ids, "item_masked": (B, L) bool, "negatives": (B, L)
        ids (0 where not masked), "segment": (B, L) bool, "segment_negatives":
        (B, L) ids (0 outside the segment)}.
    """
    if not 0.0 < mask_probability < 1.0:
        raise ValueError(f"mask_probability must be in (0, 1), got {mask_probability}.")
    rng = np.random.default_rng(rng)
    ids = np.asarray(sequences).astype(np.int32)
    batch, length = ids.shape
    valid = ids >= NUM_RESERVED_IDS
    lengths = valid.sum(axis=1)
    columns = np.arange(length)
    if not np.array_equal(valid, columns[None, :] >= (length - lengths)[:, None]):
        raise ValueError(
            "sequences must be front-padded item ids: 0 before the items, none of them 0 or 1 "
            "(s3rec_pretraining_sequences makes such rows)."
        )
    if int(num_items) <= NUM_RESERVED_IDS + 1:
        raise ValueError(f"num_items must leave at least two items, got {num_items}.")

    masked = valid & (rng.random((batch, length)) < mask_probability)
    masked[:, -1] = valid[:, -1]  # the last item is always predicted
    negatives = _negatives(ids, masked, int(num_items), rng)

    pool = ids[valid] if segment_pool is None else np.asarray(segment_pool).astype(np.int32)
    has = lengths >= 2
    half = np.maximum(lengths // 2, 1)
    segment_length = np.where(has, rng.integers(1, half + 1), 0)
    if has.any() and len(pool) < segment_length.max():
        raise ValueError(
            f"segment_pool has {len(pool)} items, fewer than a segment of {segment_length.max()}."
        )
    start = rng.integers(0, lengths - segment_length + 1)
    begin = length - lengths + start  # the segment's first column
    offset = columns[None, :] - begin[:, None]
    segment = has[:, None] & (offset >= 0) & (offset < segment_length[:, None])
    pool_start = rng.integers(0, np.maximum(len(pool) - segment_length + 1, 1))
    source = np.clip(pool_start[:, None] + offset, 0, max(len(pool) - 1, 0))
    segment_negatives = np.where(segment, pool[source] if len(pool) else 0, 0)
    return {
        "items": ids,
        "item_masked": masked,
        "negatives": negatives,
        "segment": segment,
        "segment_negatives": segment_negatives.astype(np.int32),
    }


class S3RecPretrainingData(keras.utils.PyDataset):
    """S3-Rec pre-training batches for `fit`, masked and segmented anew every epoch.

    The rows are every prefix of every training sequence
    (`s3rec_pretraining_sequences`), shuffled every epoch; each batch comes
    from `s3rec_pretraining_batch`, with negative segments cut from all the
    training sequences one after another. Batch i of epoch e draws from the
    seed (seed, e, i), so a run is reproducible.

    Args:
        ids: (N, T) front-padded internal ids of the training sequences, e.g.
            `spec.sequence_ids("history", train["item_id"])`.
        num_items: V.
        max_length: the latest items of a sequence that are kept (the
            model's L).
        mask_probability: the masking rate.
        batch_size: rows per batch (the reference: 100).
        prefixes: pre-train on every prefix (the reference) or on the whole
            sequences only.
        shuffle: shuffle the rows every epoch.
        seed: seed of the masks, segments and order.
        **kwargs: `keras.utils.PyDataset` arguments (`workers`, ...).

    Example:

    >>> data = S3RecPretrainingData(train_ids, num_items=12103, max_length=50, batch_size=100)
    >>> pretrainer.fit(data, epochs=150)
    """

    def __init__(
        self,
        ids: np.ndarray,
        num_items: int,
        max_length: int,
        mask_probability: float = 0.2,
        batch_size: int = 100,
        prefixes: bool = True,
        shuffle: bool = True,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        ids = np.asarray(ids)
        latest = [row[row >= NUM_RESERVED_IDS][-int(max_length) :] for row in ids]
        # The training sequences one after another: where negative segments are cut.
        self.segment_pool = np.concatenate(latest or [np.zeros(0, np.int32)]).astype(np.int32)
        if prefixes:
            self.sequences = s3rec_pretraining_sequences(ids, max_length)
        else:
            self.sequences = np.zeros((len(latest), int(max_length)), np.int32)
            for i, items in enumerate(latest):
                self.sequences[i, self.sequences.shape[1] - len(items) :] = items
            self.sequences = self.sequences[[len(items) > 0 for items in latest]]
        if not len(self.sequences):
            raise ValueError("S3RecPretrainingData got no sequence with an item.")
        self.num_items = int(num_items)
        self.mask_probability = float(mask_probability)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(np.random.SeedSequence().entropy % 2**32) if seed is None else int(seed)
        self.epoch = 0
        self._order = self._permutation()

    def _permutation(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.sequences))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.sequences))

    def __len__(self) -> int:
        return math.ceil(len(self.sequences) / self.batch_size)

    def __getitem__(self, index: int):
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        batch = s3rec_pretraining_batch(
            self.sequences[rows],
            self.num_items,
            self.mask_probability,
            self.segment_pool,
            np.random.default_rng([self.seed, self.epoch, index]),
        )
        return (batch,)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._order = self._permutation()


# -------------------------------------------------------------------- model
@keras.saving.register_keras_serializable(package="keras_recsys")
class S3RecPretrainer(keras.Model):
    """S3-Rec pre-training: a bidirectional SASRec encoder and four mutual-information objectives.

    The encoder is a `SASRecBackbone` with `causal=False`: every position
    reads the whole (masked) sequence. A masked position reads a learned
    mask vector instead of its item. With F_t the encoder's output at
    position t, e_i the item table's row of item i, a_j the attribute
    table's row of attribute j, and a bilinear score
    f(x, y) = σ((W x + b)ᵀ y) with a W per objective (W_AAP, W_MIP, W_MAP,
    W_SP, each a Dense layer of size d), the objectives are:

    * AAP (associated attribute prediction), at unmasked positions: binary
      cross-entropy of σ(s_tj), s_tj = (W_AAP F_t + b)ᵀ a_j, against "item
      at t has attribute j", summed over all attributes j.
    * MIP (masked item prediction), at masked positions:
      −log σ(f(F_t, e_i) − f(F_t, e_neg)), i the hidden item and neg a
      uniformly drawn item outside the sequence.
    * MAP (masked attribute prediction), at masked positions: AAP's
      cross-entropy with W_MAP: the hidden item's attributes from its
      context.
    * SP (segment prediction), per sequence: a contiguous segment is masked;
      with c the output at the last position of the masked sequence and
      s⁺ (s⁻) that of the sequence where everything but the segment (a
      random segment of the same length from other sequences) is masked,
      −log σ(f(c, s⁺) − f(c, s⁻)).

    Those are the reference code's forms (the pairwise losses compare two
    sigmoid scores, as the paper's f includes σ). The cross-entropies are
    computed from the logits (softplus(s) − y·s) and the pairwise losses
    as softplus(f⁻ − f⁺), in float32: no log of a rounded-off probability.
    Each objective is summed over its positions (and attributes) and divided
    by the number of sequences in the batch. The reference sums over the
    batch; dividing by it keeps the objectives' relative sizes, so the
    paper's weights (AAP 0.2, MIP 1, MAP 1, SP 0.5) mean the same, and Adam
    is insensitive to the constant. The loss `fit` minimizes is
    Σ weight_k · L_k; each L_k is also reported (`aap_loss`, ...).

    `call(batch)` returns {objective: L_k} for the objectives whose weight is
    not 0 (the others are not computed, and their layers not made); the
    batch is a dict from `s3rec_pretraining_batch` (see
    `pretraining_data`). Sequences are front-padded; a sequence whose last
    item is masked predicts it from both sides of the other positions.

    Differences from the reference code, on purpose: the encoder is
    SASRec's pre-norm block stack (ReLU feed-forward of width d, item
    embeddings scaled by √d), the same class `SASRec` fine-tunes, instead of
    the reference's BERT-style post-norm GELU encoder; the mask token is a
    vector of its own, not a row of the item table, so the fine-tuned model
    never scores it; rows shorter than 2 items add no SP term (the
    reference adds the constant log 2); negative segments come from the
    training sequences only (the reference cuts them from whole sequences,
    validation and test items included).

    Fine-tuning: build a `SASRec` on the same spec with the same
    `num_blocks` and `num_heads`, then `pretrainer.transfer_to(sasrec)`
    copies the item table, positions and blocks (equivalently
    `sasrec.backbone.set_weights(pretrainer.backbone.get_weights())`, which
    `transfer_to` checks the sizes for); train it as usual (the paper:
    `loss="bce"`).

    Reference: Zhou et al., 2020, "S3-Rec: Self-Supervised Learning for
    Sequential Recommendation with Mutual Information Maximization" (CIKM).

    Args:
        spec: a fitted `FeatureSpec` with the history `Sequence` (V, d, L as
            for `SASRec`).
        item_attributes: (V, A) multi-hot of each internal item id's
            attributes, e.g. `SequenceDataset.item_attribute_matrix(spec)`;
            needed when `aap_weight` or `map_weight` is not 0. Kept in a
            non-trainable weight (saved with the model, not in the config).
        num_attributes: A, when `item_attributes` is not given (e.g. before
            loading weights; `from_config` uses it).
        num_blocks, num_heads, dropout: the encoder's sizes, as `SASRec`'s.
        mask_probability: the rate at which items are masked (paper: 0.2),
            used by `pretraining_data`.
        aap_weight, mip_weight, map_weight, sp_weight: each objective's
            weight (the reference's defaults 0.2, 1.0, 1.0, 0.5); 0 turns it off.
        history: the history feature (default: the spec's only sequence).
        **kwargs: base `keras.Model` arguments (`name`, `dtype`).

    Example:

    >>> beauty = kr.datasets.amazon_beauty()
    >>> train, valid, test = beauty.leave_one_out()
    >>> spec = kr.FeatureSpec([kr.Sequence("history", max_length=50)], 64)
    >>> spec.adapt(pd.DataFrame({"history": beauty.sequences["item_id"]}))
    >>> pretrainer = S3RecPretrainer(
    ...     spec, item_attributes=beauty.item_attribute_matrix(spec), dropout=0.5
    ... )
    >>> pretrainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    >>> ids = spec.sequence_ids("history", train["item_id"])
    >>> pretrainer.fit(pretrainer.pretraining_data(ids, batch_size=100), epochs=150)
    >>> sasrec = kr.models.SASRec(spec, dropout=0.5, loss="bce")
    >>> pretrainer.transfer_to(sasrec)  # then compile and fit sasrec as usual
    """

    def __init__(
        self,
        spec: FeatureSpec,
        item_attributes: np.ndarray | None = None,
        num_attributes: int | None = None,
        num_blocks: int = 2,
        num_heads: int = 1,
        dropout: float = 0.2,
        mask_probability: float = 0.2,
        aap_weight: float = 0.2,
        mip_weight: float = 1.0,
        map_weight: float = 1.0,
        sp_weight: float = 0.5,
        history: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("name", "s3rec_pretrainer")
        super().__init__(**kwargs)
        self.spec = spec
        self.history_feature = history_feature(spec, history)
        num_items, dim, max_length = sequence_dims(spec, self.history_feature)
        if not 0.0 < mask_probability < 1.0:
            raise ValueError(f"mask_probability must be in (0, 1), got {mask_probability}.")
        self.mask_probability = float(mask_probability)
        weights = dict(zip(OBJECTIVES, (aap_weight, mip_weight, map_weight, sp_weight)))
        for key, weight in weights.items():
            if not float(weight) >= 0.0:
                raise ValueError(f"{key}_weight must be >= 0, got {weight}.")
        self.objective_weights = {key: float(w) for key, w in weights.items()}
        self.objectives = [key for key in OBJECTIVES if self.objective_weights[key] > 0]
        if not self.objectives:
            raise ValueError("Every objective weight is 0: nothing to pre-train.")

        uses_attributes = "aap" in self.objectives or "map" in self.objectives
        attribute_values = None
        if uses_attributes:
            if item_attributes is not None:
                attribute_values = np.asarray(item_attributes, dtype="float32")
                if attribute_values.ndim != 2 or attribute_values.shape[0] != num_items:
                    raise ValueError(
                        f"item_attributes must be ({num_items}, A): one row per internal id of "
                        f"'{self.history_feature}'; got shape {attribute_values.shape}. "
                        "SequenceDataset.item_attribute_matrix(spec) makes it."
                    )
                if num_attributes is not None and int(num_attributes) != attribute_values.shape[1]:
                    raise ValueError(
                        f"num_attributes={num_attributes} but item_attributes has "
                        f"{attribute_values.shape[1]} columns."
                    )
                num_attributes = attribute_values.shape[1]
            if not num_attributes:
                raise ValueError(
                    "AAP and MAP predict item attributes: pass item_attributes= (a (V, A) "
                    "multi-hot, SequenceDataset.item_attribute_matrix(spec)), or set "
                    "aap_weight=0 and map_weight=0."
                )
        self.num_attributes = int(num_attributes) if uses_attributes else 0

        self.backbone = SASRecBackbone(
            num_items,
            dim,
            max_length,
            num_blocks=num_blocks,
            num_heads=num_heads,
            dropout=dropout,
            causal=False,
            dtype=self.dtype_policy,
            name="backbone",
        )
        if uses_attributes:
            self.attribute_embedding = keras.layers.Embedding(
                self.num_attributes,
                dim,
                embeddings_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
                dtype=self.dtype_policy,
                name="attribute_embedding",
            )
        # W of each bilinear score f(x, y) = σ((W x + b)ᵀ y), one per objective.
        self.projections = [
            keras.layers.Dense(
                dim,
                kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
                dtype=self.dtype_policy,
                name=f"{key}_projection",
            )
            for key in self.objectives
        ]
        self.objective_trackers = [
            keras.metrics.Mean(name=f"{key}_loss") for key in self.objectives
        ]
        self.build()
        if attribute_values is not None:
            self.item_attributes.assign(attribute_values)

    # ------------------------------------------------------------ properties
    @property
    def num_items(self) -> int:
        return self.backbone.num_items

    @property
    def max_length(self) -> int:
        return self.backbone.max_length

    def projection(self, objective: str) -> keras.layers.Dense:
        """The Dense layer W of an objective's bilinear score ("aap", "mip", "map", "sp")."""
        if objective not in self.objectives:
            raise ValueError(
                f"Objective {objective!r} is off or unknown; the model has {self.objectives}."
            )
        return self.projections[self.objectives.index(objective)]

    # ------------------------------------------------------------------ data
    def pretraining_data(
        self,
        ids: np.ndarray,
        batch_size: int = 100,
        seed: int | None = None,
        prefixes: bool = True,
        shuffle: bool = True,
        **kwargs: Any,
    ) -> S3RecPretrainingData:
        """`S3RecPretrainingData` for this model (its V, L and masking rate).

        Args:
            ids: (N, T) front-padded internal ids of the training sequences
                (the latest `max_length` items of each are used; T may be
                longer, e.g. the (N, L + 1) arrays next-item training uses).
            batch_size, seed, prefixes, shuffle, **kwargs: see `S3RecPretrainingData`.
        """
        return S3RecPretrainingData(
            ids,
            self.num_items,
            self.max_length,
            mask_probability=self.mask_probability,
            batch_size=batch_size,
            prefixes=prefixes,
            shuffle=shuffle,
            seed=seed,
            **kwargs,
        )

    # ------------------------------------------------------------- computing
    def build(self, input_shape=None):
        if self.built:
            return
        self.mask_vector = self.add_weight(
            name="mask_vector",
            shape=(self.backbone.embedding_dim,),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        )
        if self.num_attributes:
            self.item_attributes = self.add_weight(
                name="item_attributes",
                shape=(self.num_items, self.num_attributes),
                initializer="zeros",
                trainable=False,
            )
            # Read as a whole table (never called on ids): built here.
            self.attribute_embedding.build((None,))
        ids = ops.full((2, self.max_length), NUM_RESERVED_IDS, "int32")
        flags = ops.zeros((2, self.max_length), "bool")
        self.call(
            {
                "items": ids,
                "item_masked": flags,
                "negatives": ids,
                "segment": flags,
                "segment_negatives": ids,
            },
            training=False,
        )
        self.built = True

    def encode(self, ids, masked, valid, training=None):
        """(B, L, d) encoder outputs of `ids` with the mask vector at `masked` positions.

        `valid` marks the positions that hold a token (an item or the mask).
        """
        embedded = self.backbone.item_embedding(ids)
        vector = ops.cast(self.mask_vector, embedded.dtype)
        embedded = ops.where(ops.expand_dims(masked, -1), vector, embedded)
        return self.backbone.body(embedded, valid, training=training)

    def call(self, inputs, training=None) -> dict:
        missing = [key for key in INPUTS if key not in inputs]
        if missing:
            raise ValueError(
                f"S3RecPretrainer reads a batch of {list(INPUTS)}; {missing} are missing: "
                "make batches with `pretraining_data` (or s3rec_pretraining_batch)."
            )
        items = ops.cast(inputs["items"], "int32")
        valid = item_mask(items)
        masked = ops.logical_and(ops.cast(inputs["item_masked"], "bool"), valid)

        # One encoder pass over every sequence the objectives read, stacked on
        # the batch axis: the masked items, and for SP the masked segment, the
        # segment alone and the negative segment alone.
        ids, hidden = [items], [masked]
        if "sp" in self.objectives:
            segment = ops.logical_and(ops.cast(inputs["segment"], "bool"), valid)
            others = ops.logical_and(valid, ops.logical_not(segment))
            negative_ids = ops.where(segment, ops.cast(inputs["segment_negatives"], "int32"), items)
            ids += [items, items, negative_ids]
            hidden += [segment, others, others]
        outputs = self.encode(
            ops.concatenate(ids, axis=0),
            ops.concatenate(hidden, axis=0),
            ops.concatenate([valid] * len(ids), axis=0),
            training=training,
        )
        outputs = ops.split(ops.cast(outputs, _LOSS_DTYPE), len(ids), axis=0)
        sequence = outputs[0]
        batch_size = ops.cast(ops.shape(items)[0], _LOSS_DTYPE)

        losses = {}
        if self.num_attributes:
            targets = ops.take(self.item_attributes, items, axis=0)
            table = ops.cast(self.attribute_embedding.embeddings, _LOSS_DTYPE)
        for key in self.objectives:
            projected = ops.cast(self.projection(key)(sequence), _LOSS_DTYPE)
            if key in ("aap", "map"):
                logits = ops.einsum("bld,ad->bla", projected, table)
                cross_entropy = ops.sum(ops.softplus(logits) - targets * logits, axis=-1)
                where = ops.logical_and(valid, ops.logical_not(masked)) if key == "aap" else masked
                total = ops.sum(ops.where(where, cross_entropy, 0.0))
            elif key == "mip":
                positive = self._item_vectors(items)
                negative = self._item_vectors(ops.cast(inputs["negatives"], "int32"))
                pairwise = ops.softplus(
                    ops.sigmoid(ops.sum(projected * negative, axis=-1))
                    - ops.sigmoid(ops.sum(projected * positive, axis=-1))
                )
                total = ops.sum(ops.where(masked, pairwise, 0.0))
            else:  # sp: the outputs at the last position
                context = ops.cast(self.projection("sp")(outputs[1][:, -1, :]), _LOSS_DTYPE)
                positive, negative = outputs[2][:, -1, :], outputs[3][:, -1, :]
                pairwise = ops.softplus(
                    ops.sigmoid(ops.sum(context * negative, axis=-1))
                    - ops.sigmoid(ops.sum(context * positive, axis=-1))
                )
                total = ops.sum(ops.where(ops.any(segment, axis=1), pairwise, 0.0))
            losses[key] = total / batch_size
        return losses

    def _item_vectors(self, ids):
        return ops.cast(self.backbone.item_embedding(ids), _LOSS_DTYPE)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = ops.convert_to_tensor(0.0, _LOSS_DTYPE)
        for key in self.objectives:
            loss = loss + self.objective_weights[key] * y_pred[key]
        for extra in self.losses:
            loss = loss + ops.cast(ops.sum(extra), loss.dtype)
        return scale_loss_for_replicas(loss)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        for key, tracker in zip(self.objectives, self.objective_trackers):
            tracker.update_state(y_pred[key])
        return self.get_metrics_result()

    # ----------------------------------------------------------- fine-tuning
    def transfer_to(self, model):
        """Copies the pre-trained encoder into a `SASRec` (or a `SASRecBackbone`); returns `model`.

        The item table, positions, blocks and final normalization are copied
        exactly; the mask vector, attribute table and projections stay here.
        The target keeps its own attention direction (SASRec's is causal) and
        dropout.

        Raises:
            TypeError: `model` has no `SASRecBackbone`.
            ValueError: the sizes differ (the message lists them).
        """
        target = getattr(model, "backbone", model)
        if not isinstance(target, SASRecBackbone):
            raise TypeError(
                f"transfer_to copies into a SASRec or a SASRecBackbone, got {type(model).__name__}."
            )
        sizes = ("num_items", "embedding_dim", "max_length", "num_blocks", "num_heads")
        differ = {
            key: (getattr(self.backbone, key), getattr(target, key))
            for key in sizes
            if getattr(self.backbone, key) != getattr(target, key)
        }
        if differ:
            raise ValueError(
                "The pre-trained encoder and the target differ in (pre-trained, target) "
                f"{differ}: build the target on the same spec with the same num_blocks and "
                "num_heads."
            )
        target.set_weights(self.backbone.get_weights())
        return model

    # --------------------------------------------------------- serialization
    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "spec": self.spec.get_config(),
            "history": self.history_feature,
            "num_attributes": self.num_attributes or None,
            "num_blocks": self.backbone.num_blocks,
            "num_heads": self.backbone.num_heads,
            "dropout": self.backbone.dropout,
            "mask_probability": self.mask_probability,
            **{f"{key}_weight": weight for key, weight in self.objective_weights.items()},
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        config = dict(config)
        spec = FeatureSpec.from_config(config.pop("spec"))
        return cls(spec, **config)
