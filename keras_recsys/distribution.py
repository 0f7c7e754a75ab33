"""Layouts that shard embedding tables by rows for `keras.distribution` (JAX).

Data parallelism needs nothing from this module: every model trains under
`keras.distribution.set_distribution(keras.distribution.DataParallel())`
as it is. When embedding tables no longer fit one device, build the model
under a `keras.distribution.ModelParallel` whose layout map comes from
`embedding_layout_map` (or use `model_parallel`, which also builds the
mesh): the map is computed from the feature spec or from a built model,
never written by hand.

**Layout rules.** One rule per kind of table, each a regular expression on
the variable path that matches the table wherever the model nests it
(`LayoutMap` looks paths up with `re.fullmatch`):

* `table_<t>/embeddings`, shape (rows, d) -> `(model, None)`: the
  per-feature tables of `FeatureEmbedding` (shared tables appear once, under
  their owner's name) and of the scenario indicator towers;
* `w_<feature>/embeddings`, shape (rows, units) -> `(model, None)`: the
  first-order (wide) weights of `LinearTerms` (DeepFM, Wide & Deep, ...);
* `item_embedding/embeddings`, shape (items, d) -> `(model, None)`: the item
  table of the sequential models, which their next-item head also reads as
  its output projection;
* `item_probability`, shape (items,) -> `(model,)`: the next-item head's
  sampling probabilities, gathered per id like a table row;
* with `FeatureSpec(fuse_tables=True)`, `fused_tables_<width>/embeddings`
  and `w_fused/embeddings` -> `(model, None)`: the tables of one width (the
  single-id first-order weights) stored as one `FusedEmbedding` array, whose
  rows are sharded like any table's.

From a built model the rules cover every `keras.layers.Embedding` (position
tables included) and the next-item head's `item_probability`, read from the
model's own variable paths (`FusedEmbedding` arrays included); every
other variable (dense kernels, attention, the retrieval head's
`sampling_probability` and `candidate_catalog`, which are d times smaller
than the item table) is replicated.

**Why rows.** A lookup touches B rows of a (V, d) table: with rows split
over the model axis, each device holds V / n rows, and XLA turns the gather
into a local gather plus one collective of the (B, d) result, so memory per
device falls n-fold while traffic grows with the batch, not with V. The
gradient of a gather lands on the same rows, so the update stays local.
Optimizer state (Adam's moments) is created with the layout of its variable
(`Optimizer.add_variable_from_reference` copies `_layout`), so it is sharded
the same way with no rule of its own.

**Rows that do not divide.** JAX refuses to place an array whose sharded
dimension is not a multiple of the number of shards (`IndivisibleError` in
`jax.device_put`), and padding the tables would change what `export`
serves. A table whose rows do not divide is therefore an error naming the
table and the sizes (`uneven="raise"`, the default), or is left replicated
(`uneven="replicate"`; small tables such as census' cost little). A large
table is made to divide by its size: rows are the vocabulary plus two
reserved ids, so cap the vocabulary with `max_tokens` (or, hashed, choose
`num_bins`) such that `max_tokens + 2` is a multiple of the model axis.

Example:

>>> import keras
>>> import keras_recsys as kr
>>> devices = keras.distribution.list_devices()       # say 8
>>> mesh = keras.distribution.DeviceMesh((4, 2), ["data", "model"], devices)
>>> layout_map = kr.distribution.embedding_layout_map(spec, mesh)
>>> keras.distribution.set_distribution(
...     keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="data"))
>>> model = kr.models.DCN(spec, ["income"])   # tables created sharded by rows
>>> model.compile(optimizer="adam")
>>> model.fit(dataset)
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import keras

from keras_recsys.features.spec import FeatureSpec
from keras_recsys.heads.next_item import NextItemHead
from keras_recsys.layers.fused_embedding import FusedEmbedding

_ID_KINDS = ("categorical", "sequence", "crossed")


def _rule(suffix: str) -> str:
    """A `LayoutMap` key that full-matches `suffix` at any nesting depth."""
    return "(?:.*/)?" + re.escape(suffix)


def _spec_tables(spec: FeatureSpec) -> list[tuple[str, int, int]]:
    """[(path suffix, rows, rank)] of the tables the library's models build from `spec`."""
    spec.check_adapted()
    tables, front_end, first_order = [], {}, {}
    for feature in spec.features:
        bucketized = feature.kind == "numeric" and feature.is_bucketized
        if feature.kind not in _ID_KINDS and not bucketized:
            continue
        rows = spec.input_dim(feature.name)
        if feature.kind != "crossed":
            # FeatureEmbedding skips crossed features; they only feed LinearTerms.
            owner = spec.vocabulary_owner(feature.name).name
            front_end[owner] = (rows, spec.embedding_dim(owner))
        if feature.kind == "sequence":
            tables.append((f"w_{feature.name}/embeddings", rows, 2))
            tables.append(("item_embedding/embeddings", rows, 2))
            tables.append(("item_probability", rows, 1))
        else:
            first_order[feature.name] = rows
    # With `fuse_tables`, tables of a width shared by two or more become one
    # `fused_tables_<width>` array, and a LinearTerm's single-id weights one
    # `w_fused` array (see `FusedEmbedding`): rows add up, sharded the same way.
    widths: dict[int, list[int]] = {}
    for rows, width in front_end.values():
        widths.setdefault(width, []).append(rows)
    for owner, (rows, width) in front_end.items():
        if not (spec.fuse_tables and len(widths[width]) > 1):
            tables.append((f"table_{owner}/embeddings", rows, 2))
    if spec.fuse_tables:
        for width, rows in widths.items():
            if len(rows) > 1:
                tables.append((f"fused_tables_{width}/embeddings", sum(rows), 2))
    if spec.fuse_tables and len(first_order) > 1:
        tables.append(("w_fused/embeddings", sum(first_order.values()), 2))
    else:
        tables += [(f"w_{name}/embeddings", rows, 2) for name, rows in first_order.items()]
    return tables


