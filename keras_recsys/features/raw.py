"""Raw columns (pandas) to typed numpy arrays, with errors that name columns.

This is the one place where user data is checked: every path into the model
(adapt, `data.from_pandas`, CSV/Parquet readers, export warm-up) goes
through `frame_to_raw`, so a bad column fails the same way everywhere.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from keras_recsys.features.feature import Categorical, Numeric, Sequence

# Stands for a missing integer category; never part of a fitted vocabulary,
# so it maps to the out-of-vocabulary id like any unseen value.
MISSING_INT = np.iinfo(np.int64).min
# The empty string stands for a missing string category, for the same reason.
MISSING_STR = ""


class RaggedValues:
    """A list column as flat values plus row lengths (numpy)."""

    def __init__(self, values: np.ndarray, row_lengths: np.ndarray):
        self.values = values
        self.row_lengths = row_lengths

    def __len__(self) -> int:
        return len(self.row_lengths)

    def rows(self) -> list[np.ndarray]:
        return np.split(self.values, np.cumsum(self.row_lengths)[:-1])


def show(value) -> str:
    """repr of a value for error messages, NumPy scalars shown as plain Python."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def column_of(df: pd.DataFrame, feature, what: str = "feature") -> pd.Series:
    if feature.column not in df.columns:
        shown = ", ".join(map(str, list(df.columns)[:12]))
        more = " ..." if len(df.columns) > 12 else ""
        raise KeyError(
            f"Column '{feature.column}' for {what} '{feature.name}' is "
            f"missing from the data; it has columns [{shown}{more}]."
        )
    return df[feature.column]


