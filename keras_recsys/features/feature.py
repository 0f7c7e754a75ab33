"""Feature kinds: what a raw column is and how it becomes model input.

Every categorical id space in keras_recsys uses one convention, so models,
sequence masks and exports agree on it:

* id ``0`` is padding (only ever produced for sequence positions),
* id ``1`` is the out-of-vocabulary id (unseen or missing values),
* ids ``2 .. input_dim - 1`` are vocabulary entries (or hash buckets).
"""

from __future__ import annotations

import re
from collections.abc import Sequence as SequenceType
from typing import Any

PAD_ID = 0
OOV_ID = 1
NUM_RESERVED_IDS = 2

_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_NORMALIZATIONS = ("standard", "minmax", None)
_TRANSFORMS = ("log1p", None)
_POOLINGS = ("mean", "sum", "max")


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise ValueError(
            f"Feature name {name!r} is not usable: names must start with a "
            "letter or '_' and contain only letters, digits, '_', '.' or '-' "
            "(they become SavedModel signature input names)."
        )
    return name


class Feature:
    """Base class of all feature kinds.

    A feature has a declared part (what the user wrote) and a fitted part
    (vocabulary, statistics), both kept in `get_config` so a fitted spec
    rebuilds exactly.
    """

    kind: str = ""

    def __init__(self, name: str, column: str | None = None):
        self.name = _check_name(name)
        self.column = column or name

    @property
    def is_adapted(self) -> bool:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        config = {"name": self.name}
        if self.column != self.name:
            config["column"] = self.column
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Feature:
        config = dict(config)
        state = config.pop("fitted", None)
        feature = cls(**config)
        if state is not None:
            feature.set_fitted_state(state)
        return feature

    def set_fitted_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "fitted")
        return f"{type(self).__name__}({args})"


def _check_salt(salt, name: str) -> int | list[int] | None:
    """`hash_salt` as None, one int or a pair of ints, each in [0, 2**63)."""
    if salt is None:
        return None
    values = list(salt) if isinstance(salt, (list, tuple)) else [salt]
    if len(values) not in (1, 2) or not all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63 for v in values
    ):
        raise ValueError(
            f"Feature '{name}': hash_salt must be an int or a pair of ints in [0, 2**63), "
            f"got {salt!r}."
        )
    return values[0] if len(values) == 1 else values


