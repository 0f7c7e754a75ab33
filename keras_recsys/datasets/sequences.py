"""Interaction sequences for next-item and retrieval models.

An interaction log (one row per event) becomes one row per user holding the
user's items in time order (`sequences_from_log`); `k_core` filters the log
the way sequential-recommendation papers do; `leave_one_out` (the S3-Rec
protocol) and `time_split` (a global cut in time) make train/valid/test.
`amazon_beauty` and `s3rec_sequences` read the S3-Rec preprocessed Amazon
files. Pure pandas/numpy: nothing here imports TensorFlow or Keras.

The S3-Rec files (Zhou et al., CIKM 2020, derived from the Amazon review data
of McAuley et al.) are released for research use with no license that allows
redistribution, so keras_recsys never bundles them: point `path` (or
$KERAS_RECSYS_AMAZON_S3REC) at a local copy.
"""

from __future__ import annotations

import bisect
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # for type hints only: this module imports no Keras or TensorFlow
    from keras_recsys.features.spec import FeatureSpec

S3REC_ENV = "KERAS_RECSYS_AMAZON_S3REC"
S3REC_RELATIVE_DIR = os.path.join("..", "shared", "data", "amazon_s3rec")
S3REC_ABSOLUTE_DIR = "/work/shared/data/amazon_s3rec"
S3REC_ABOUT = (
    "It is the Amazon review sequences as preprocessed for S3-Rec (Zhou et al., CIKM 2020; "
    "one line a user: `user_id item_id item_id ...`, items in time order). Its terms allow "
    "research use but not redistribution, so keras_recsys never bundles it: pass `path` or "
    f"set ${S3REC_ENV} to the file or to the directory holding it."
)
# Names of the history / target columns of the valid and test frames.
HISTORY = "history"
TARGET = "target"


def _require_columns(frame: pd.DataFrame, names: Sequence[str]) -> None:
    for name in names:
        if name not in frame.columns:
            raise KeyError(
                f"column {name!r} is not in the frame; available columns: {list(frame.columns)}"
            )


def _require_no_missing(frame: pd.DataFrame, names: Sequence[str]) -> None:
    # A missing id or time cannot be placed in a sequence; dropping it silently
    # would hide an upstream join or parsing bug.
    for name in names:
        missing = int(frame[name].isna().sum())
        if missing:
            raise ValueError(
                f"column {name!r} has {missing} missing value(s); drop or fill them first."
            )


def _column_values(series: pd.Series) -> np.ndarray:
    """The values as an array whose `tolist()` gives plain Python scalars.

    Numeric arrays convert to Python ints/floats; datetimes go through an object
    array so that they stay `pd.Timestamp` (`tolist()` on datetime64[ns] gives
    integers of nanoseconds).
    """
    if pd.api.types.is_numeric_dtype(series.dtype) and not isinstance(
        series.dtype, pd.api.extensions.ExtensionDtype
    ):
        return series.to_numpy()
    return series.to_numpy(dtype=object)


