"""Raw columns (pandas) to typed numpy arrays, with errors that name columns.

This is the one place where user data is checked: every path into the model
(adapt, `data.from_pandas`, CSV/Parquet readers, export warm-up) goes
through `frame_to_raw`, so a bad column fails the same way everywhere.
"""

from __future__ import annotations

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


def sequence_values(series: pd.Series, feature: Sequence) -> RaggedValues:
    """A list column, or a column of delimited strings, as ragged values."""
    lengths = np.zeros(len(series), dtype=np.int64)
    chunks: list[Any] = []
    for i, value in enumerate(series.to_numpy(dtype=object)):
        if isinstance(value, str):
            items = [v for v in value.split(feature.separator) if v != ""]
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
    return RaggedValues(np.asarray(chunks, dtype=object), lengths)


def sequence_array(series: pd.Series, feature: Sequence, dtype: str) -> RaggedValues:
    """Typed ragged items; a None/NaN item inside a list becomes missing (OOV)."""
    ragged = sequence_values(series, feature)
    items = pd.Series(ragged.values, dtype=object)
    missing = items.isna().to_numpy()
    if dtype == "int64":
        values = pd.to_numeric(items, errors="coerce")
        bad = values.isna().to_numpy() & ~missing
        fractional = np.mod(values.fillna(0).to_numpy(dtype=np.float64), 1) != 0
        if bad.any() or fractional.any():
            example = ragged.values[bad | fractional][0]
            raise TypeError(
                f"Sequence feature '{feature.name}' expects integer items; found {show(example)}."
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
            raw[feature.name] = sequence_array(series, feature, spec.dtype_of(feature.name))
    return raw
