"""Shards larger than memory: `spec.adapt` on files and lazy, interleaved `kr.data` readers."""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

import keras_recsys as kr
from keras_recsys.features import spec as spec_lib

SIZES = (130, 0, 411, 59, 300)  # uneven shards, one empty


def _rows(n=None, seed=0) -> pd.DataFrame:
    n = sum(SIZES) if n is None else n
    rng = np.random.default_rng(seed)
    items = [f"i{k}" for k in range(40)]
    return pd.DataFrame(
        {
            "rid": np.arange(n),
            "user": [f"u{k}" for k in rng.zipf(1.5, n) % 200],
            "city": rng.choice(["NA", "Paris", "Oslo", "007"], n),
            "item": rng.integers(0, 60, n),
            # A large offset and a small spread: E[x²] - E[x]² is a difference
            # of two numbers near 1e14, where rounding the sums shows.
            "price": 1e7 + 3 * rng.normal(size=n),
            "amount": rng.lognormal(size=n),
            "hist": ["|".join(rng.choice(items, rng.integers(0, 5))) for _ in range(n)],
            "ad": rng.integers(0, 10**12, n),
            "click": rng.integers(0, 2, n),
        }
    )


def _spec() -> kr.FeatureSpec:
    return kr.FeatureSpec(
        [
            kr.Numeric("rid", normalization=None),  # identifies a row after preprocessing
            kr.Categorical("user", min_frequency=2),
            kr.Categorical("city"),
            kr.Categorical("item", max_tokens=30),
            kr.Numeric("price"),
            kr.Numeric("amount", transform="log1p", buckets=8),
            kr.Numeric("amount_raw", column="amount", normalization="minmax"),
            kr.Sequence("hist", max_length=3, min_frequency=3),
            kr.Categorical("ad", hash_buckets=1000),
        ]
    )


def _write_shards(df: pd.DataFrame, directory, fmt: str) -> list[str]:
    os.makedirs(directory, exist_ok=True)
    paths, start = [], 0
    for i, size in enumerate(SIZES):
        part = df.iloc[start : start + size]
        start += size
        path = os.path.join(directory, f"part-{i:03d}.{fmt}")
        part.to_parquet(path) if fmt == "parquet" else part.to_csv(path, index=False)
        paths.append(path)
    # Marker files that writers leave behind are not shards.
    open(os.path.join(directory, "_SUCCESS"), "w").close()
    return paths


# ------------------------------------------------------------------------ adapt
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("how", ["directory", "glob", "list"])
def test_adapt_on_shards_equals_adapt_on_the_concatenation(tmp_path, monkeypatch, fmt, how):
    """Vocabularies, moments and sampled quantiles do not depend on files or chunk sizes."""
    # A small quantile sample, so the subsampling itself is exercised.
    monkeypatch.setattr(spec_lib, "_QUANTILE_SAMPLE", 100)
    df = _rows()
    paths = _write_shards(df, tmp_path / "shards", fmt)
    source = {
        "directory": str(tmp_path / "shards"),
        "glob": str(tmp_path / "shards" / f"part-*.{fmt}"),
        "list": paths,
    }[how]
    from_files = _spec().adapt(source, batch_size=97)
    from_frame = _spec().adapt(df, batch_size=250)
    assert from_files.get_config() == from_frame.get_config()
    # CSV too: "NA" is a category and "007" stays text.
    assert set(from_files["city"].vocabulary) == {"Paris", "007", "NA", "Oslo"}
    assert from_files.dtype_of("city") == "string" and from_files.dtype_of("item") == "int64"


def test_moments_are_exact(tmp_path):
    """Mean and std equal the exact rational computation, where the textbook
    one-pass formula (sum of squares) cancels to garbage."""
    df = _rows()
    spec = _spec().adapt(df, batch_size=64)
    x = df["price"].to_numpy(np.float32).astype(np.float64)
    exact = [Fraction(float(v)) for v in x]
    mean = sum(exact) / len(exact)
    variance = sum((v - mean) ** 2 for v in exact) / len(exact)
    assert spec["price"].mean == float(mean)
    assert spec["price"].std == pytest.approx(float(variance) ** 0.5, rel=1e-12)


def test_missing_column_in_a_shard_names_the_file_and_column(tmp_path):
    df = _rows()
    paths = _write_shards(df, tmp_path / "shards", "parquet")
    df.iloc[:50].drop(columns=["city"]).to_parquet(paths[3])
    with pytest.raises(
        ValueError, match=r"part-003\.parquet' has no column 'city' \(read by feature 'city'\)"
    ):
        _spec().adapt(str(tmp_path / "shards"))
    spec = _spec().adapt(df)
    with pytest.raises(ValueError, match=r"part-003\.parquet' has no column 'city'"):
        kr.data.from_parquet(str(tmp_path / "shards"), spec, tasks="click")
    pd.read_parquet(paths[1]).drop(columns=["click"]).to_parquet(paths[1])
    df.iloc[:50].to_parquet(paths[3])
    with pytest.raises(
        ValueError, match=r"part-001\.parquet' has no column 'click' \(read by task 'click'"
    ):
        kr.data.from_parquet(str(tmp_path / "shards"), spec, tasks="click")