def sequences_from_log(
    log: pd.DataFrame,
    user: str = "user_id",
    item: str = "item_id",
    timestamp: str | None = "timestamp",
    columns: Sequence[str] = (),
) -> pd.DataFrame:
    """One row per user with the user's items (and aligned columns) in time order.

    Rows are ordered by a stable sort on (user, timestamp): events of a user
    with the same timestamp keep their order in the log, so a shuffled log
    gives the same sequences as a sorted one unless it reorders such ties.
    Exact duplicates (same user, item and timestamp) are dropped, keeping the
    first; other columns of a dropped row are ignored. Without a timestamp the
    log's row order is the time order and repeated items are kept (a repeat
    cannot be told apart from a duplicate, and repeat consumption is real).

    Args:
        log: one row per interaction.
        user: the user id column.
        item: the item id column.
        timestamp: the time column, or None to use the log's row order.
        columns: more per-event columns to carry as aligned lists (e.g. "rating").

    Returns:
        A frame sorted by user with columns `user` (the id), `item` (list),
        `timestamp` (list, when given) and each of `columns` (list), all lists
        of one row the same length. `.attrs["report"]` holds the counts
        {"rows": input rows, "duplicates_dropped", "interactions": rows kept,
        "users", "items"}.

    Raises:
        KeyError: a column is not in the log (the message lists those that are).
        ValueError: user, item or timestamp values are missing.

    Example:

    >>> log = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [10, 20, 30],
    ...                     "timestamp": [5, 3, 1]})
    >>> sequences_from_log(log)["item_id"].tolist()
    [[20, 10], [30]]
    """
    keys = [user, item] + ([timestamp] if timestamp is not None else [])
    extra = list(dict.fromkeys(columns))
    clash = [c for c in extra if c in keys]
    if clash:
        raise ValueError(f"columns {clash} are already the user/item/timestamp columns.")
    _require_columns(log, keys + extra)
    _require_no_missing(log, keys)

    rows = len(log)
    if timestamp is not None:
        kept = log.loc[~log.duplicated(subset=keys, keep="first"), keys + extra]
    else:
        kept = log[keys + extra]
    out_columns = keys + extra
    report = {
        "rows": rows,
        "duplicates_dropped": rows - len(kept),
        "interactions": len(kept),
        "users": int(kept[user].nunique()),
        "items": int(kept[item].nunique()),
    }
    if kept.empty:
        result = pd.DataFrame({c: pd.Series([], dtype=object) for c in out_columns})
        result[user] = log[user].iloc[:0].reset_index(drop=True)
        result.attrs["report"] = report
        return result

    user_codes, _ = pd.factorize(kept[user], sort=True)
    sort_keys = [user_codes]
    if timestamp is not None:
        # Ranks of the timestamps: lexsort needs comparable arrays, and ranks
        # work for ints, floats and datetimes alike.
        time_codes, _ = pd.factorize(kept[timestamp], sort=True)
        sort_keys.insert(0, time_codes)
    order = np.lexsort(sort_keys)  # stable: ties keep the log's row order
    sorted_users = user_codes[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_users)) + 1])

    result = pd.DataFrame({user: kept[user].iloc[order[starts]].reset_index(drop=True)})
    for column in out_columns[1:]:
        values = _column_values(kept[column])[order]
        result[column] = [part.tolist() for part in np.split(values, starts[1:])]
    result.attrs["report"] = report
    return result


def k_core(
    log: pd.DataFrame, k: int, user: str = "user_id", item: str = "item_id"
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Keeps the largest part of the log where every user and item has >= k interactions.

    Removing a user can push an item below k and the other way round, so the
    filter repeats until nothing changes (each pass drops the users and items
    under k at once; the result does not depend on the order of removals).

    Args:
        log: one row per interaction.
        k: the minimum number of interactions (rows) per user and per item.
        user: the user id column.
        item: the item id column.

    Returns:
        (the filtered log with its original index, report) where report is
        {"k", "iterations": passes that removed rows, "users_removed",
        "items_removed", "interactions_removed", "users", "items",
        "interactions"}.

    Raises:
        ValueError: k < 1, or missing user/item values.
        KeyError: a column is not in the log.

    Example:

    >>> core, report = k_core(log, k=5)
    >>> report["users"], report["items"]
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    _require_columns(log, [user, item])
    _require_no_missing(log, [user, item])
    users = log[user].to_numpy()
    items = log[item].to_numpy()
    keep = np.ones(len(log), dtype=bool)
    iterations = 0
    while True:
        current_users = pd.Series(users[keep])
        current_items = pd.Series(items[keep])
        enough = (current_users.map(current_users.value_counts()) >= k).to_numpy() & (
            current_items.map(current_items.value_counts()) >= k
        ).to_numpy()
        if enough.all():
            break
        iterations += 1
        positions = np.flatnonzero(keep)
        keep[positions[~enough]] = False
    core = log[keep]
    report = {
        "k": int(k),
        "iterations": iterations,
        "users_removed": int(log[user].nunique() - core[user].nunique()),
        "items_removed": int(log[item].nunique() - core[item].nunique()),
        "interactions_removed": int(len(log) - len(core)),
        "users": int(core[user].nunique()),
        "items": int(core[item].nunique()),
        "interactions": len(core),
    }
    return core, report


def _as_list(value: Any, column: str) -> list:
    # A fresh list: the splits must never share storage with the input frame.
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list | tuple):
        return list(value)
    raise TypeError(f"column {column!r} must hold lists, found {type(value).__name__}.")