def plain_column(series: pd.Series) -> pd.Series:
    """A pandas `category` column as its values (object), other columns as is."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return series.astype(object)
    return series


def _value_types(values: pd.Series) -> list[str]:
    return sorted({type(v).__name__ for v in values.dropna()})


def infer_categorical_dtype(series: pd.Series, name: str) -> str:
    """'string' or 'int64' from the non-missing values of a whole column."""
    series = plain_column(series)
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_integer_dtype(series):
        return "int64"
    kind = "floating" if pd.api.types.is_float_dtype(series) else None
    if kind is None:
        # Looks at every value (in C), not a prefix: a column that turns
        # from strings to numbers half-way must not be read as strings.
        kind = pd.api.types.infer_dtype(series, skipna=True)
    if kind in ("string", "empty"):
        return "string"
    if kind in ("integer", "boolean"):
        return "int64"
    if kind in ("floating", "mixed-integer-float"):
        values = pd.to_numeric(series, errors="coerce").dropna()
        fractional = np.mod(values.to_numpy(dtype=np.float64), 1) != 0
        if not fractional.any():
            return "int64"
        raise TypeError(
            f"Categorical feature '{name}': column holds non-integer floats "
            f"(e.g. {float(values[fractional].iloc[0])!r}); categorical "
            "values must be strings or integers. Use `Numeric` for "
            "continuous values."
        )
    raise TypeError(
        f"Categorical feature '{name}': column mixes value types "
        f"{_value_types(series)}; expected all strings or all integers."
    )


def categorical_array(series: pd.Series, dtype: str, name: str) -> np.ndarray:
    """A categorical column as int64 or str numpy array, missing marked."""
    series = plain_column(series)
    if dtype == "int64":
        if pd.api.types.is_bool_dtype(series) or pd.api.types.is_integer_dtype(series):
            # na_value covers nullable Int64 / boolean columns holding pd.NA.
            return series.to_numpy(dtype=np.int64, na_value=MISSING_INT)
        numeric = pd.to_numeric(series, errors="coerce")
        bad = numeric.isna() & series.notna()
        if bad.any() or np.any(np.mod(numeric.dropna().to_numpy(), 1) != 0):
            example = series[bad].iloc[0] if bad.any() else "a fraction"
            raise TypeError(
                f"Categorical feature '{name}' expects integer values; column "
                f"holds {show(example)}."
            )
        return numeric.fillna(MISSING_INT).to_numpy(dtype=np.int64)
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        raise TypeError(
            f"Categorical feature '{name}' was fitted on strings but the "
            f"column holds numbers ({series.dtype})."
        )
    if pd.api.types.infer_dtype(series, skipna=True) not in ("string", "empty"):
        not_text = series.map(lambda v: not isinstance(v, str)) & series.notna()
        example = series[not_text].iloc[0]
        raise TypeError(
            f"Categorical feature '{name}' has string values (its fitted "
            f"type) but the column also holds {type(example).__name__} values "
            f"(e.g. {show(example)} at row {show(series.index[not_text.to_numpy()][0])}); "
            "expected all strings or all integers."
        )
    return series.fillna(MISSING_STR).astype(str).to_numpy(dtype=object)


def numeric_array(series: pd.Series, name: str) -> np.ndarray:
    """A numeric column as float32, NaN for missing; rejects text and inf."""
    if pd.api.types.is_bool_dtype(series):
        return series.astype(np.float32).to_numpy()
    if not pd.api.types.is_numeric_dtype(series):
        coerced = pd.to_numeric(series, errors="coerce")
        bad = coerced.isna() & series.notna()
        if bad.any():
            examples = ", ".join(show(v) for v in series[bad].unique()[:3])
            raise TypeError(
                f"Numeric feature '{name}' expects numbers; column holds "
                f"{examples} (row {show(series[bad].index[0])})."
            )
        series = coerced
    values = series.to_numpy(dtype=np.float64)
    infinite = np.isinf(values)
    if infinite.any():
        raise ValueError(
            f"Numeric feature '{name}' has {int(infinite.sum())} infinite "
            f"value(s) (first at row {show(series.index[np.argmax(infinite)])}); "
            "missing values (NaN) are imputed with the training mean, but "
            "inf is rejected because it usually means a broken upstream "
            "computation."
        )
    return values.astype(np.float32)


# Separators people commonly join list items with. A cell that one of them
# (other than the feature's own) splits into known items was most likely
# written in another format than the feature expects.
_FOREIGN_SEPARATORS = (",", ";", "|", "\t", " ")
_QUOTES = "'\""
# Numbers separated by commas or whitespace: the inside of "[1, 2]" (a list
# written by `DataFrame.to_csv`) or "[1 2 3]" (a NumPy array written out).
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NUMBERS = re.compile(rf"{_NUMBER}(?:(?:\s*,\s*|\s+){_NUMBER})*\s*,?")
_INTEGER = re.compile(r"[-+]?\d+")


def _looks_like_list(cell: str) -> bool:
    """Whether a string is a list or tuple written out as text.

    That is what `DataFrame.to_csv` writes for a list column ("['a', 'b']",
    "[1, 2]", "[]") or `str()` gives for a NumPy array ("[1 2 3]"). Plain
    bracketed values such as "(none)" or "(1995)" are not lists.
    """
    text = cell.strip()
    if len(text) < 2 or text[0] + text[-1] not in ("[]", "()"):
        return False
    inner = text[1:-1].strip()
    if not inner:
        return True
    if inner[0] in _QUOTES and inner[-1] in _QUOTES:
        return True
    return _NUMBERS.fullmatch(inner) is not None and ("," in inner or text[0] == "[")


def _split(text: str, separator: str) -> list[str]:
    return [piece.strip() for piece in text.split(separator) if piece.strip()]


def _in_vocabulary(candidates: set[str], vocabulary) -> set[str]:
    """The candidate strings that are vocabulary entries (string or integer)."""
    if not candidates or not len(vocabulary):
        return set()
    if isinstance(vocabulary[0], str):
        return candidates.intersection(vocabulary)
    as_int: dict[int, list[str]] = {}
    for text in candidates:
        if _INTEGER.fullmatch(text.strip()):
            as_int.setdefault(int(text), []).append(text)
    found = set(as_int).intersection(vocabulary)
    return {text for key in found for text in as_int[key]}


def _check_string_cells(
    cells: np.ndarray,
    positions: list[int],
    index: pd.Index,
    feature: Sequence,
    vocabulary,
) -> None:
    """Rejects string cells written in another format (see `sequence_values`)."""
    rows = [i for i in positions if cells[i].strip()]
    if not rows:
        return
    texts = [cells[i] for i in rows]
    separator = feature.separator
    # One joined string answers "does any cell contain it" in C, so
    # well-formed columns (the usual case) cost little.
    everything = "\x00".join(texts)

    def cell_tokens(text: str) -> list[str]:
        return [t for t in text.split(separator) if t != ""]

    def first_cell_with(bad_tokens: set[str]) -> int:
        return next(k for k, text in enumerate(texts) if bad_tokens.intersection(cell_tokens(text)))

    # Cells holding a written-out list.
    listy = []
    if "[" in everything or "(" in everything:
        listy = [k for k, text in enumerate(texts) if _looks_like_list(text)]
    if listy:
        if vocabulary is not None:
            known = _in_vocabulary({t for k in listy for t in cell_tokens(texts[k])}, vocabulary)
            listy = [k for k in listy if not set(cell_tokens(texts[k])) <= known]
        elif 2 * len(listy) < len(texts):
            listy = []
    if listy:
        raise ValueError(
            f"Sequence feature '{feature.name}': cells look like lists written out "
            f"as text (e.g. {texts[listy[0]]!r} at row {show(index[rows[listy[0]]])}), "
            "which is what `DataFrame.to_csv` writes for a list column; each would "
            "be read as one unknown item. Pass lists instead (for a CSV column: "
            f"`df[{feature.column!r}].map(ast.literal_eval)`), or strings of items "
            f"joined with the feature's separator {separator!r}."
        )

    # Cells joined with another separator than the feature's.
    candidates = [c for c in _FOREIGN_SEPARATORS if c not in separator and c in everything]
    if not candidates:
        return
    own_separator_seen = separator in everything
    tokens = set(everything.replace("\x00", separator).split(separator))
    tokens.discard("")
    for candidate in candidates:
        multi = {t: _split(t, candidate) for t in tokens if candidate in t}
        multi = {t: pieces for t, pieces in multi.items() if len(pieces) >= 2}
        if not multi:
            continue
        if vocabulary is not None:
            # Unknown as a whole while most of its pieces are known items.
            known = _in_vocabulary(set(multi).union(*multi.values()), vocabulary)
            bad = {
                t
                for t, pieces in multi.items()
                if t not in known and 2 * sum(p in known for p in pieces) > len(pieces)
            }
        else:
            # Mostly made of pieces that are items of the column themselves...
            bad = {
                t
                for t, pieces in multi.items()
                if 2 * sum(p in tokens for p in pieces) > len(pieces)
            }
            if 2 * len(bad) < len(multi):
                bad = set()
            if not bad and not own_separator_seen:
                # ...or no cell has two items while most split into several.
                bad = {
                    t
                    for t, pieces in multi.items()
                    if candidate != " " or all(_INTEGER.fullmatch(p) for p in pieces)
                }
                if 2 * sum(text in bad for text in texts) < len(texts):
                    bad = set()
        if not bad:
            continue
        k = first_cell_with(bad)
        raise ValueError(
            f"Sequence feature '{feature.name}': cells look joined with "
            f"{candidate!r} (e.g. {texts[k]!r} at row {show(index[rows[k]])}) but "
            f"the feature's separator is {separator!r}, so each would be read as one "
            f"unknown item. Join the items with {separator!r}, pass lists, or "
            f"declare `Sequence({feature.name!r}, separator={candidate!r})`."
        )


def sequence_values(series: pd.Series, feature: Sequence, vocabulary=None) -> RaggedValues:
    """A list column, or a column of delimited strings, as ragged values.

    String cells are split on `feature.separator`. A string cell in another
    format is an error (`ValueError`) rather than one silently unknown item:

    * a list written out as text ("['Drama']", "[1, 2]", "[]": what
      `DataFrame.to_csv` writes for a list column);
    * items joined with another common separator (",", ";", "|", tab,
      space) than the feature's, e.g. "Drama,Comedy" for separator "|".

    A category may contain such characters ("Married, spouse absent"), so
    the rule depends on what is known:

    * with the fitted `vocabulary` (reading data for a fitted spec): a
      list-looking cell is rejected unless it is a vocabulary entry itself;
      an item with a foreign separator only when it is not in the
      vocabulary while most of its pieces (split on that separator) are,
      so an unseen "Foo, Bar" stays an out-of-vocabulary item;
    * without one (during `adapt`, or for a hashed feature), the column as
      a whole decides: rejected when at least half of the cells look like
      lists; or when at least half of the tokens a foreign separator splits
      are mostly made of pieces that are tokens of the column themselves;
      or when the feature's own separator appears nowhere and a foreign one
      splits at least half of the cells (for a space, into integers only,
      since a single item may well contain spaces).

    Lists and arrays are taken as they are, item by item.
    """
    lengths = np.zeros(len(series), dtype=np.int64)
    chunks: list[Any] = []
    cells = series.to_numpy(dtype=object)
    string_positions: list[int] = []
    for i, value in enumerate(cells):
        if isinstance(value, str):
            items = [v for v in value.split(feature.separator) if v != ""]
            string_positions.append(i)
        elif value is None or (isinstance(value, float) and np.isnan(value)):
            items = []
        elif isinstance(value, (list, tuple, np.ndarray, pd.Series)):
            items = list(value)
        else:
            raise TypeError(
                f"Sequence feature '{feature.name}' expects a list/array or a "
                f"'{feature.separator}'-delimited string per row; row "
                f"{show(series.index[i])} holds {type(value).__name__} {show(value)}."
            )
        lengths[i] = len(items)
        chunks.extend(items)
    if string_positions:
        _check_string_cells(cells, string_positions, series.index, feature, vocabulary)
    return RaggedValues(np.asarray(chunks, dtype=object), lengths)


def sequence_array(
    series: pd.Series, feature: Sequence, dtype: str, vocabulary=None
) -> RaggedValues:
    """Typed ragged items; a None/NaN item inside a list becomes missing (OOV).

    `vocabulary` (the fitted one, when known) sharpens the check of string
    cells in another format (see `sequence_values`).
    """
    ragged = sequence_values(series, feature, vocabulary)
    items = pd.Series(ragged.values, dtype=object)
    missing = items.isna().to_numpy()
    if dtype == "int64":
        values = pd.to_numeric(items, errors="coerce")
        bad = values.isna().to_numpy() & ~missing
        fractional = np.mod(values.fillna(0).to_numpy(dtype=np.float64), 1) != 0
        if bad.any() or fractional.any():
            position = int(np.argmax(bad | fractional))
            row = np.repeat(series.index.to_numpy(), ragged.row_lengths)[position]
            raise TypeError(
                f"Sequence feature '{feature.name}' expects integer items; found "
                f"{show(ragged.values[position])} (row {show(row)}); its vocabulary "
                "holds integers."
            )
        ragged.values = values.fillna(MISSING_INT).to_numpy(dtype=np.int64)
    else:
        ragged.values = np.asarray(
            [MISSING_STR if m else str(v) for v, m in zip(ragged.values, missing)],
            dtype=object,
        )
    return ragged


def frame_to_raw(spec, df: pd.DataFrame) -> dict[str, Any]:
    """Typed raw arrays for every input feature of a fitted spec."""
    if len(df) == 0:
        raise ValueError("The DataFrame is empty: there are no rows to use.")
    raw: dict[str, Any] = {}
    for feature in spec.input_features:
        series = column_of(df, feature)
        if isinstance(feature, Categorical):
            raw[feature.name] = categorical_array(series, spec.dtype_of(feature.name), feature.name)
        elif isinstance(feature, Numeric):
            raw[feature.name] = numeric_array(series, feature.name)
        elif isinstance(feature, Sequence):
            owner = spec.vocabulary_owner(feature.name)
            # A hashed feature has no vocabulary: its cells are checked as a column.
            vocabulary = None if getattr(owner, "is_hashed", False) else owner.vocabulary
            raw[feature.name] = sequence_array(
                series, feature, spec.dtype_of(feature.name), vocabulary
            )
        elif feature.kind == "timestamps":
            sequence = spec[feature.sequence]
            raw[feature.name] = timestamp_array(series, feature, column_of(df, sequence), sequence)
    return raw


def _timestamp_cell(value, feature, separator: str, row) -> list[int]:
    if isinstance(value, str):
        parts: Any = [v for v in value.split(separator) if v != ""]
    elif value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    elif isinstance(value, (list, tuple, np.ndarray, pd.Series)):
        parts = list(value)
    elif isinstance(value, (int, np.integer)):
        parts = [value]  # a one-item row that pandas read as a number
    else:
        raise ValueError(
            f"Timestamps feature '{feature.name}' (row {show(row)}): expected a list or a "
            f"'{separator}'-joined string of integer seconds, got {show(value)}."
        )
    out = []
    for part in parts:
        try:
            number = float(part)
        except (TypeError, ValueError):
            number = np.nan
        if not np.isfinite(number) or number != int(number):
            raise ValueError(
                f"Timestamps feature '{feature.name}' (row {show(row)}): {show(part)} is not "
                "an integer time in seconds; every item needs its timestamp."
            )
        out.append(int(number))
    return out


def timestamp_array(
    series: pd.Series, feature, items: pd.Series, sequence: Sequence
) -> RaggedValues:
    """int64 ragged timestamps of a `Timestamps` column, one per item of its sequence.

    Cells are lists or strings joined by the sequence's separator, like the
    sequence's own. A missing row is an empty sequence; a missing or
    non-integer timestamp inside a row, or a row with another number of
    timestamps than its sequence has items, is an error naming the row.
    """
    rows = [
        _timestamp_cell(value, feature, sequence.separator, row)
        for value, row in zip(series.to_numpy(dtype=object), series.index)
    ]
    lengths = np.asarray([len(r) for r in rows], dtype=np.int64)
    item_lengths = np.asarray(sequence_values(items, sequence).row_lengths, dtype=np.int64)
    wrong = np.flatnonzero(lengths != item_lengths)
    if len(wrong):
        first = int(wrong[0])
        raise ValueError(
            f"Timestamps feature '{feature.name}' must have one value per item of "
            f"'{sequence.name}': {len(wrong)} row(s) differ, the first (row "
            f"{show(series.index[first])}) has {lengths[first]} timestamp(s) for "
            f"{item_lengths[first]} item(s)."
        )
    values = np.fromiter((t for r in rows for t in r), dtype=np.int64, count=int(lengths.sum()))
    return RaggedValues(values, lengths)