def test_adapt_errors_on_unknown_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no Parquet"):
        _spec().adapt(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="No file matches"):
        _spec().adapt(str(tmp_path / "nothing-*.parquet"))
    (tmp_path / "rows.json").write_text("{}")
    with pytest.raises(ValueError, match="Cannot tell the format of"):
        _spec().adapt(str(tmp_path / "rows.json"))


# ------------------------------------------------------------------ reading shards
def _batches(dataset):
    return [
        ({k: v.numpy() for k, v in features.items()}, labels["click"].numpy())
        for features, labels in dataset
    ]


def _by_row(batches) -> dict[int, tuple]:
    """{row id: (its model inputs, its label)} of preprocessed batches; each row once."""
    rows = {}
    for features, labels in batches:
        for j in range(len(labels)):
            rid = int(features["rid"][j])
            assert rid not in rows, f"row {rid} read twice"
            rows[rid] = tuple(features[name][j].tobytes() for name in sorted(features))
            rows[rid] += (labels[j].tobytes(),)
    return rows


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_interleaved_shards_hold_exactly_the_rows(tmp_path, fmt):
    """cycle_length > 1 interleaves chunks of several files: the batches are full
    (but the last), mix files, and hold exactly the rows from_pandas gives."""
    df = _rows()
    _write_shards(df, tmp_path / "shards", fmt)
    spec = _spec().adapt(str(tmp_path / "shards"))
    reader = kr.data.from_parquet if fmt == "parquet" else kr.data.from_csv
    data = reader(
        str(tmp_path / "shards"), spec, batch_size=64, chunk_rows=16, tasks="click", cycle_length=3
    )
    got = _batches(data)
    expected = _batches(kr.data.from_pandas(df, spec, batch_size=64, tasks="click"))
    assert [len(b[1]) for b in got] == [64] * (len(df) // 64) + [len(df) % 64]
    assert _by_row(got) == _by_row(expected)
    # Interleaved: the first batch holds 16-row chunks of three files (the
    # empty second file makes way for the fourth).
    file_of_row = np.repeat(np.arange(len(SIZES)), SIZES)
    first = got[0][0]["rid"].astype(int)
    assert sorted(set(file_of_row[first])) == [0, 2, 3]


def test_shuffled_files_change_order_not_rows(tmp_path):
    """shuffle_files reorders the files every epoch; rows stay the same multiset."""
    df = _rows()
    _write_shards(df, tmp_path / "shards", "parquet")
    spec = _spec().adapt(df)
    data = kr.data.from_parquet(
        str(tmp_path / "shards"), spec, batch_size=100, tasks="click", shuffle_files=True, seed=3
    )
    epochs = [_batches(data) for _ in range(3)]
    firsts = [e[0][0]["price"][:5].tobytes() for e in epochs]
    assert len(set(firsts)) > 1
    assert _by_row(epochs[0]) == _by_row(epochs[1]) == _by_row(epochs[2])
    assert len(_by_row(epochs[0])) == len(df)


def test_bad_value_in_a_later_shard_names_the_file(tmp_path):
    df = _rows()
    paths = _write_shards(df, tmp_path / "shards", "csv")
    spec = _spec().adapt(df)
    bad = pd.read_csv(paths[4])
    bad["price"] = bad["price"].astype(object)
    bad.loc[7, "price"] = "lots"
    bad.to_csv(paths[4], index=False)
    data = kr.data.from_csv(str(tmp_path / "shards"), spec, tasks="click")
    with pytest.raises(Exception, match=r"part-004\.csv'.*Numeric feature 'price' expects numbers"):
        _batches(data)


def test_a_model_trains_from_shards(tmp_path):
    """fit on an interleaved Parquet directory: the loss goes down."""
    import keras

    df = _rows(4000, seed=1)
    df["click"] = (df["item"] % 3 == 0).astype(int)  # learnable from the item
    os.makedirs(tmp_path / "shards")
    for i in range(4):
        df.iloc[i * 1000 : (i + 1) * 1000].to_parquet(tmp_path / "shards" / f"p{i}.parquet")
    spec = _spec().adapt(str(tmp_path / "shards"))
    keras.utils.set_random_seed(0)
    model = kr.models.DNN(spec, "click", hidden_units=(16,))
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    data = kr.data.from_parquet(
        str(tmp_path / "shards"), model, batch_size=256, cycle_length=4, shuffle_files=True
    )
    history = model.fit(data, epochs=4, verbose=0)
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]
