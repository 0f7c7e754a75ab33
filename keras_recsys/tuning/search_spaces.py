"""Search spaces: which hyperparameters a `RecHyperModel` tunes, and over what.

A `SearchSpace` has two parts. `model` is a function of keras-tuner's
`HyperParameters` that declares the builder's own hyperparameters and returns
the builder's keyword arguments (`{"num_experts": 6, "expert_units": (128,),
...}`). The other fields are the knobs every model shares: the embedding
size, the learning rate, the L2 penalty and the batch size.

The ready-made spaces below (`dnn_space`, `deepfm_space`, `dcn_space`,
`mmoe_space`, `ple_space`, `shared_bottom_space`) are where a practitioner
would start on a data set the size of census (tens of thousands to millions
of rows, small vocabularies): around the sizes the papers and the recipes
use, wide enough that the best setting is rarely at an edge. Every
hyperparameter is always active (no conditional scopes), so Bayesian
optimization sees one fixed-length vector per trial.

MLP widths are tuned as a depth and a first width, each next layer half as
wide (at least 8): the funnel shape of most CTR towers, with two
hyperparameters instead of one per layer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import keras_tuner

ModelSpace = Callable[[keras_tuner.HyperParameters], dict[str, Any]]

# The knobs every ready-made space shares (documented on `SearchSpace`).
EMBEDDING_DIMS = (4, 8, 16, 32)
LEARNING_RATE = (1e-4, 1e-2)
L2 = (0.0, 1e-6, 1e-5, 1e-4)
DROPOUT = (0.0, 0.1, 0.2, 0.3)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The hyperparameters a `RecHyperModel` tunes.

    Each shared knob takes a sequence (a `hp.Choice` of those values), one
    value (a `hp.Fixed`: recorded with the trial but not searched) or None
    (not a hyperparameter: left to the spec, the optimizer or `fit`). The
    learning rate takes a pair `(low, high)`, searched on a log scale.

    Args:
        model: `hp -> {builder argument: value}`; declares the model's own
            hyperparameters (see the ready-made spaces).
        embedding_dim: the spec's `default_embedding_dim` for the trial
            (features that set their own `embedding_dim` keep it). Default
            (4, 8, 16, 32); None: the spec's own.
        learning_rate: (low, high) for a log-uniform `hp.Float`, a float, or
            None for the optimizer's default. Default (1e-4, 1e-2).
        l2: L2 penalty λ · Σ w² on every embedding table and kernel (the
            weights with two or more axes; biases and normalization scales
            are left alone). Default (0, 1e-6, 1e-5, 1e-4).
        batch_size: rows per training batch. Default None: the batch size
            of the data given to `search` (a dataset's batches, or `fit`'s
            `batch_size`).

    Example:

    >>> space = kr.tuning.mmoe_space().replace(batch_size=(512, 1024, 2048))
    >>> custom = kr.tuning.SearchSpace(
    ...     lambda hp: {"num_experts": hp.Int("num_experts", 4, 8)}, l2=None)
    """

    model: ModelSpace
    embedding_dim: Sequence[int] | int | None = EMBEDDING_DIMS
    learning_rate: tuple[float, float] | float | None = LEARNING_RATE
    l2: Sequence[float] | float | None = L2
    batch_size: Sequence[int] | int | None = None

    def replace(self, **changes) -> SearchSpace:
        """A copy with some fields changed (`dataclasses.replace`)."""
        return dataclasses.replace(self, **changes)

    def names(self) -> list[str]:
        """The hyperparameter names this space declares, in declaration order."""
        hp = keras_tuner.HyperParameters()
        self.model_arguments(hp)
        self.shared_values(hp)
        return [p.name for p in hp.space]

    def model_arguments(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        """The builder's keyword arguments for `hp` (declaring them on first use)."""
        return dict(self.model(hp))

    def shared_values(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        """{"embedding_dim", "learning_rate", "l2", "batch_size"} for `hp`; None
        where the knob is not tuned."""
        learning_rate = self.learning_rate
        if isinstance(learning_rate, (tuple, list)):
            low, high = learning_rate
            learning_rate = hp.Float("learning_rate", low, high, sampling="log")
        elif learning_rate is not None:
            learning_rate = hp.Fixed("learning_rate", float(learning_rate))
        return {
            "embedding_dim": _choice(hp, "embedding_dim", self.embedding_dim, int),
            "learning_rate": learning_rate,
            "l2": _choice(hp, "l2", self.l2, float),
            "batch_size": _choice(hp, "batch_size", self.batch_size, int),
        }


def _choice(hp, name: str, values, cast):
    if values is None:
        return None
    if isinstance(values, (list, tuple)):
        return hp.Choice(name, [cast(v) for v in values])
    return hp.Fixed(name, cast(values))


def funnel(
    hp: keras_tuner.HyperParameters,
    name: str,
    widths: Sequence[int],
    max_layers: int,
    min_layers: int = 1,
) -> tuple[int, ...]:
    """MLP widths from two hyperparameters: `<name>_layers` and `<name>_units`.

    The first layer is `<name>_units` wide, each next one half as wide (at
    least 8); with `min_layers == max_layers` the depth is fixed.

    Example:

    >>> funnel(hp, "hidden", (64, 128, 256), max_layers=3)   # e.g. (256, 128)
    """
    if min_layers == max_layers:
        layers = hp.Fixed(f"{name}_layers", int(max_layers))
    else:
        layers = hp.Int(f"{name}_layers", int(min_layers), int(max_layers))
    width = hp.Choice(f"{name}_units", [int(w) for w in widths])
    return tuple(max(width // 2**i, 8) for i in range(layers))


def dropout(hp: keras_tuner.HyperParameters, values: Sequence[float] = DROPOUT) -> float:
    """The `dropout` hyperparameter, a choice among `values` (default 0 to 0.3)."""
    return hp.Choice("dropout", [float(v) for v in values])


def _dnn(hp) -> dict[str, Any]:
    return {
        "hidden_units": funnel(hp, "hidden", (64, 128, 256, 512), max_layers=3),
        "dropout": dropout(hp),
    }


def dnn_space() -> SearchSpace:
    """`DNN`: an MLP of 1-3 layers whose first is 64-512 wide (halving), dropout 0-0.3.

    Hyperparameters: hidden_layers, hidden_units, dropout, and the shared
    embedding_dim, learning_rate, l2.
    """
    return SearchSpace(_dnn)


def deepfm_space() -> SearchSpace:
    """`DeepFM`: the FM term is fixed; its deep part is searched as `dnn_space`'s MLP.

    Hyperparameters: hidden_layers, hidden_units, dropout, and the shared
    embedding_dim (the FM's factor size), learning_rate, l2.
    """
    return SearchSpace(_dnn)


def _dcn(hp) -> dict[str, Any]:
    projection = hp.Choice("projection_dim", [0, 16, 32, 64])
    return {
        "version": "v2",
        "num_cross_layers": hp.Int("num_cross_layers", 1, 4),
        # 0 stands for full rank (None), which a hp.Choice cannot hold.
        "projection_dim": projection or None,
        "structure": hp.Choice("structure", ["stacked", "parallel"]),
        "hidden_units": funnel(hp, "hidden", (64, 128, 256, 512), max_layers=3),
        "dropout": dropout(hp),
    }


def dcn_space() -> SearchSpace:
    """`DCN` (v2): 1-4 cross layers, full rank or low rank 16/32/64, stacked or
    parallel, an MLP of 1-3 layers from 64-512 wide, dropout 0-0.3.

    Hyperparameters: num_cross_layers, projection_dim (0: full rank),
    structure, hidden_layers, hidden_units, dropout, and the shared
    embedding_dim, learning_rate, l2.
    """
    return SearchSpace(_dcn)


def _mmoe(hp) -> dict[str, Any]:
    return {
        "num_experts": hp.Int("num_experts", 2, 16, step=2),
        "expert_units": funnel(hp, "expert", (32, 64, 128, 256), max_layers=2),
        "tower_units": (hp.Choice("tower_units", [16, 32, 64]),),
        "dropout": dropout(hp),
    }


def mmoe_space() -> SearchSpace:
    """`MMoE`: 2-16 experts (even), experts of 1-2 layers from 32-256 wide, one
    tower layer of 16/32/64, dropout 0-0.3.

    The paper's census setting (8 experts) and the recipe's (8 experts of
    64, towers 32) lie inside. Hyperparameters: num_experts, expert_layers,
    expert_units, tower_units, dropout, and the shared embedding_dim,
    learning_rate, l2.
    """
    return SearchSpace(_mmoe)


def _ple(hp) -> dict[str, Any]:
    return {
        "num_levels": hp.Int("num_levels", 1, 3),
        "num_task_experts": hp.Int("num_task_experts", 1, 4),
        "num_shared_experts": hp.Int("num_shared_experts", 1, 4),
        "expert_units": funnel(hp, "expert", (32, 64, 128, 256), max_layers=2),
        "tower_units": (hp.Choice("tower_units", [16, 32, 64]),),
        "dropout": dropout(hp),
    }


def ple_space() -> SearchSpace:
    """`PLE`: 1-3 levels (1 is CGC), 1-4 task experts per task and 1-4 shared
    experts per level, experts of 1-2 layers from 32-256 wide, one tower layer
    of 16/32/64, dropout 0-0.3.

    Hyperparameters: num_levels, num_task_experts, num_shared_experts,
    expert_layers, expert_units, tower_units, dropout, and the shared
    embedding_dim, learning_rate, l2.
    """
    return SearchSpace(_ple)


def _shared_bottom(hp) -> dict[str, Any]:
    return {
        "bottom_units": funnel(hp, "bottom", (64, 128, 256, 512), max_layers=3),
        "tower_units": (hp.Choice("tower_units", [16, 32, 64]),),
        "dropout": dropout(hp),
    }


def shared_bottom_space() -> SearchSpace:
    """`SharedBottom`: a bottom MLP of 1-3 layers from 64-512 wide, one tower
    layer of 16/32/64, dropout 0-0.3.

    Hyperparameters: bottom_layers, bottom_units, tower_units, dropout, and
    the shared embedding_dim, learning_rate, l2.
    """
    return SearchSpace(_shared_bottom)


def default_search_space(builder) -> SearchSpace:
    """The ready-made space of a builder class (DNN, DeepFM, DCN, MMoE, PLE, SharedBottom).

    Matched on the class itself, not its parents: a subclass (e.g. `CGC`,
    a `PLE` with one level) may not take all of its parent's arguments.
    """
    from keras_recsys import models

    spaces = {
        models.DNN: dnn_space,
        models.DeepFM: deepfm_space,
        models.DCN: dcn_space,
        models.MMoE: mmoe_space,
        models.PLE: ple_space,
        models.SharedBottom: shared_bottom_space,
    }
    if builder not in spaces:
        known = ", ".join(b.__name__ for b in spaces)
        name = getattr(builder, "__name__", repr(builder))
        raise ValueError(
            f"There is no ready-made search space for {name} (there are for {known}); "
            "pass search_space=kr.tuning.SearchSpace(lambda hp: {...builder arguments...})."
        )
    return spaces[builder]()