def _aligned_columns(sequences: pd.DataFrame, item: str) -> tuple[list[str], list[str]]:
    """(scalar columns, list columns aligned with `item`), in frame order.

    A column is aligned when every row holds a list of the same length as that
    row's item list (timestamps, ratings); anything else (the user id, a
    per-user list feature) is copied unchanged.
    """
    lengths = [len(_as_list(v, item)) for v in sequences[item]]
    scalars, aligned = [], []
    for column in sequences.columns:
        if column == item:
            continue
        values = sequences[column].tolist()
        if values and all(
            isinstance(v, list | tuple | np.ndarray) and len(v) == n
            for v, n in zip(values, lengths)
        ):
            aligned.append(column)
        else:
            scalars.append(column)
    return scalars, aligned


def _check_free_names(scalars: list[str], aligned: list[str]) -> None:
    taken = {HISTORY, TARGET} | {f"{TARGET}_{c}" for c in aligned}
    clash = sorted(taken & set(scalars + aligned))
    if clash:
        raise ValueError(f"columns {clash} clash with the names of the valid/test columns.")


def _frame(rows: dict[str, list], report: dict[str, int]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame.attrs["report"] = dict(report)
    return frame


def leave_one_out(
    sequences: pd.DataFrame, item: str = "item_id", min_length: int = 3
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The S3-Rec leave-one-out split: last item tests, the one before validates.

    For a user with items s of length n >= min_length:

    * train: `item` = s[:-2] (next-item models train on all its positions);
    * valid: `history` = s[:-2], `target` = s[-2];
    * test: `history` = s[:-1], `target` = s[-1].

    Other columns holding lists aligned with the items (timestamps, ratings)
    are sliced alike: in train `<col>` = col[:-2]; in valid/test `<col>` is the
    history part and `target_<col>` the target's value. Scalar columns (the
    user id) are copied. The input is not modified.

    Args:
        sequences: one row per user, e.g. from `sequences_from_log`.
        item: the column of item lists.
        min_length: shorter users are dropped; at least 3 so that training
            keeps one item.

    Returns:
        (train, valid, test), one row per kept user each, in input order.
        `.attrs["report"]` = {"users": kept, "users_dropped_short": dropped}.

    Example:

    >>> seqs = pd.DataFrame({"user_id": [1], "item_id": [[4, 5, 6, 7]]})
    >>> train, valid, test = leave_one_out(seqs)
    >>> train["item_id"][0], valid["target"][0], test["history"][0]
    ([4, 5], 6, [4, 5, 6])
    """
    if min_length < 3:
        raise ValueError(f"min_length must be >= 3 (train keeps n - 2 items), got {min_length}.")
    _require_columns(sequences, [item])
    scalars, aligned = _aligned_columns(sequences, item)
    _check_free_names(scalars, aligned)

    train: dict[str, list] = {c: [] for c in scalars + [item] + aligned}
    evaluation_columns = scalars + [HISTORY, TARGET]
    for column in aligned:
        evaluation_columns += [column, f"{TARGET}_{column}"]
    valid: dict[str, list] = {c: [] for c in evaluation_columns}
    test: dict[str, list] = {c: [] for c in evaluation_columns}
    dropped = 0
    for row in sequences[scalars + [item] + aligned].itertuples(index=False, name=None):
        values = dict(zip(scalars + [item] + aligned, row))
        items = _as_list(values[item], item)
        if len(items) < min_length:
            dropped += 1
            continue
        for column in scalars:
            for part in (train, valid, test):
                part[column].append(values[column])
        lists = {item: items} | {c: _as_list(values[c], c) for c in aligned}
        train[item].append(items[:-2])
        valid[HISTORY].append(items[:-2])
        valid[TARGET].append(items[-2])
        test[HISTORY].append(items[:-1])
        test[TARGET].append(items[-1])
        for column in aligned:
            col = lists[column]
            train[column].append(col[:-2])
            valid[column].append(col[:-2])
            valid[f"{TARGET}_{column}"].append(col[-2])
            test[column].append(col[:-1])
            test[f"{TARGET}_{column}"].append(col[-1])
    report = {"users": len(sequences) - dropped, "users_dropped_short": dropped}
    return _frame(train, report), _frame(valid, report), _frame(test, report)


def time_split(
    sequences: pd.DataFrame,
    valid_start: Any,
    test_start: Any,
    item: str = "item_id",
    timestamp: str = "timestamp",
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A global time split: one cut for every user, so no test event precedes training.

    * train: per user, the items with timestamp < valid_start (users with at
      least 2 of them: one item teaches no transition);
    * valid: one row per event with valid_start <= t < test_start;
    * test: one row per event with t >= test_start.

    An evaluation row's `history` is all the user's items with a timestamp
    strictly earlier than the target's (earlier valid events included; same-
    timestamp events are left out, since their order is unknown), `target` is
    the item. Other aligned list columns follow as in `leave_one_out`
    (`<col>` for the history, `target_<col>` for the target). Events with an
    empty history are dropped and counted.

    Args:
        sequences: one row per user with aligned item and timestamp lists,
            e.g. from `sequences_from_log` (lists out of time order are
            stably sorted first).
        valid_start: first timestamp of the validation period (comparable
            with the timestamps).
        test_start: first timestamp of the test period.
        item: the column of item lists.
        timestamp: the column of timestamp lists.

    Returns:
        (train, valid, test). `.attrs["report"]` = {"train_users",
        "train_users_dropped_short", "valid_events", "test_events",
        "valid_dropped_no_history", "test_dropped_no_history"}.

    Raises:
        ValueError: valid_start > test_start, or timestamps not aligned with items.

    Example:

    >>> train, valid, test = time_split(seqs, valid_start=880_000_000, test_start=885_000_000)
    """
    if valid_start > test_start:
        raise ValueError(
            f"valid_start ({valid_start!r}) must not be after test_start ({test_start!r})."
        )
    _require_columns(sequences, [item, timestamp])
    scalars, aligned = _aligned_columns(sequences, item)
    if timestamp not in aligned and len(sequences):
        raise ValueError(f"column {timestamp!r} must hold lists aligned with {item!r}.")
    if not aligned:  # an empty frame: nothing tells lists from scalars
        scalars = [c for c in scalars if c != timestamp]
        aligned = [timestamp]
    _check_free_names(scalars, aligned)

    train: dict[str, list] = {c: [] for c in scalars + [item] + aligned}
    evaluation_columns = scalars + [HISTORY, TARGET]
    for column in aligned:
        evaluation_columns += [column, f"{TARGET}_{column}"]
    parts = {
        "valid": {c: [] for c in evaluation_columns},
        "test": {c: [] for c in evaluation_columns},
    }
    counts = dict.fromkeys(
        ["train_users", "train_users_dropped_short", "valid_events", "test_events",
         "valid_dropped_no_history", "test_dropped_no_history"], 0,
    )  # fmt: skip
    for row in sequences[scalars + [item] + aligned].itertuples(index=False, name=None):
        values = dict(zip(scalars + [item] + aligned, row))
        lists = {item: _as_list(values[item], item)} | {c: _as_list(values[c], c) for c in aligned}
        times = lists[timestamp]
        if any(a > b for a, b in zip(times, times[1:])):
            order = sorted(range(len(times)), key=times.__getitem__)  # stable
            lists = {c: [v[i] for i in order] for c, v in lists.items()}
            times = lists[timestamp]
        train_end = bisect.bisect_left(times, valid_start)
        valid_end = bisect.bisect_left(times, test_start)
        if train_end >= 2:
            counts["train_users"] += 1
            for column in scalars:
                train[column].append(values[column])
            for column, v in lists.items():
                train[column].append(v[:train_end])
        elif train_end == 1:
            counts["train_users_dropped_short"] += 1
        for position in range(train_end, len(times)):
            name = "valid" if position < valid_end else "test"
            # Strictly earlier events only: no same-time (order unknown) leakage.
            history_end = bisect.bisect_left(times, times[position])
            if history_end == 0:
                counts[f"{name}_dropped_no_history"] += 1
                continue
            counts[f"{name}_events"] += 1
            part = parts[name]
            for column in scalars:
                part[column].append(values[column])
            part[HISTORY].append(lists[item][:history_end])
            part[TARGET].append(lists[item][position])
            for column in aligned:
                part[column].append(lists[column][:history_end])
                part[f"{TARGET}_{column}"].append(lists[column][position])
    return _frame(train, counts), _frame(parts["valid"], counts), _frame(parts["test"], counts)


@dataclass(repr=False)
class SequenceDataset:
    """Per-user item sequences, with optional item attributes.

    Attributes:
        sequences: one row per user; columns `user_id` and `item_id` (a list
            of raw item ids in time order), possibly more aligned lists.
        item_attributes: raw item id -> list of attribute ids, or None.
        name: the data set's name.
        attributes_path: the file `item_attributes` was read from, if any
            (named in error messages).

    Example:

    >>> data = amazon_beauty()
    >>> train, valid, test = data.leave_one_out()
    >>> data.num_users, data.num_items
    (22363, 12101)
    """

    sequences: pd.DataFrame
    item_attributes: dict[int, list[int]] | None = None
    name: str = ""
    attributes_path: str | None = None

    def leave_one_out(self, min_length: int = 3) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """`leave_one_out` on the sequences (the S3-Rec protocol)."""
        return leave_one_out(self.sequences, item="item_id", min_length=min_length)

    def item_attribute_matrix(
        self, spec: FeatureSpec, feature: str | None = None, **kwargs: Any
    ) -> np.ndarray:
        """`item_attribute_matrix` of this data set's attributes, rows = the spec's item ids.

        Example:

        >>> attributes = beauty.item_attribute_matrix(spec)  # (V, 637) for Beauty
        """
        source = self.attributes_path or f"the item attributes of {self.name or 'the data set'}"
        if self.item_attributes is None:
            raise ValueError(
                f"{self!r} has no item attributes: s3rec_sequences reads them from "
                "<name>_item2attributes.json next to the sequence file (or pass attributes=)."
            )
        kwargs.setdefault("source", source)
        return item_attribute_matrix(self.item_attributes, spec, feature, **kwargs)

    @property
    def num_users(self) -> int:
        """Number of users (rows)."""
        return len(self.sequences)

    @property
    def num_items(self) -> int:
        """Number of distinct items over all sequences."""
        return len(set(chain.from_iterable(self.sequences["item_id"])))

    @property
    def num_interactions(self) -> int:
        """Total length of all sequences."""
        return int(sum(len(s) for s in self.sequences["item_id"]))

    def __repr__(self) -> str:
        # The default dataclass repr would print the whole frame.
        return (
            f"SequenceDataset(name={self.name!r}, users={self.num_users}, "
            f"items={self.num_items}, interactions={self.num_interactions}, "
            f"item_attributes={'yes' if self.item_attributes is not None else 'no'})"
        )


def _read_s3rec_file(path: str) -> pd.DataFrame:
    users: list[int] = []
    sequences: list[list[int]] = []
    first_line: dict[int, int] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            tokens = line.split()
            if not tokens:
                continue  # blank (e.g. trailing) lines carry nothing
            # isascii + isdigit: only 0-9, unlike int() which also takes "1_0" or "+1".
            bad = next((t for t in tokens if not (t.isascii() and t.isdigit())), None)
            if bad is not None:
                raise ValueError(
                    f"{path}, line {number}: {bad!r} is not a non-negative integer id."
                )
            if len(tokens) < 2:
                raise ValueError(f"{path}, line {number}: user {tokens[0]} has no items.")
            user = int(tokens[0])
            if user in first_line:
                raise ValueError(
                    f"{path}, line {number}: user {user} already appeared on line "
                    f"{first_line[user]}."
                )
            first_line[user] = number
            users.append(user)
            sequences.append([int(t) for t in tokens[1:]])
    return pd.DataFrame({"user_id": np.asarray(users, dtype=np.int64), "item_id": sequences})


def _read_attributes(path: str) -> dict[int, list[int]]:
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
        return {int(key): [int(a) for a in value] for key, value in raw.items()}
    except (ValueError, TypeError, AttributeError) as error:
        raise ValueError(
            f"{path} is not a JSON object of item id -> list of integer attribute ids "
            f"({type(error).__name__}: {error})."
        ) from error


def s3rec_sequences(
    path: str, name: str | None = None, attributes: str | None = None
) -> SequenceDataset:
    """Reads a data set in the S3-Rec text format.

    One line a user, `user_id item_id item_id ...`, items in time order,
    integer ids (kept as Python ints). Blank lines are skipped.

    Args:
        path: the text file, or a directory holding `<name>.txt` (`Beauty.txt`
            when `name` is None).
        name: the data set's name; default the file's name without `.txt`.
        attributes: the item -> attribute ids JSON; default
            `<name>_item2attributes.json` next to the file, when it exists.

    Returns:
        A `SequenceDataset` with columns user_id (int64) and item_id (lists),
        in file order.

    Raises:
        FileNotFoundError: the file (or the given attributes file) is absent.
        ValueError: a malformed line (non-integer token, a user with no items,
            a repeated user), naming the file and line number.

    Example:

    >>> toys = s3rec_sequences("/data/amazon_s3rec", name="Toys_and_Games")
    """
    file = path
    if os.path.isdir(path):
        file = os.path.join(path, f"{name or 'Beauty'}.txt")
    if not os.path.isfile(file):
        raise FileNotFoundError(f"S3-Rec sequence file {file} does not exist. {S3REC_ABOUT}")
    stem = os.path.splitext(os.path.basename(file))[0]
    if attributes is None:
        candidate = os.path.join(os.path.dirname(file), f"{stem}_item2attributes.json")
        attributes = candidate if os.path.isfile(candidate) else None
    elif not os.path.isfile(attributes):
        raise FileNotFoundError(f"Item attribute file {attributes} does not exist.")
    return SequenceDataset(
        sequences=_read_s3rec_file(file),
        item_attributes=_read_attributes(attributes) if attributes else None,
        name=name or stem,
        attributes_path=os.path.normpath(attributes) if attributes else None,
    )


def item_attribute_matrix(
    item_attributes: Mapping[Any, Iterable[int]],
    spec: FeatureSpec,
    feature: str | None = None,
    attributes: Sequence[int] | None = None,
    allow_missing: bool = False,
    dtype: str = "float32",
    source: str = "item_attributes",
) -> np.ndarray:
    """(V, A) multi-hot of item attributes, one row per internal item id of a fitted spec.

    Row i holds 1 in column j when the item the spec maps to id i has the
    j-th attribute: row i is the raw item `spec.vocabulary_values(feature, i)`,
    so the matrix lines up with the item embedding table of the models built
    on the spec (S3-Rec's attribute objectives read it). Rows 0 (padding) and
    1 (unseen items) are zero. Column j is `attributes[j]`, by default the
    sorted attribute ids of the whole mapping (not only of the spec's items,
    so two specs over the same catalogue get the same columns).

    Args:
        item_attributes: raw item id -> attribute ids, e.g.
            `SequenceDataset.item_attributes` (keys are compared with the
            spec's vocabulary values, so they must have the same type).
        spec: a fitted `FeatureSpec` holding the item `Sequence`.
        feature: the item sequence feature (default: the spec's only one).
        attributes: the attribute id of each column; ids outside it raise.
        allow_missing: an item of the vocabulary without an entry gets an
            empty row instead of raising.
        dtype: the matrix's dtype.
        source: how error messages name the mapping (e.g. its file).

    Returns:
        A (spec.input_dim(feature), len(attributes)) array of 0 and 1.

    Raises:
        ValueError: a vocabulary item has no entry (the message names the
            first ones and `source`), or an attribute id is not in `attributes`.

    Example:

    >>> beauty = amazon_beauty()
    >>> spec = kr.FeatureSpec([kr.Sequence("history", max_length=50)], 64)
    >>> spec.adapt(pd.DataFrame({"history": beauty.sequences["item_id"]}))
    >>> item_attribute_matrix(beauty.item_attributes, spec).shape
    (12103, 637)
    """
    if feature is None:
        names = [f.name for f in spec.sequences]
        if len(names) != 1:
            raise ValueError(
                f"The spec has item sequences {names or 'none'}: pass feature=<the item sequence>."
            )
        feature = names[0]
    spec.check_adapted()
    if attributes is None:
        attributes = sorted({int(a) for values in item_attributes.values() for a in values})
    column = {int(a): j for j, a in enumerate(attributes)}
    num_items = spec.input_dim(feature)
    raw_items = spec.vocabulary_values(feature, np.arange(num_items))
    matrix = np.zeros((num_items, len(column)), dtype=dtype)
    missing = []
    for internal, raw in enumerate(raw_items):
        if raw is None:  # the reserved ids 0 and 1
            continue
        values = item_attributes.get(raw)
        if values is None:
            missing.append(raw)
            continue
        for attribute in values:
            j = column.get(int(attribute))
            if j is None:
                raise ValueError(
                    f"Item {raw!r} in {source} has attribute {attribute!r}, which is not "
                    "among the `attributes` columns."
                )
            matrix[internal, j] = 1
    if missing and not allow_missing:
        raise ValueError(
            f"{len(missing)} item(s) of the vocabulary of '{feature}' have no entry in {source}, "
            f"e.g. raw item ids {missing[:5]}; pass allow_missing=True to give them no "
            "attribute (the S3-Rec reference code does)."
        )
    return matrix


def amazon_beauty(path: str | None = None) -> SequenceDataset:
    """Amazon Beauty as preprocessed for S3-Rec: 22,363 users, 12,101 items, 198,502 events.

    The standard protocol is `leave_one_out` (the dataset's method) with
    full ranking over all items. Item attributes come from
    `Beauty_item2attributes.json` when it is next to `Beauty.txt`.

    Args:
        path: `Beauty.txt` or its directory. Default: $KERAS_RECSYS_AMAZON_S3REC,
            else `../shared/data/amazon_s3rec` relative to the working
            directory, else `/work/shared/data/amazon_s3rec`.

    Raises:
        FileNotFoundError: no copy found; the message says where it looked.

    Example:

    >>> beauty = amazon_beauty()
    >>> train, valid, test = beauty.leave_one_out()
    """
    if path is None:
        if os.environ.get(S3REC_ENV):
            # An explicit setting that points nowhere is an error, not a
            # reason to silently read another copy.
            candidates = [os.environ[S3REC_ENV]]
        else:
            candidates = [os.path.abspath(S3REC_RELATIVE_DIR), S3REC_ABSOLUTE_DIR]
        looked = [
            os.path.join(c, "Beauty.txt") if not c.endswith(".txt") else c for c in candidates
        ]
        path = next((c for c, f in zip(candidates, looked) if os.path.isfile(f)), None)
        if path is None:
            raise FileNotFoundError(
                f"The S3-Rec Beauty.txt was not found; looked in {looked}. {S3REC_ABOUT}"
            )
    return s3rec_sequences(path, name="Beauty")


def next_item_pairs(
    sequences: pd.DataFrame,
    item: str = "item_id",
    max_history: int = 50,
    columns: Sequence[str] = (),
    history: str = HISTORY,
) -> pd.DataFrame:
    """One row per (history, next item) of every training sequence: two-tower training rows.

    For a user's items s, row t (t >= 1) holds `history` = s[max(0, t - max_history):t]
    and `item` = s[t]; the scalar `columns` (e.g. the user id) are copied.
    A sequence of one item gives no row.

    Example:

    >>> next_item_pairs(pd.DataFrame({"user_id": [1], "item_id": [[4, 5, 6]]}), columns=["user_id"])
       user_id history  item_id
    0        1     [4]        5
    1        1  [4, 5]        6
    """
    _require_columns(sequences, [item, *columns])
    if max_history < 1:
        raise ValueError(f"max_history must be >= 1, got {max_history}.")
    rows: dict[str, list] = {name: [] for name in [*columns, history, item]}
    scalars = {name: sequences[name].tolist() for name in columns}
    for position, items in enumerate(sequences[item]):
        items = _as_list(items, item)
        for t in range(1, len(items)):
            for name in columns:
                rows[name].append(scalars[name][position])
            rows[history].append(items[max(0, t - max_history) : t])
            rows[item].append(items[t])
    return pd.DataFrame(rows)