class _Vocabulary:
    """Vocabulary options and fitted state shared by categorical kinds."""

    def _init_vocabulary(
        self, vocabulary, min_frequency, max_tokens, num_bins, hash_buckets=None, hash_salt=None
    ):
        if num_bins is not None and hash_buckets is not None and num_bins != hash_buckets:
            raise ValueError(
                f"Feature '{self.name}': `num_bins` is the former name of "
                "`hash_buckets`; give only `hash_buckets`."
            )
        buckets = hash_buckets if hash_buckets is not None else num_bins
        if buckets is not None:
            # A hashed feature has no vocabulary to fit: options that shape a
            # vocabulary would be silently ignored, so they are errors.
            conflicts = [
                option
                for option, given in (
                    ("vocabulary", vocabulary is not None),
                    ("min_frequency", min_frequency != 1),
                    ("max_tokens", max_tokens is not None),
                )
                if given
            ]
            if conflicts:
                raise ValueError(
                    f"Feature '{self.name}': hash_buckets replaces the vocabulary, so it "
                    f"cannot be combined with {', '.join(f'`{c}`' for c in conflicts)}. "
                    "Drop hash_buckets to fit a vocabulary, or drop "
                    f"{' and '.join(conflicts)} to hash."
                )
            if isinstance(buckets, bool) or int(buckets) < 1:
                raise ValueError(
                    f"Feature '{self.name}': hash_buckets must be >= 1, got {buckets!r}."
                )
        elif hash_salt is not None:
            raise ValueError(f"Feature '{self.name}': hash_salt needs hash_buckets.")
        if min_frequency < 1:
            raise ValueError(f"Feature '{self.name}': min_frequency must be >= 1.")
        if max_tokens is not None and int(max_tokens) < 1:
            raise ValueError(f"Feature '{self.name}': max_tokens must be >= 1.")
        self.min_frequency = int(min_frequency)
        self.max_tokens = None if max_tokens is None else int(max_tokens)
        self.num_bins = None if buckets is None else int(buckets)
        self.hash_salt = _check_salt(hash_salt, self.name)
        self.given_vocabulary = None
        if vocabulary is not None:
            self.given_vocabulary = _plain_vocabulary(vocabulary, self.name)
        self.vocabulary = self.given_vocabulary
        self.dtype: str | None = None
        if self.given_vocabulary is not None:
            self.dtype = _infer_dtype(self.given_vocabulary, self.name)

    @property
    def hash_buckets(self) -> int | None:
        """Number of hash buckets of a hashed feature (None with a vocabulary)."""
        return self.num_bins

    @property
    def is_hashed(self) -> bool:
        return self.num_bins is not None

    @property
    def is_adapted(self) -> bool:
        if self.is_hashed:
            return self.dtype is not None
        return self.vocabulary is not None and self.dtype is not None

    @property
    def input_dim(self) -> int:
        """Size of the id space, reserved ids included."""
        if self.is_hashed:
            return self.num_bins + NUM_RESERVED_IDS
        if self.vocabulary is None:
            raise RuntimeError(
                f"Feature '{self.name}' has no vocabulary yet: call `spec.adapt(data)` first."
            )
        return len(self.vocabulary) + NUM_RESERVED_IDS

    def _vocabulary_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {}
        if self.given_vocabulary is not None:
            config["vocabulary"] = self.given_vocabulary
        if self.min_frequency != 1:
            config["min_frequency"] = self.min_frequency
        if self.max_tokens is not None:
            config["max_tokens"] = self.max_tokens
        if self.num_bins is not None:
            config["hash_buckets"] = self.num_bins
        if self.hash_salt is not None:
            config["hash_salt"] = self.hash_salt
        return config

    def _vocabulary_state(self) -> dict[str, Any] | None:
        if not self.is_adapted:
            return None
        state: dict[str, Any] = {"dtype": self.dtype}
        if not self.is_hashed and self.given_vocabulary is None:
            state["vocabulary"] = self.vocabulary
        return state

    def set_fitted_state(self, state: dict[str, Any]) -> None:
        self.dtype = state["dtype"]
        if "vocabulary" in state:
            self.vocabulary = list(state["vocabulary"])


def _plain_vocabulary(vocabulary, name: str) -> list:
    """An explicit vocabulary as a list of Python str or int, without repeats.

    NumPy arrays and scalars (e.g. from `np.unique`) become plain values so
    the vocabulary serializes to JSON; a repeated value is an error, since
    one value cannot have two ids.
    """
    values = [
        str(v) if isinstance(v, str) else v.item() if hasattr(v, "item") else v for v in vocabulary
    ]
    seen: set = set()
    repeated = [v for v in values if v in seen or seen.add(v)]
    if repeated:
        raise ValueError(
            f"Feature '{name}': the vocabulary repeats {repeated[:5]}; every "
            "value must appear once."
        )
    return values


def _infer_dtype(values: SequenceType, name: str) -> str:
    kinds = {isinstance(v, str) for v in values}
    if kinds == {True}:
        return "string"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int64"
    raise ValueError(f"Feature '{name}': vocabulary must be all strings or all integers.")


