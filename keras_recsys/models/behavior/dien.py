"""DIEN: interests extracted by a GRU, evolved towards the target by an AUGRU."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
from keras import ops

from keras_recsys.features.feature import NUM_RESERVED_IDS
from keras_recsys.layers.behavior.augru import AUGRU
from keras_recsys.layers.behavior.auxiliary_loss import next_behavior_loss
from keras_recsys.layers.behavior.target_attention import TargetAttention
from keras_recsys.models.base import RecModel
from keras_recsys.models.behavior.base import BehaviorBackbone

ATTENTIONS = ("bilinear", "mlp")


@keras.saving.register_keras_serializable(package="keras_recsys")
class DIENBackbone(BehaviorBackbone):
    """DIEN's body: per behaviour sequence, h = GRU(e), a = softmax_t(score(h_t, q)),
    v = AUGRU(h, a)_T in place of the sequence's pooled field.

    In training each sequence also adds α · L_aux (`next_behavior_loss`,
    with one negative item per step drawn uniformly from the table's
    vocabulary) to the model's losses through `add_loss`.

    Args:
        spec, task_units, numeric_field_dim, oov_dropout: see `Backbone`.
        behaviors, hidden_units, dropout, activation, normalization: see
            `BehaviorBackbone`.
        attention: "bilinear" (the paper's h_tᵀ W q) or "mlp" (DIN's
            activation unit on [h_t, q, h_t − q, h_t ⊙ q]); softmax over the
            real steps either way.
        attention_units, attention_activation: the activation unit's hidden
            layers (attention "mlp").
        auxiliary_loss_weight: α; 0 turns the auxiliary loss off.
        seed: seed of the negative sampling.
    """

    model_name = "DIEN"

    def __init__(
        self,
        spec,
        task_units: dict[str, int],
        behaviors: Mapping[str, str] | None = None,
        attention: str = "bilinear",
        attention_units: Sequence[int] = (36,),
        attention_activation: str = "prelu",
        auxiliary_loss_weight: float = 1.0,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(spec, task_units, behaviors=behaviors, **kwargs)
        if attention not in ATTENTIONS:
            raise ValueError(f"DIEN: attention must be one of {ATTENTIONS}, got {attention!r}.")
        self.attention = attention
        self.attention_units = [int(u) for u in attention_units]
        self.attention_activation = attention_activation
        self.auxiliary_loss_weight = float(auxiliary_loss_weight)
        self.seed = seed
        dims = self.embedding.field_dims()
        self.sequence_tables = {name: table for name, table, _ in self.embedding.sequence_fields}
        # The GRU's states are compared with item embeddings by inner
        # products (the auxiliary loss), so they have the embedding's size.
        self.extractors, self.attentions, self.evolvers = {}, {}, {}
        for sequence in self.behaviors:
            self.extractors[sequence] = keras.layers.GRU(
                dims[sequence],
                return_sequences=True,
                dtype=self.dtype_policy,
                name=f"extractor_{sequence}",
            )
            self.attentions[sequence] = TargetAttention(
                self.attention_units,
                attention_activation,
                score=attention,
                normalization="softmax",
                dtype=self.dtype_policy,
                name=f"attention_{sequence}",
            )
            self.evolvers[sequence] = AUGRU(
                dims[sequence], dtype=self.dtype_policy, name=f"evolver_{sequence}"
            )
        self.seed_generator = keras.random.SeedGenerator(seed, name="negative_sampling_seed")

    def interests(self, embedded, inputs, training=None):
        interests = {}
        for sequence, target in self.behaviors.items():
            behaviors = embedded["sequences"][sequence]
            mask = embedded["masks"][sequence]
            states = self.extractors[sequence](behaviors, mask=mask, training=training)
            _, scores = self.attentions[sequence](
                states,
                embedded["fields"][target],
                mask=mask,
                training=training,
                return_weights=True,
            )
            interests[sequence] = self.evolvers[sequence](
                states, scores, mask=mask, training=training
            )
            if training and self.auxiliary_loss_weight:
                loss = self._auxiliary_loss(sequence, states, behaviors, inputs[sequence], mask)
                self.add_loss(self.auxiliary_loss_weight * loss)
        return interests

    def sample_negatives(self, sequence: str, ids):
        """One item per step, uniform over the table's real ids, never the step's own item.

        The paper samples "from the item set except the clicked item"; a draw
        equal to the step's id moves to the next id (cyclically), so every
        other id has probability 1/(V − 2) or 2/(V − 2).
        """
        size = self.embedding.tables_config[self.sequence_tables[sequence]][0]
        count = max(size - NUM_RESERVED_IDS, 1)
        ids = ops.cast(ids, "int32")
        draws = keras.random.randint(
            ops.shape(ids), NUM_RESERVED_IDS, size, dtype="int32", seed=self.seed_generator
        )
        shifted = (draws - NUM_RESERVED_IDS + 1) % count + NUM_RESERVED_IDS
        return ops.where(ops.equal(draws, ids), shifted, draws)

    def _auxiliary_loss(self, sequence, states, behaviors, ids, mask):
        negatives = self.embedding.lookup(
            self.sequence_tables[sequence], self.sample_negatives(sequence, ids)
        )
        return next_behavior_loss(states, behaviors, negatives, mask)

    def auxiliary_loss(self, inputs: dict) -> dict:
        """{sequence: L_aux} on preprocessed `inputs`, in inference mode, fresh negatives.

        The unweighted loss each sequence adds in training (for monitoring:
        it should decrease as the model trains).
        """
        embedded = self.embedding(inputs, training=False)
        losses = {}
        for sequence in self.behaviors:
            behaviors = embedded["sequences"][sequence]
            mask = embedded["masks"][sequence]
            states = self.extractors[sequence](behaviors, mask=mask, training=False)
            losses[sequence] = self._auxiliary_loss(
                sequence, states, behaviors, inputs[sequence], mask
            )
        return losses

    def get_config(self):
        config = super().get_config()
        config.update(
            attention=self.attention,
            attention_units=self.attention_units,
            attention_activation=self.attention_activation,
            auxiliary_loss_weight=self.auxiliary_loss_weight,
            seed=self.seed,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class DIEN(RecModel):
    """DIEN: logit = head(MLP([e_1, …, h'_T, …])), h' = AUGRU(GRU(e), a(·, e_target)).

    Deep Interest Evolution Network. For each behaviour sequence (oldest
    first, padded at the front) and its target feature q:

    1. interest extractor: h_t = GRU(e_t, h_{t−1}), trained also by the
       auxiliary loss L_aux = mean over consecutive real steps of
       −log σ(⟨h_t, e_{t+1}⟩) − log(1 − σ(⟨h_t, ê_{t+1}⟩)), ê a sampled
       item the user did not take; the GRU's width is the
       embedding size d, as the inner products need;
    2. attention: a_t = exp(h_tᵀ W q) / Σ_j exp(h_jᵀ W q) over the real steps
       (the paper's bilinear score; `attention="mlp"` scores with DIN's activation unit
       instead, still normalized by the softmax);
    3. interest evolving: h'_t = AUGRU(h_t, h'_{t−1}, a_t), whose update
       gate is u'_t = a_t · u_t; the last state h'_T takes
       the place of the sequence's pooled vector.

    h'_T and the other fields (user profile, target, context; sequences not
    in `behaviors` keep the spec's pooling) go into one MLP (200-80 in the
    paper), one linear head per task. The training loss is
    L = L_target + α · L_aux: the backbone adds α · L_aux with `add_loss`
    in training only, so `fit` trains it and `evaluate` and serving never
    compute it. The GRU is Keras' (reset gate applied after the recurrent
    product, as in the paper's GRU, plus a recurrent bias). The MLP's
    activation is a Keras activation name (default ReLU; the paper uses
    PReLU or Dice). The body is `DIENBackbone`.

    Reference: Zhou et al., 2019, "Deep Interest Evolution Network for
    Click-Through Rate Prediction" (AAAI).

    Args:
        spec: a fitted `FeatureSpec` with at least one behaviour `Sequence`.
        tasks: the tasks.
        behaviors: {behaviour sequence: target feature it is compared with};
            None pairs every sequence with the feature whose vocabulary it
            shares. Each pair adds a GRU, an attention and an AUGRU.
        attention: "bilinear" (the paper) or "mlp" (DIN's activation unit).
        attention_units, attention_activation: the activation unit (with
            `attention="mlp"`).
        auxiliary_loss_weight: α (1 in the paper's code); 0 turns it off.
        seed: seed of the negative sampling.
        hidden_units: widths of the MLP.
        dropout: dropout rate of the MLP.
        activation: MLP activation.
        normalization: None, "batch" or "layer" in the MLP.

    Example:

    >>> spec = kr.datasets.movielens_behavior_feature_spec(max_length=20).adapt(train)
    >>> model = kr.models.DIEN(spec, ["like"], behaviors={"hist_items": "item_id"})
    >>> model.compile(optimizer="adam")
    >>> model.fit(train, epochs=2)  # loss = like's BCE + the auxiliary loss
    """

    def __init__(
        self,
        spec,
        tasks,
        behaviors: Mapping[str, str] | None = None,
        attention: str = "bilinear",
        attention_units: Sequence[int] = (36,),
        attention_activation: str = "prelu",
        auxiliary_loss_weight: float = 1.0,
        seed: int | None = None,
        hidden_units: Sequence[int] = (200, 80),
        dropout: float = 0.0,
        activation: str = "relu",
        normalization: str | None = None,
        **kwargs,
    ):
        super().__init__(spec, tasks, **kwargs)
        self.backbone = DIENBackbone(
            behaviors=behaviors,
            attention=attention,
            attention_units=attention_units,
            attention_activation=attention_activation,
            auxiliary_loss_weight=auxiliary_loss_weight,
            seed=seed,
            hidden_units=hidden_units,
            dropout=dropout,
            activation=activation,
            normalization=normalization,
            **self.backbone_arguments(),
        )
        self.build_now()

    def auxiliary_loss(self, inputs: dict) -> dict:
        """{sequence: unweighted L_aux} on preprocessed inputs (see `DIENBackbone.auxiliary_loss`)."""
        return self.backbone.auxiliary_loss(inputs)