def _model_tables(model: keras.layers.Layer) -> list[tuple[str, int, int]]:
    """[(path suffix, rows, rank)] of the tables `model` holds, from its variable paths."""
    if not model.built:
        raise ValueError(f"embedding_layout_map needs a built model; '{model.name}' is not built.")
    tables = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, (keras.layers.Embedding, FusedEmbedding)):
            variable = layer.embeddings
        elif isinstance(layer, NextItemHead):
            variable = layer.item_probability
        else:
            continue
        # The layer and variable names: the model's own name (which Keras
        # uniquifies, "dcn_1") is left out, so the map also fits the same
        # model built again under the distribution.
        parts = variable.path.split("/")
        suffix = "/".join(parts[-2:]) if len(variable.shape) == 2 else parts[-1]
        tables.append((suffix, int(variable.shape[0]), len(variable.shape)))
    return tables


def embedding_layout_map(
    spec_or_model: FeatureSpec | keras.layers.Layer,
    device_mesh: keras.distribution.DeviceMesh,
    model_axis: str = "model",
    uneven: str = "raise",
) -> keras.distribution.LayoutMap:
    """A `LayoutMap` that shards every embedding table of a model by rows.

    Pass it to `keras.distribution.ModelParallel` and build the model under
    that distribution: variables take their layout when they are created.
    Tables are split by rows over `model_axis` and replicated over the other
    mesh axes; every variable without a rule (dense layers, attention,
    ...) is replicated. The module docstring lists the rules.

    Args:
        spec_or_model: a fitted `FeatureSpec` (rules for the tables the
            library's models build from it: nothing is built, so use this
            for tables too big for one device) or a built model (rules for
            exactly its `Embedding` layers and next-item head, read from its
            variable paths).
        device_mesh: the `keras.distribution.DeviceMesh`; it must have an
            axis named `model_axis`.
        model_axis: the mesh axis the rows are split over.
        uneven: what to do with a table whose number of rows is not a
            multiple of the model axis size, which JAX cannot place:
            `"raise"` (a `ValueError` naming every such table and its size)
            or `"replicate"` (leave those tables whole on every device).

    Returns:
        A `keras.distribution.LayoutMap` on `device_mesh`.

    Example:

    >>> mesh = keras.distribution.DeviceMesh(
    ...     (2, 2), ["data", "model"], keras.distribution.list_devices())
    >>> layout_map = kr.distribution.embedding_layout_map(spec, mesh)
    >>> layout_map["dcn/backbone/embedding/table_user_id/embeddings"].axes
    ('model', None)
    """
    if uneven not in ("raise", "replicate"):
        raise ValueError(f"uneven must be 'raise' or 'replicate', got {uneven!r}.")
    if model_axis not in device_mesh.axis_names:
        raise ValueError(
            f"The device mesh has axes {list(device_mesh.axis_names)}, not the model "
            f"axis '{model_axis}'; pass model_axis= one of them."
        )
    shards = int(device_mesh.shape[list(device_mesh.axis_names).index(model_axis)])
    if isinstance(spec_or_model, FeatureSpec):
        tables = _spec_tables(spec_or_model)
    elif isinstance(spec_or_model, keras.layers.Layer):
        tables = _model_tables(spec_or_model)
    else:
        raise TypeError(
            "embedding_layout_map takes a FeatureSpec or a built model, got "
            f"{type(spec_or_model).__name__}."
        )
    rows_of: dict[str, set[int]] = {}
    rank_of: dict[str, int] = {}
    for suffix, rows, rank in tables:
        rows_of.setdefault(suffix, set()).add(rows)
        rank_of[suffix] = rank
    indivisible = {
        suffix: sorted(rows) for suffix, rows in rows_of.items() if any(r % shards for r in rows)
    }
    if indivisible and uneven == "raise":
        listed = ", ".join(
            f"{suffix} ({' / '.join(map(str, r))} rows)" for suffix, r in indivisible.items()
        )
        raise ValueError(
            f"These embedding tables cannot be split by rows over the {shards} devices of "
            f"mesh axis '{model_axis}', because JAX only places arrays whose sharded "
            f"dimension is a multiple of the number of shards: {listed}. Pass "
            "uneven='replicate' to keep them whole on every device, use a model axis "
            "size that divides them, or size the vocabulary (max_tokens, or num_bins "
            "when hashed) so that it plus the 2 reserved ids does."
        )
    layout_map = keras.distribution.LayoutMap(device_mesh)
    for suffix, rank in rank_of.items():
        if suffix in indivisible:
            continue
        layout_map[_rule(suffix)] = (model_axis,) + (None,) * (rank - 1)
    return layout_map