class Categorical(_Vocabulary, Feature):
    """A categorical feature: one id per example, embedded as one field.

    Values are strings or integers. The vocabulary is fitted from data by
    `FeatureSpec.adapt` (most frequent first, keeping values seen at least
    `min_frequency` times, at most `max_tokens` of them), given explicitly
    with `vocabulary`, or replaced by hashing into `hash_buckets` buckets.
    Values outside the vocabulary, and missing values, map to the
    out-of-vocabulary id 1.

    Hashing is for id spaces too large to count or that keep growing (user
    ids, ad ids): nothing is fitted but the raw dtype, and a value's id is
    `2 + hash(value) % hash_buckets`, so the embedding table has
    `hash_buckets + 2` rows (id 0 padding, id 1 missing values, as for every
    id space). The hash is TensorFlow's FarmHash fingerprint
    (`tf.strings.to_hash_bucket_fast`) of the value's text, integers hashed
    through their decimal form (`tf.strings.as_string`), so an id depends
    on the value alone: it is the same in `kr.data`, in the exported
    serving graph and across processes and releases. With `hash_salt` the
    keyed SipHash (`tf.strings.to_hash_bucket_strong`, the hash Keras'
    `Hashing` layer uses with a salt) replaces it: collisions then differ
    from one salt to another.

    Args:
        name: feature name; also the input column unless `column` is given.
        embedding_dim: embedding size; defaults to the spec's
            `default_embedding_dim`.
        vocabulary: explicit vocabulary (strings or ints); skips fitting.
        min_frequency: minimum count for a value to get its own id.
        max_tokens: maximum vocabulary size (most frequent values kept).
        hash_buckets: hash values into this many buckets instead of fitting
            a vocabulary; not combinable with `vocabulary`, `min_frequency`
            or `max_tokens`.
        hash_salt: with `hash_buckets`, an int (or a pair of ints) keying
            the hash; None (default) uses the unkeyed fast hash.
        num_bins: former name of `hash_buckets`, still accepted.
        column: input column name when different from `name`.
        role: what the feature means to the model: `None` for an ordinary
            input, `"scenario"` for the domain indicator of multi-scenario
            models.

    Example:

    >>> kr.Categorical("user_id", embedding_dim=16, min_frequency=2)
    >>> kr.Categorical("ad_id", hash_buckets=10_000_000, embedding_dim=16)
    """

    kind = "categorical"

    def __init__(
        self,
        name: str,
        embedding_dim: int | None = None,
        vocabulary: SequenceType | None = None,
        min_frequency: int = 1,
        max_tokens: int | None = None,
        num_bins: int | None = None,
        column: str | None = None,
        role: str | None = None,
        hash_buckets: int | None = None,
        hash_salt: int | SequenceType[int] | None = None,
    ):
        Feature.__init__(self, name, column)
        self.embedding_dim = embedding_dim
        if role not in (None, "scenario"):
            raise ValueError(f"Feature '{name}': role must be None or 'scenario', got {role!r}.")
        self.role = role
        self._init_vocabulary(
            vocabulary, min_frequency, max_tokens, num_bins, hash_buckets, hash_salt
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if self.embedding_dim is not None:
            config["embedding_dim"] = self.embedding_dim
        if self.role is not None:
            config["role"] = self.role
        config.update(self._vocabulary_config())
        state = self._vocabulary_state()
        if state is not None:
            config["fitted"] = state
        return config


class Numeric(Feature):
    """A numeric feature: one float per example.

    Preprocessing, in order: optional `transform="log1p"` applies
    sign(x)·log(1 + |x|) so negative values stay defined; missing values
    (NaN, or inf/-inf at serving time) are replaced by the training mean of
    the transformed value (so they normalize to 0 with "standard"); then
    either normalization (`"standard"`: (x − μ)/σ,
    `"minmax"`: (x − min)/(max − min), `None`: unchanged) giving one dense
    input, or, with `buckets=N`, quantile bucketization into at most N
    buckets whose id is embedded like a categorical field.

    Args:
        name: feature name; also the input column unless `column` is given.
        normalization: "standard", "minmax" or None.
        transform: "log1p" or None.
        buckets: number of quantile buckets; None keeps the value numeric.
        embedding_dim: embedding size of the bucket id (bucketized only).
        column: input column name when different from `name`.

    Example:

    >>> kr.Numeric("price", transform="log1p", buckets=16)
    """

    kind = "numeric"

    def __init__(
        self,
        name: str,
        normalization: str | None = "standard",
        transform: str | None = None,
        buckets: int | None = None,
        embedding_dim: int | None = None,
        column: str | None = None,
    ):
        super().__init__(name, column)
        if normalization not in _NORMALIZATIONS:
            raise ValueError(
                f"Feature '{name}': normalization must be one of "
                f"{_NORMALIZATIONS}, got {normalization!r}."
            )
        if transform not in _TRANSFORMS:
            raise ValueError(
                f"Feature '{name}': transform must be one of {_TRANSFORMS}, got {transform!r}."
            )
        if buckets is not None and int(buckets) < 2:
            raise ValueError(f"Feature '{name}': buckets must be >= 2.")
        self.normalization = normalization
        self.transform = transform
        self.buckets = None if buckets is None else int(buckets)
        self.embedding_dim = embedding_dim
        self.mean: float | None = None
        self.std: float | None = None
        self.min: float | None = None
        self.max: float | None = None
        self.fill_value: float | None = None
        self.boundaries: list[float] | None = None

    @property
    def is_bucketized(self) -> bool:
        return self.buckets is not None

    @property
    def is_adapted(self) -> bool:
        return self.fill_value is not None

    @property
    def input_dim(self) -> int:
        """Size of the bucket id space (bucketized features only)."""
        if self.boundaries is None:
            raise RuntimeError(
                f"Feature '{self.name}' has no bucket boundaries yet: call "
                "`spec.adapt(data)` first."
            )
        return len(self.boundaries) + 1 + NUM_RESERVED_IDS

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["normalization"] = self.normalization
        if self.transform is not None:
            config["transform"] = self.transform
        if self.buckets is not None:
            config["buckets"] = self.buckets
        if self.embedding_dim is not None:
            config["embedding_dim"] = self.embedding_dim
        if self.is_adapted:
            config["fitted"] = {
                "mean": self.mean,
                "std": self.std,
                "min": self.min,
                "max": self.max,
                "fill_value": self.fill_value,
                "boundaries": self.boundaries,
            }
        return config

    def set_fitted_state(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


class Sequence(_Vocabulary, Feature):
    """A variable-length list of categorical values (a behaviour history).

    Input values are Python lists or arrays in a column, or strings joined by
    `separator` (empty items of a string are skipped; a missing row is an
    empty sequence; a None/NaN item inside a list is kept as the
    out-of-vocabulary id 1). The most recent `max_length` items are kept
    (the end of the list is the most recent); shorter lists are padded at the front with id
    0, so position `max_length - 1` always holds the latest item and the
    mask is `ids != 0`. With `shares_vocabulary_with="item_id"` the sequence
    uses the vocabulary (fitted on both columns together) and the embedding
    table of that categorical feature.

    Args:
        name: feature name; also the input column unless `column` is given.
        max_length: number of most recent items kept.
        embedding_dim: embedding size (ignored when sharing a table).
        shares_vocabulary_with: name of a `Categorical` feature (or of a
            `Sequence` with its own vocabulary) whose vocabulary and
            embedding table this sequence uses.
        pooling: "mean", "sum" or "max": how models that need one vector per
            feature pool the sequence (over unpadded positions).
        separator: delimiter of string-encoded sequences (also the encoding
            the serving signature takes).
        vocabulary, min_frequency, max_tokens, hash_buckets, hash_salt,
            num_bins: as in `Categorical` (not allowed together with
            `shares_vocabulary_with`); a hashed sequence hashes each item.
        column: input column name when different from `name`.

    Example:

    >>> kr.Sequence("history", shares_vocabulary_with="item_id", max_length=50)
    """

    kind = "sequence"

    def __init__(
        self,
        name: str,
        max_length: int = 50,
        embedding_dim: int | None = None,
        shares_vocabulary_with: str | None = None,
        pooling: str = "mean",
        separator: str = "|",
        vocabulary: SequenceType | None = None,
        min_frequency: int = 1,
        max_tokens: int | None = None,
        num_bins: int | None = None,
        column: str | None = None,
        hash_buckets: int | None = None,
        hash_salt: int | SequenceType[int] | None = None,
    ):
        Feature.__init__(self, name, column)
        if int(max_length) < 1:
            raise ValueError(f"Feature '{name}': max_length must be >= 1.")
        if pooling not in _POOLINGS:
            raise ValueError(
                f"Feature '{name}': pooling must be one of {_POOLINGS}, got {pooling!r}."
            )
        if not separator:
            raise ValueError(f"Feature '{name}': separator must be non-empty.")
        if shares_vocabulary_with is not None and any(
            v is not None for v in (vocabulary, num_bins, hash_buckets, hash_salt)
        ):
            raise ValueError(
                f"Feature '{name}': a sequence that shares the vocabulary of "
                f"'{shares_vocabulary_with}' cannot also set `vocabulary` or "
                "`hash_buckets` (it uses the owner's ids, hashed or not)."
            )
        self.max_length = int(max_length)
        self.embedding_dim = embedding_dim
        self.shares_vocabulary_with = shares_vocabulary_with
        self.pooling = pooling
        self.separator = separator
        self._init_vocabulary(
            vocabulary, min_frequency, max_tokens, num_bins, hash_buckets, hash_salt
        )

    @property
    def is_adapted(self) -> bool:
        # A sequence sharing a vocabulary keeps no fitted state of its own;
        # the spec checks the owner's (`FeatureSpec.vocabulary_owner`).
        if self.shares_vocabulary_with is not None:
            return True
        return super().is_adapted

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["max_length"] = self.max_length
        if self.embedding_dim is not None:
            config["embedding_dim"] = self.embedding_dim
        if self.shares_vocabulary_with is not None:
            config["shares_vocabulary_with"] = self.shares_vocabulary_with
        config["pooling"] = self.pooling
        config["separator"] = self.separator
        config.update(self._vocabulary_config())
        if self.shares_vocabulary_with is None:
            state = self._vocabulary_state()
            if state is not None:
                config["fitted"] = state
        return config


class Crossed(Feature):
    """A hashed cross of categorical features, for the wide (linear) part.

    The ids of the crossed features are joined and hashed into `num_bins`
    buckets (Cheng et al., 2016, "Wide & Deep Learning"): the wide part then
    learns one weight per co-occurring pair, which the deep part can only
    approximate.

    Args:
        name: name of the crossed feature (not an input column).
        features: names of two or more `Categorical` (or bucketized
            `Numeric`) features to cross.
        num_bins: number of hash buckets.

    Example:

    >>> kr.Crossed("user_x_item", ["user_id", "item_id"], num_bins=100_000)
    """

    kind = "crossed"

    def __init__(self, name: str, features: SequenceType[str], num_bins: int):
        super().__init__(name)
        features = list(features)
        if len(features) < 2:
            raise ValueError(
                f"Crossed feature '{name}' needs at least two features, got {features}."
            )
        if int(num_bins) < 1:
            raise ValueError(f"Crossed feature '{name}': num_bins must be >= 1.")
        self.features = features
        self.num_bins = int(num_bins)

    @property
    def is_adapted(self) -> bool:
        return True

    @property
    def input_dim(self) -> int:
        return self.num_bins + NUM_RESERVED_IDS

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(features=self.features, num_bins=self.num_bins)
        return config

    def set_fitted_state(self, state: dict[str, Any]) -> None:
        del state


class Timestamps(Feature):
    """The times of a `Sequence`'s items, aligned with them (what HSTU reads).

    Input values are integers in seconds (e.g. Unix times), one per item of
    the aligned sequence, written the same way: lists in a column or strings
    joined by the sequence's separator. A row must have as many timestamps
    as its sequence has items (after the sequence drops empty string
    items); a missing row is an empty sequence, a missing timestamp inside
    a row is an error. The timestamps of the kept (most recent
    `max_length`) items are kept and padded at the front with 0, like the
    ids. The model input is int32 (B, max_length): seconds since `origin`,
    the earliest timestamp of the adapt data, so the differences models
    read stay exact for 68 years of seconds. Timestamps need not be sorted
    and may lie after the adapt data: models read absolute gaps.

    Args:
        name: feature name; also the input column unless `column` is given.
        sequence: name of the `Sequence` feature whose items these time.
        column: input column name when different from `name`.

    Example:

    >>> kr.FeatureSpec([kr.Sequence("history"), kr.Timestamps("history_time", "history")])
    """

    kind = "timestamps"

    def __init__(self, name: str, sequence: str, column: str | None = None):
        super().__init__(name, column)
        if not isinstance(sequence, str) or not sequence:
            raise ValueError(
                f"Timestamps '{name}': `sequence` names the Sequence feature they time."
            )
        self.sequence = sequence
        self.origin: int | None = None

    @property
    def is_adapted(self) -> bool:
        return self.origin is not None

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["sequence"] = self.sequence
        if self.origin is not None:
            config["fitted"] = {"origin": self.origin}
        return config

    def set_fitted_state(self, state: dict[str, Any]) -> None:
        self.origin = int(state["origin"])


FEATURE_KINDS = {cls.kind: cls for cls in (Categorical, Numeric, Sequence, Crossed, Timestamps)}
