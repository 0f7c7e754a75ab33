"""INFNet: a task-aware information flow network over categorical, sequence and task tokens."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_recsys.layers.embedding import stack_fields
from keras_recsys.layers.infnet.block import InfNetBlock
from keras_recsys.layers.infnet.categorical_proxies import CategoricalProxies
from keras_recsys.layers.infnet.learned_tokens import LearnedTokens
from keras_recsys.layers.infnet.sequence_proxies import SequenceProxies
from keras_recsys.layers.multitask.towers import TaskTowers
from keras_recsys.layers.pooling import MaskedPooling
from keras_recsys.models.backbone import Backbone
from keras_recsys.models.base import RecModel
from keras_recsys.models.interaction.deepfm import spec_dim


@keras.saving.register_keras_serializable(package="keras_recsys")
class INFNetBackbone(Backbone):
    """INFNet's body: "hidden" = {task k: tower_k(T_k)}, T_k the task's final token.

    Tokens, all of size d: the categorical tokens C (M fields: every
    categorical or bucketized feature, every sequence feature that is not a
    behaviour sequence, pooled as the spec says, and every numeric feature
    as a field x_i · v_i, see `numeric_field_dim`); the categorical proxies
    C̃ = reshape(φ_cat(flatten(C))) (`CategoricalProxies`); the tokens S of
    the behaviour sequences, concatenated (B, Σ L_a, d) with their masks,
    and one proxy per behaviour type S̃_a = Σ_t φ_seq(s_{a,t})
    (`SequenceProxies`); one learned task token per task T and
    `num_shared_task_tokens` learned shared task tokens T̃ (`LearnedTokens`).
    `num_blocks` `InfNetBlock`s update them all; task k's tower (an MLP,
    `TaskTowers`) reads its final task token T_k, and the model's linear head
    turns the tower's output into the logit. "hidden" is the towers' output,
    (B, tower_units[-1]) per task (the (B, d) token itself when `tower_units`
    is empty). There are no "logits".

    Ablations (the paper's; each a switch):

    * `task_tokens=False`: no task and no shared task tokens; the tasks read
      a pooled representation of the final feature tokens instead,
      [flatten(C), flatten(C̃), the masked mean of every behaviour
      sequence's tokens, flatten(S̃)], one vector shared by all tasks, each
      task's tower on top (a shared-bottom readout).
    * `heterogeneous_flow=False`: no cross attention. Then no information
      reaches the task tokens (they would be constants), so the tasks read
      the pooled representation as with `task_tokens=False`, and no task
      tokens are made.
    * `homogeneous_flow=False`: no proxy gated units; the feature tokens
      keep their embeddings and the task tokens are the cross-attention
      outputs T̂. With task tokens, the categorical and sequence proxies
      and the shared task tokens would then gate nothing and reach no
      task, so they are not made.

    Turning both flows off leaves no interaction at all and is refused.

    Updates nobody reads are not computed: with task tokens, the last block
    updates only T̃ and T (`InfNetBlock(update_feature_tokens=False)`), since
    the towers read only the task tokens; with one block the feature proxies
    are therefore not made (see `updates_feature_tokens`).

    Args:
        spec, task_units, numeric_field_dim, oov_dropout: see `Backbone`
            (every token has one size d: numeric features need
            `numeric_field_dim` = d, which `INFNet` sets).
        num_blocks: number of stacked `InfNetBlock`s (2: a choice; MODELS.md
            gives no default).
        num_categorical_proxies: m, the categorical proxies (paper: 4).
        num_shared_task_tokens: N_s, the shared task tokens (paper: 2; 0 for
            none, then the task tokens are not gated).
        num_heads: heads of every cross attention.
        proxy_hidden_units: hidden widths of φ_cat and φ_seq.
        gate_hidden_units: hidden widths of every PGU's MLP.
        tower_units: widths of every task's tower.
        dropout: dropout rate of the towers.
        attention_dropout: dropout rate on the attention weights.
        activation: activation of every MLP.
        sequence_features: the sequence features that are behaviour
            sequences (one token type each, in this order); None for every
            sequence feature of the spec. Other sequence features (e.g. a
            movie's genres) enter pooled, as categorical tokens.
        task_tokens: use task tokens (see the ablations above).
        heterogeneous_flow: run the cross attentions.
        homogeneous_flow: run the proxy gated units.

    Example:

    >>> backbone = kr.models.INFNetBackbone(spec, {"like": 1, "love": 1}, numeric_field_dim=16)
    >>> backbone(batch)["hidden"]["love"].shape
    (B, 64)
    """

    def __init__(
        self,
        spec,
        task_units: dict[str, int],
        num_blocks: int = 2,
        num_categorical_proxies: int = 4,
        num_shared_task_tokens: int = 2,
        num_heads: int = 1,
        proxy_hidden_units: Sequence[int] = (64,),
        gate_hidden_units: Sequence[int] = (64,),
        tower_units: Sequence[int] = (64,),
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        activation: str = "relu",
        sequence_features: Sequence[str] | None = None,
        task_tokens: bool = True,
        heterogeneous_flow: bool = True,
        homogeneous_flow: bool = True,
        **kwargs,
    ):
        super().__init__(spec, task_units, **kwargs)
        if int(num_blocks) < 1:
            raise ValueError(f"num_blocks must be positive, got {num_blocks}.")
        if int(num_shared_task_tokens) < 0:
            raise ValueError(f"num_shared_task_tokens must be >= 0, got {num_shared_task_tokens}.")
        if not (heterogeneous_flow or homogeneous_flow):
            raise ValueError(
                "INFNet needs the heterogeneous or the homogeneous flow (or both); "
                "without either, no token ever reads another."
            )
        self.num_blocks = int(num_blocks)
        self.num_categorical_proxies = int(num_categorical_proxies)
        self.num_shared_task_tokens = int(num_shared_task_tokens)
        self.num_heads = int(num_heads)
        self.proxy_hidden_units = [int(u) for u in proxy_hidden_units]
        self.gate_hidden_units = [int(u) for u in gate_hidden_units]
        self.tower_units = [int(u) for u in tower_units]
        self.dropout = float(dropout)
        self.attention_dropout = float(attention_dropout)
        self.activation = activation
        self.task_tokens = bool(task_tokens)
        self.heterogeneous_flow = bool(heterogeneous_flow)
        self.homogeneous_flow = bool(homogeneous_flow)

        embedding = self.embedding
        all_sequences = [name for name, _, _ in embedding.sequence_fields]
        if sequence_features is None:
            self.sequence_features = all_sequences
        else:
            self.sequence_features = [str(n) for n in sequence_features]
            unknown = sorted(set(self.sequence_features) - set(all_sequences))
            if unknown:
                raise ValueError(
                    f"sequence_features names {unknown}, which are not sequence features of "
                    f"the spec; they are {all_sequences}."
                )
        if embedding.dense and not embedding.numeric_field_dim:
            raise ValueError(
                "INFNet reads numeric features as tokens: set numeric_field_dim to the "
                f"embedding size (the spec has numeric features {embedding.dense})."
            )
        self.categorical_features = [
            n for n in embedding.field_names if n not in self.sequence_features
        ]
        if not self.categorical_features:
            raise ValueError("INFNet needs at least one categorical (or numeric) token.")
        dims = embedding.field_dims()
        token_dims = {n: dims[n] for n in self.categorical_features + self.sequence_features}
        if len(set(token_dims.values())) > 1:
            raise ValueError(
                "INFNet needs every token to have the same size; got "
                f"{token_dims}. Set one embedding_dim (the spec's default_embedding_dim) "
                "for all features and numeric_field_dim to it."
            )
        self.dim = next(iter(token_dims.values()))

        policy = self.dtype_policy
        self.categorical_proxies, self.sequence_proxies = None, None
        if self.uses_feature_proxies:
            self.categorical_proxies = CategoricalProxies(
                self.num_categorical_proxies,
                self.proxy_hidden_units,
                activation,
                dtype=policy,
                name="categorical_proxies",
            )
            if self.sequence_features:
                self.sequence_proxies = SequenceProxies(
                    self.proxy_hidden_units, activation, dtype=policy, name="sequence_proxies"
                )
        self.task_token_table = None
        self.shared_task_token_table = None
        if self.uses_task_tokens:
            self.task_token_table = LearnedTokens(
                len(self.task_names), self.dim, dtype=policy, name="task_tokens"
            )
            # T̃ is read only by the task tokens' gate (homogeneous flow).
            if self.num_shared_task_tokens and self.homogeneous_flow:
                self.shared_task_token_table = LearnedTokens(
                    self.num_shared_task_tokens, self.dim, dtype=policy, name="shared_task_tokens"
                )
        self.blocks = [
            InfNetBlock(
                self.num_heads,
                self.gate_hidden_units,
                activation,
                heterogeneous_flow=self.heterogeneous_flow,
                homogeneous_flow=self.homogeneous_flow,
                attention_dropout=self.attention_dropout,
                update_feature_tokens=self.updates_feature_tokens(i),
                dtype=policy,
                name=f"block_{i}",
            )
            for i in range(self.num_blocks)
        ]
        self.pooling = MaskedPooling("mean", dtype=policy, name="sequence_pooling")
        self.towers = TaskTowers(
            self.task_names,
            self.tower_units,
            activation,
            self.dropout,
            dtype=policy,
            name="towers",
        )

    @property
    def uses_task_tokens(self) -> bool:
        """Whether the tasks read task tokens (they need the heterogeneous flow to see features)."""
        return self.task_tokens and self.heterogeneous_flow

    @property
    def uses_feature_proxies(self) -> bool:
        """Whether anything reads the proxies C̃ and S̃ (else they are not made)."""
        return any(self.updates_feature_tokens(i) for i in range(self.num_blocks))

    def updates_feature_tokens(self, block: int) -> bool:
        """Whether block `block` updates C, C̃, S and S̃, or only the task tokens.

        The pooled readout reads every feature token of the last block. Task
        tokens read C and S, and the proxies reach them only through the
        gates (C ← PGU(C, C̃)) of an earlier block: the last block's feature
        updates, and all of them without the homogeneous flow, would be
        computed and never read, so those blocks update the task tokens alone.
        """
        if not self.uses_task_tokens:
            return True
        return self.homogeneous_flow and block < self.num_blocks - 1

    def tokens(self, embedded: dict) -> dict:
        """The first block's input: every token type, proxies and task tokens included."""
        categorical = stack_fields(embedded["fields"], self.categorical_features)
        tokens = {"categorical": categorical}
        if self.categorical_proxies is not None:
            tokens["categorical_proxies"] = self.categorical_proxies(categorical)
        if self.sequence_features:
            sequences = [embedded["sequences"][n] for n in self.sequence_features]
            masks = [embedded["masks"][n] for n in self.sequence_features]
            tokens["sequence"] = ops.concatenate(sequences, axis=1)
            tokens["sequence_mask"] = ops.concatenate(masks, axis=1)
            if self.sequence_proxies is not None:
                tokens["sequence_proxies"] = self.sequence_proxies(sequences, masks)
        if self.task_token_table is not None:
            tokens["tasks"] = self.task_token_table(categorical)
        if self.shared_task_token_table is not None:
            tokens["shared_tasks"] = self.shared_task_token_table(categorical)
        return tokens

    def pooled(self, tokens: dict):
        """The readout without task tokens: [flatten(C), flatten(C̃), mean_t(S_a), flatten(S̃)]."""

        def flat(x):
            return ops.reshape(x, (-1, x.shape[1] * x.shape[2]))

        parts = [flat(tokens["categorical"]), flat(tokens["categorical_proxies"])]
        if self.sequence_features:
            start = 0
            for name in self.sequence_features:
                length = self.spec[name].max_length
                stop = start + length
                parts.append(
                    self.pooling(
                        tokens["sequence"][:, start:stop],
                        mask=tokens["sequence_mask"][:, start:stop],
                    )
                )
                start = stop
            parts.append(flat(tokens["sequence_proxies"]))
        return ops.concatenate(parts, axis=-1)

    def body(self, embedded, inputs, training=None):
        tokens = self.tokens(embedded)
        for block in self.blocks:
            tokens = block(tokens, training=training)
        if self.uses_task_tokens:
            final = {name: tokens["tasks"][:, i] for i, name in enumerate(self.task_names)}
        else:
            final = self.pooled(tokens)
        return {"hidden": self.towers(final, training=training)}

    def gradnorm_variables(self) -> list:
        """The last block's weights: the last ones every task shares."""
        return list(self.blocks[-1].trainable_variables)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_blocks=self.num_blocks,
            num_categorical_proxies=self.num_categorical_proxies,
            num_shared_task_tokens=self.num_shared_task_tokens,
            num_heads=self.num_heads,
            proxy_hidden_units=self.proxy_hidden_units,
            gate_hidden_units=self.gate_hidden_units,
            tower_units=self.tower_units,
            dropout=self.dropout,
            attention_dropout=self.attention_dropout,
            activation=self.activation,
            sequence_features=self.sequence_features,
            task_tokens=self.task_tokens,
            heterogeneous_flow=self.heterogeneous_flow,
            homogeneous_flow=self.homogeneous_flow,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recsys")
class INFNet(RecModel):
    """INFNet: task tokens that read categorical and behaviour-sequence tokens through proxies.

    Every feature becomes a token of size d: categorical tokens C (one per
    field, numeric features as fields x_i · v_i), the tokens S of each
    behaviour sequence, one learned task token per task T and shared task
    tokens T̃. Proxies summarize the many feature tokens: m categorical
    proxies C̃ = reshape(φ_cat(flatten(C))) and one proxy per behaviour
    type S̃_a = Σ_t φ_seq(s_{a,t}). A block (`InfNetBlock`) runs

    * the heterogeneous flow, cross attention between types,
      C̃ ← CA(C̃, S) + CA(C̃, T), S̃ ← CA(S̃, C) + CA(S̃, T),
      T̃ ← CA(T̃, C) + CA(T̃, S), T̂ = CA(T, C) + CA(T, S)
      (each with a residual and a LayerNorm), then
    * the homogeneous flow, proxy gated units within a type,
      C ← C ⊙ σ(MLP(flatten C̃)), S ← S ⊙ σ(MLP(flatten S̃)),
      T ← T̂ ⊙ σ(MLP(flatten T̃)) (each with a LayerNorm);

    and N blocks are stacked. Task k predicts logit_k = head_k(MLP_k(T_k));
    the loss is Σ_k λ_k · BCE_k (the tasks' weights). Only proxies and task
    tokens ask queries, so the cost grows with (proxies + task tokens) ×
    tokens, linearly in the sequence lengths. The body is `INFNetBackbone`,
    whose docstring lists the choices the paper leaves open and the
    ablation switches.

    Reference: Li et al., 2025, "INFNet: A Task-aware Information Flow
    Network for Large-Scale Recommendation Systems" (arXiv 2508.11565).

    Args:
        spec: a fitted `FeatureSpec` whose features all embed to one size d
            (numeric features are embedded as fields of size d:
            `numeric_field_dim` defaults to the spec's default embedding size).
        tasks: the tasks.
        num_blocks: number of stacked blocks.
        num_categorical_proxies: m (paper: 4).
        num_shared_task_tokens: N_s (paper: 2).
        num_heads: heads of every cross attention.
        proxy_hidden_units: hidden widths of φ_cat and φ_seq.
        gate_hidden_units: hidden widths of the gates' MLPs.
        tower_units: widths of every task's tower.
        dropout: tower dropout rate.
        attention_dropout: dropout rate on the attention weights.
        activation: activation of every MLP.
        sequence_features: which sequence features are behaviour sequences
            (None: all of them; others enter pooled, as categorical tokens).
        task_tokens, heterogeneous_flow, homogeneous_flow: the paper's
            ablations (see `INFNetBackbone`).

    Example:

    >>> spec = kr.datasets.movielens_behavior_feature_spec(max_length=20).adapt(train)
    >>> model = kr.models.INFNet(
    ...     spec, ["like", "love", "dislike"],
    ...     sequence_features=["hist_items", "hist_liked", "hist_disliked"],
    ... )
    >>> model.compile()
    >>> model.fit(train, epochs=2)
    """

    def __init__(
        self,
        spec,
        tasks,
        num_blocks: int = 2,
        num_categorical_proxies: int = 4,
        num_shared_task_tokens: int = 2,
        num_heads: int = 1,
        proxy_hidden_units: Sequence[int] = (64,),
        gate_hidden_units: Sequence[int] = (64,),
        tower_units: Sequence[int] = (64,),
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        activation: str = "relu",
        sequence_features: Sequence[str] | None = None,
        task_tokens: bool = True,
        heterogeneous_flow: bool = True,
        homogeneous_flow: bool = True,
        **kwargs,
    ):
        kwargs.setdefault("numeric_field_dim", spec_dim(spec))
        super().__init__(spec, tasks, **kwargs)
        self.backbone = INFNetBackbone(
            num_blocks=num_blocks,
            num_categorical_proxies=num_categorical_proxies,
            num_shared_task_tokens=num_shared_task_tokens,
            num_heads=num_heads,
            proxy_hidden_units=proxy_hidden_units,
            gate_hidden_units=gate_hidden_units,
            tower_units=tower_units,
            dropout=dropout,
            attention_dropout=attention_dropout,
            activation=activation,
            sequence_features=sequence_features,
            task_tokens=task_tokens,
            heterogeneous_flow=heterogeneous_flow,
            homogeneous_flow=homogeneous_flow,
            **self.backbone_arguments(),
        )
        self.build_now()