def model_parallel(
    spec_or_model: FeatureSpec | keras.layers.Layer,
    model_axis_size: int,
    devices: Sequence[str] | None = None,
    uneven: str = "raise",
    auto_shard_dataset: bool = True,
) -> keras.distribution.ModelParallel:
    """`ModelParallel` over a ("data", "model") mesh with the tables sharded by rows.

    The devices form a mesh of `len(devices) // model_axis_size` data-parallel
    replicas of `model_axis_size` devices each; the batch is split over
    "data", every embedding table by rows over "model"
    (`embedding_layout_map`). Set it before building the model.

    Args:
        spec_or_model: as in `embedding_layout_map`.
        model_axis_size: devices each table is split over; must divide the
            number of devices.
        devices: device names (`keras.distribution.list_devices()` format);
            all devices by default.
        uneven: as in `embedding_layout_map`.
        auto_shard_dataset: as in `ModelParallel`; set False in multi-process
            training when each process already feeds its own part of the data.

    Returns:
        A `keras.distribution.ModelParallel` for `keras.distribution.set_distribution`.

    Example:

    >>> keras.distribution.set_distribution(
    ...     kr.distribution.model_parallel(spec, model_axis_size=2))
    >>> model = kr.models.SASRec(spec, loss="bce")  # item table split in halves
    """
    devices = list(devices) if devices is not None else keras.distribution.list_devices()
    if model_axis_size < 1 or len(devices) % model_axis_size:
        raise ValueError(
            f"model_axis_size={model_axis_size} does not divide the {len(devices)} devices."
        )
    mesh = keras.distribution.DeviceMesh(
        (len(devices) // model_axis_size, model_axis_size), ["data", "model"], devices
    )
    return keras.distribution.ModelParallel(
        layout_map=embedding_layout_map(spec_or_model, mesh, "model", uneven),
        batch_dim_name="data",
        auto_shard_dataset=auto_shard_dataset,
    )
