"""FeatureSpec: fitted vocabularies, statistics, buckets, sequences, crosses, serialization."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import keras_recsys as kr
from keras_recsys.features import OOV_ID, PAD_ID
from keras_recsys.features import spec as spec_module

# Counts a:5, b:4, c:4, d:2, e:1, shuffled so that the order of rows cannot matter.
_COUNTS = {"a": 5, "b": 4, "c": 4, "d": 2, "e": 1}


@pytest.fixture(scope="module")
def counted_frame():
    values = [v for v, n in _COUNTS.items() for _ in range(n)]
    return pd.DataFrame({"c": np.random.default_rng(3).permutation(values)})


def _ids_of(vocabulary, rows):
    """Reference ids of sequences: 0 pad, 1 OOV, vocabulary from 2, latest items last."""
    index = {v: i + 2 for i, v in enumerate(vocabulary)}
    return [[index.get(v, OOV_ID) for v in row] for row in rows]


def _pad_front(rows, length):
    return np.array([[PAD_ID] * (length - len(r)) + list(r[-length:]) for r in rows])


def _assert_same_state(left, right):
    """Fitted configs equal: exactly for everything but floats, which match to 1e-9."""
    if isinstance(left, dict):
        assert left.keys() == right.keys()
        for key in left:
            _assert_same_state(left[key], right[key])
    elif isinstance(left, list):
        assert len(left) == len(right)
        for a, b in zip(left, right):
            _assert_same_state(a, b)
    elif isinstance(left, float):
        assert left == pytest.approx(right, rel=1e-9, abs=1e-12)
    else:
        assert left == right


# ------------------------------------------------------------------ categorical
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, ["a", "b", "c", "d", "e"]),
        ({"min_frequency": 2}, ["a", "b", "c", "d"]),
        ({"min_frequency": 4}, ["a", "b", "c"]),
        ({"max_tokens": 2}, ["a", "b"]),
        ({"min_frequency": 2, "max_tokens": 3}, ["a", "b", "c"]),
    ],
)
def test_vocabulary_most_frequent_first(counted_frame, options, expected):
    """The fitted vocabulary is ordered by count (ties by value) and honours the limits."""
    spec = kr.FeatureSpec([kr.Categorical("c", **options)]).adapt(counted_frame)
    assert spec["c"].vocabulary == expected
    assert spec.input_dim("c") == len(expected) + 2


@pytest.mark.parametrize(
    ("train", "evaluate", "dtype", "vocabulary"),
    [
        (["x", "y", "y", "z", "z", "z", None], ["z", "y", "x", None, "new"], "string", list("zyx")),
        ([10, 20, 20, 30, 30, 30, np.nan], [30, 20, 10, np.nan, 99], "int64", [30, 20, 10]),
        (
            pd.array([10, 20, 20, 30, 30, 30, None], dtype="Int64"),
            [30.0, 20.0, 10.0, np.nan, 99.0],
            "int64",
            [30, 20, 10],
        ),
        (
            pd.Categorical(["x", "y", "y", "z", "z", "z", None]),
            ["z", "y", "x", None, "new"],
            "string",
            list("zyx"),
        ),
    ],
    ids=["string", "int-float-nan", "nullable-Int64", "pandas-category"],
)
def test_ids_follow_the_convention(preprocess, train, evaluate, dtype, vocabulary):
    """Ids are 2.. in vocabulary order; missing and unseen values get OOV 1; never pad 0."""
    spec = kr.FeatureSpec([kr.Categorical("c")]).adapt(pd.DataFrame({"c": train}))
    assert spec["c"].dtype == dtype
    assert spec["c"].vocabulary == vocabulary
    ids = preprocess(spec, pd.DataFrame({"c": evaluate}))["c"]
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(ids, [2, 3, 4, OOV_ID, OOV_ID])


@pytest.mark.parametrize("vocabulary", [["z", "x"], np.array([7, 3])], ids=["str", "numpy-int"])
def test_explicit_vocabulary_is_kept(preprocess, vocabulary):
    """An explicit vocabulary is not refitted, keeps its order and serializes to JSON."""
    values = vocabulary.tolist() if isinstance(vocabulary, np.ndarray) else list(vocabulary)
    other = "w" if isinstance(values[0], str) else 5
    df = pd.DataFrame({"c": [other, other, other, values[1], values[0]]})
    spec = kr.FeatureSpec([kr.Categorical("c", vocabulary=vocabulary)]).adapt(df)
    assert spec["c"].vocabulary == values
    np.testing.assert_array_equal(preprocess(spec, df)["c"], [1, 1, 1, 3, 2])
    assert kr.FeatureSpec.from_json(spec.to_json())["c"].vocabulary == values


@pytest.mark.parametrize(
    "values", [["a", "b", "c", "a", None, "d"], [11, 12, 13, 11, np.nan, 14]], ids=["str", "int"]
)
def test_hashing(preprocess, values):
    """Hashed ids lie in [2, num_bins + 2), depend only on the value; missing -> OOV."""
    df = pd.DataFrame({"c": values})
    spec = kr.FeatureSpec([kr.Categorical("c", num_bins=100_000)]).adapt(df)
    assert spec.input_dim("c") == 100_002
    ids = preprocess(spec, df)["c"]
    present = np.array([0, 1, 2, 3, 5])
    assert ((ids[present] >= 2) & (ids[present] < 100_002)).all()
    assert ids[0] == ids[3]
    assert len(set(ids[present].tolist())) == 4  # 4 distinct values in 100,000 bins
    assert ids[4] == OOV_ID
    rebuilt = kr.FeatureSpec.from_json(spec.to_json())
    np.testing.assert_array_equal(preprocess(rebuilt, df.iloc[::-1])["c"], ids[::-1])


# ---------------------------------------------------------------------- numeric
_NUMERIC_COLUMNS = ["age", "capital_gains", "weeks_worked", "wage_per_hour"]
_NORMALIZATIONS = ["standard", "minmax", None]
_TRANSFORMS = [None, "log1p"]


def _transform(x, transform):
    return np.sign(x) * np.log1p(np.abs(x)) if transform == "log1p" else x


def _normalize(x, fitted_on, normalization):
    if normalization == "standard":
        return (x - fitted_on.mean()) / fitted_on.std()
    if normalization == "minmax":
        return (x - fitted_on.min()) / (fitted_on.max() - fitted_on.min())
    return x


@pytest.fixture(scope="module")
def census_numeric(census_small, preprocess):
    """Every (column, normalization, transform) as a feature, fitted on census train rows."""
    train, test = census_small
    features = [
        kr.Numeric(f"{c}_{n}_{t}", normalization=n, transform=t, column=c)
        for c in _NUMERIC_COLUMNS
        for n in _NORMALIZATIONS
        for t in _TRANSFORMS
    ]
    spec = kr.FeatureSpec(features).adapt(train)
    return spec, preprocess(spec, test)


@pytest.mark.parametrize("transform", _TRANSFORMS)
@pytest.mark.parametrize("normalization", _NORMALIZATIONS)
@pytest.mark.parametrize("column", _NUMERIC_COLUMNS)
def test_numeric_matches_numpy_on_census(
    census_small, census_numeric, column, normalization, transform
):
    """Fitted statistics and normalized outputs equal a numpy computation on real columns."""
    train, test = census_small
    spec, outputs = census_numeric
    name = f"{column}_{normalization}_{transform}"
    fitted_on = _transform(train[column].to_numpy(np.float64), transform)
    feature = spec[name]
    assert feature.mean == pytest.approx(fitted_on.mean(), rel=1e-9)
    assert feature.std == pytest.approx(fitted_on.std(), rel=1e-9)
    assert (feature.min, feature.max) == (fitted_on.min(), fitted_on.max())
    x = _transform(test[column].to_numpy(np.float64), transform)
    expected = _normalize(x, fitted_on, normalization)
    assert outputs[name].dtype == np.float32
    np.testing.assert_allclose(outputs[name], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("transform", _TRANSFORMS)
@pytest.mark.parametrize("normalization", _NORMALIZATIONS)
def test_nan_is_imputed_with_the_training_mean_after_transform(
    census_small, preprocess, normalization, transform
):
    """NaN becomes the mean of the transformed training values, then is normalized."""
    train = census_small[0][["capital_gains"]].copy()
    train.loc[train.index[::7], "capital_gains"] = np.nan
    spec = kr.FeatureSpec(
        [kr.Numeric("capital_gains", normalization=normalization, transform=transform)]
    ).adapt(train)
    observed = train["capital_gains"].dropna().to_numpy(np.float64)
    fitted_on = _transform(observed, transform)
    fill = fitted_on.mean()
    if transform == "log1p":  # the mean of log1p(x), not log1p of the mean
        assert not np.isclose(fill, np.log1p(observed.mean()))
    out = preprocess(spec, pd.DataFrame({"capital_gains": [np.nan, observed[0]]}))
    expected = _normalize(np.array([fill, fitted_on[0]]), fitted_on, normalization)
    np.testing.assert_allclose(out["capital_gains"], expected, rtol=1e-5, atol=1e-6)
    if normalization == "standard":
        assert abs(out["capital_gains"][0]) < 1e-6


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(0).lognormal(size=20_000),
        np.random.default_rng(1).normal(-5.0, 3.0, size=20_000),
    ],
    ids=["lognormal", "normal"],
)
def test_quantile_buckets_are_monotone_and_balanced(preprocess, values):
    """Bucket ids never decrease with the value and each bucket holds about n / buckets rows."""
    df = pd.DataFrame({"v": values})
    spec = kr.FeatureSpec([kr.Numeric("v", buckets=8)]).adapt(df)
    assert spec["v"].input_dim == 8 + 2
    ids = preprocess(spec, df)["v"]
    assert np.all(np.diff(ids[np.argsort(values)]) >= 0)
    counts = np.bincount(ids, minlength=10)
    assert counts[:2].sum() == 0  # never pad or OOV
    np.testing.assert_allclose(counts[2:], len(values) / 8, rtol=0.02)


def test_quantile_buckets_on_census_age(census_small, preprocess):
    """On a real column with ties, bucket ids stay monotone, in range and NaN gets the mean's."""
    train, test = census_small
    spec = kr.FeatureSpec([kr.Numeric("age", buckets=10)]).adapt(train)
    boundaries = spec["age"].boundaries
    assert boundaries == sorted(set(boundaries))
    np.testing.assert_allclose(
        boundaries, np.unique(np.quantile(train["age"], np.linspace(0, 1, 11)[1:-1]))
    )
    ages = np.concatenate([test["age"].to_numpy(np.float64), [np.nan]])
    ids = preprocess(spec, pd.DataFrame({"age": ages}))["age"]
    order = np.argsort(ages[:-1])
    assert np.all(np.diff(ids[:-1][order]) >= 0)
    assert ids.min() >= 2 and ids.max() < spec["age"].input_dim
    assert ids[-1] == 2 + np.searchsorted(boundaries, train["age"].mean(), side="right")


def test_quantile_sample_is_bounded_and_uniform(monkeypatch):
    """With more values than the sample size, boundaries still match the true quantiles."""
    monkeypatch.setattr(spec_module, "_QUANTILE_SAMPLE", 2_000)
    df = pd.DataFrame({"v": np.random.default_rng(5).uniform(0.0, 1.0, 60_000)})

    def fit():
        spec = kr.FeatureSpec([kr.Numeric("v", buckets=10)])
        return spec.adapt(df, batch_size=5_000)["v"].boundaries

    boundaries = fit()
    np.testing.assert_allclose(boundaries, np.linspace(0.1, 0.9, 9), atol=0.05)
    assert fit() == boundaries  # seeded: the same sample every time


# --------------------------------------------------------------------- sequences
_SEQUENCE_ROWS = {
    "str": [["a", "b", "c", "d", "e"], ["g"], [], ["b", "b"]],
    "int": [[1, 2, 3, 4, 5], [7], [], [2, 2]],
}


def _encode(rows, how):
    if how == "lists":
        return rows
    if how == "arrays":
        return [np.array(r) for r in rows]
    return ["|".join(map(str, r)) for r in rows]


@pytest.mark.parametrize("items", ["str", "int"])
@pytest.mark.parametrize("fit_as", ["lists", "strings"])
@pytest.mark.parametrize("read_as", ["lists", "arrays", "strings"])
def test_sequences_keep_latest_items_padded_at_front(preprocess, items, fit_as, read_as):
    """Lists, arrays and '|' strings give the same ids: latest max_length items, front padded."""
    rows = _SEQUENCE_ROWS[items]
    spec = kr.FeatureSpec([kr.Sequence("h", max_length=3)])
    spec.adapt(pd.DataFrame({"h": _encode(rows, fit_as)}))
    feature = spec["h"]
    assert feature.dtype == ("string" if items == "str" else "int64")
    first = rows[3][0]
    assert feature.vocabulary[0] == first  # the most frequent item
    ids = preprocess(spec, pd.DataFrame({"h": _encode(rows, read_as)}))["h"]
    expected = _pad_front(_ids_of(feature.vocabulary, rows), 3)
    assert ids.dtype == np.int32 and ids.shape == (4, 3)
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_array_equal(ids[0], [4, 5, 6])  # c, d, e: the three most recent
    np.testing.assert_array_equal(ids[2], [0, 0, 0])


def test_sequence_missing_rows_and_items(preprocess):
    """A missing row is an empty sequence; a None item in a list is kept as OOV."""
    df = pd.DataFrame({"h": [["a", "b"], None, ["a", None], "a||b"]})
    spec = kr.FeatureSpec([kr.Sequence("h", max_length=3)]).adapt(df)
    assert spec["h"].vocabulary == ["a", "b"]
    ids = preprocess(spec, df)["h"]
    np.testing.assert_array_equal(ids, [[0, 2, 3], [0, 0, 0], [0, 2, 1], [0, 2, 3]])


def test_shared_vocabulary_is_fitted_on_the_union(preprocess):
    """A sequence sharing a categorical's vocabulary uses one id space fitted on both columns."""
    df = pd.DataFrame({"item": ["a", "a", "b"], "hist": [["c", "c"], ["c", "b"], []]})
    spec = kr.FeatureSpec(
        [kr.Sequence("hist", shares_vocabulary_with="item", max_length=2), kr.Categorical("item")]
    ).adapt(df)
    # Counts over both columns: c 3, a 2, b 2 (item alone would give [a, b]).
    assert spec["item"].vocabulary == ["c", "a", "b"]
    assert spec.vocabulary_owner("hist") is spec["item"]
    assert spec.input_dim("hist") == spec.input_dim("item") == 5
    out = preprocess(spec, pd.DataFrame({"item": ["c", "a", "b"], "hist": [["c"], ["a"], ["b"]]}))
    np.testing.assert_array_equal(out["item"], [2, 3, 4])
    np.testing.assert_array_equal(out["hist"][:, -1], out["item"])


# ----------------------------------------------------------------------- crosses
@pytest.fixture(scope="module")
def crossed_frame():
    rng = np.random.default_rng(2)
    return pd.DataFrame(
        {
            "a": rng.choice(["x", "y", "z"], 300),
            "b": rng.choice([1, 2, 3, 4], 300),
            "p": rng.normal(size=300),
        }
    )


def test_crossed_ids_are_deterministic_and_in_range(preprocess, crossed_frame):
    """A cross id is a function of the crossed ids, in [2, num_bins + 2), stable across rebuilds."""
    features = [
        kr.Categorical("a"),
        kr.Categorical("b"),
        kr.Numeric("p", buckets=3),
        kr.Crossed("a_x_b", ["a", "b"], num_bins=1_000_000),
        kr.Crossed("a_x_p", ["a", "p"], num_bins=7),
    ]
    spec = kr.FeatureSpec(features).adapt(crossed_frame)
    out = preprocess(spec, crossed_frame)
    for name, bins in (("a_x_b", 1_000_000), ("a_x_p", 7)):
        assert spec[name].input_dim == bins + 2
        assert out[name].min() >= 2 and out[name].max() < bins + 2
    pairs = pd.DataFrame({"a": out["a"], "b": out["b"], "id": out["a_x_b"]})
    ids_per_pair = pairs.groupby(["a", "b"])["id"].nunique()
    assert (ids_per_pair == 1).all()  # one id per pair
    assert pairs.drop_duplicates(["a", "b"])["id"].nunique() == len(ids_per_pair) == 12
    shuffled = crossed_frame.sample(frac=1.0, random_state=0)
    rebuilt = kr.FeatureSpec.from_json(spec.to_json())
    again = preprocess(rebuilt, shuffled)
    np.testing.assert_array_equal(
        again["a_x_b"], pd.Series(out["a_x_b"], crossed_frame.index)[shuffled.index]
    )


# -------------------------------------------------------------------------- adapt
def _synthetic_frame(n=3_000, seed=0):
    rng = np.random.default_rng(seed)
    items = [f"i{k}" for k in range(40)]
    return pd.DataFrame(
        {
            "user": rng.integers(0, 60, n),
            "city": rng.choice(["paris", "rome", "oslo", "lima"], n),
            "item": rng.choice(items, n),
            "price": rng.lognormal(2.0, 1.0, n).astype(np.float32),
            "hist": [list(rng.choice(items, rng.integers(0, 6))) for _ in range(n)],
        }
    )


def _synthetic_spec():
    return kr.FeatureSpec(
        [
            kr.Categorical("user", min_frequency=2),
            kr.Categorical("city"),
            kr.Categorical("item", max_tokens=30),
            kr.Numeric("price", transform="log1p"),
            kr.Numeric("price_bucket", column="price", buckets=5),
            kr.Sequence("hist", shares_vocabulary_with="item", max_length=4),
            kr.Sequence("tags", column="hist", max_length=2, min_frequency=80),
        ]
    )


def _dataset(df, how):
    columns = {c: df[c].to_numpy() for c in ("user", "city", "item", "price")}
    if how == "strings":
        columns["hist"] = np.array(["|".join(h) for h in df["hist"]])
    else:
        columns["hist"] = tf.ragged.constant(list(df["hist"]), dtype=tf.string)
    if how == "tuples":
        labels = np.zeros(len(df), np.float32)
        return tf.data.Dataset.from_tensor_slices((columns, labels)).batch(700)
    dataset = tf.data.Dataset.from_tensor_slices(columns)
    return dataset if how == "unbatched" else dataset.batch(512)


@pytest.mark.parametrize("how", ["batched", "unbatched", "tuples", "strings"])
def test_adapt_from_dataset_equals_adapt_from_frame(how):
    """A tf.data.Dataset (batched or not, with labels, ragged or string sequences) fits the same."""
    df = _synthetic_frame()
    from_frame = _synthetic_spec().adapt(df)
    from_dataset = _synthetic_spec().adapt(_dataset(df, how))
    _assert_same_state(from_dataset.get_config(), from_frame.get_config())


def test_adapt_on_census_dataset_equals_frame(census_small):
    """The same holds on real census columns (strings, numeric-looking codes, numerics)."""
    train = census_small[0]
    columns = ["education", "det_ind_code", "sex", "age", "capital_gains", "weeks_worked"]

    def spec():
        features = [kr.Categorical(c) for c in columns[:3]]
        features += [kr.Numeric(c, transform="log1p") for c in columns[3:]]
        return kr.FeatureSpec(features)

    dataset = tf.data.Dataset.from_tensor_slices({c: train[c].to_numpy() for c in columns})
    _assert_same_state(
        spec().adapt(dataset.batch(1000)).get_config(), spec().adapt(train).get_config()
    )


def test_adapt_one_million_rows():
    """adapt streams 1,000,000 rows and its statistics equal numpy's on the whole data."""
    n = 1_000_000
    rng = np.random.default_rng(7)
    df = pd.DataFrame(
        {
            "user": rng.integers(0, 200_000, n),
            "city": rng.choice(["a", "b", "c", "d"], n),
            "x": rng.normal(3.0, 2.0, n),
            "xb": rng.exponential(size=n),
        }
    )
    spec = kr.FeatureSpec(
        [
            kr.Categorical("user", min_frequency=2),
            kr.Categorical("city"),
            kr.Numeric("x"),
            kr.Numeric("xb", buckets=16),
        ]
    ).adapt(df)
    counts = df["user"].value_counts()
    vocabulary = spec["user"].vocabulary
    assert set(vocabulary) == set(counts.index[counts >= 2])
    assert np.all(np.diff(counts[vocabulary].to_numpy()) <= 0)  # most frequent first
    assert spec["x"].mean == pytest.approx(df["x"].mean(), rel=1e-6)
    assert spec["x"].std == pytest.approx(df["x"].std(ddof=0), rel=1e-6)
    expected = np.quantile(df["xb"].astype(np.float32), np.linspace(0, 1, 17)[1:-1])
    np.testing.assert_allclose(spec["xb"].boundaries, expected, rtol=1e-6)


# ------------------------------------------------------------------ serialization
def _rich_spec():
    return kr.FeatureSpec(
        [
            kr.Categorical("user", min_frequency=2, embedding_dim=4),
            kr.Categorical("city", vocabulary=["paris", "rome"]),
            kr.Categorical("device", num_bins=20, column="city"),
            kr.Categorical("item", max_tokens=25),
            kr.Numeric("price", transform="log1p"),
            kr.Numeric("price_mm", normalization="minmax", column="price"),
            kr.Numeric("price_b", column="price", buckets=4, embedding_dim=3),
            kr.Sequence("hist", shares_vocabulary_with="item", max_length=3),
            kr.Sequence("tags", column="hist", max_length=2, pooling="max", max_tokens=10),
            kr.Crossed("city_x_price", ["city", "price_b"], num_bins=31),
        ],
        default_embedding_dim=6,
    )


def _evaluation_frame():
    df = _synthetic_frame(n=200, seed=9)
    df.loc[:9, "price"] = np.nan
    df.loc[10:19, "city"] = "unseen-city"
    df.loc[20:29, "user"] = 10_000
    return df


_ROUTES = {
    "config": lambda spec: kr.FeatureSpec.from_config(spec.get_config()),
    "json": lambda spec: kr.FeatureSpec.from_json(spec.to_json()),
    "config-through-json": lambda spec: kr.FeatureSpec.from_config(
        json.loads(json.dumps(spec.get_config()))
    ),
}


@pytest.mark.parametrize("route", sorted(_ROUTES))
def test_serialization_round_trip(preprocess, route):
    """get_config/from_config and to_json/from_json keep the fitted state and the outputs."""
    spec = _rich_spec().adapt(_synthetic_frame())
    restored = _ROUTES[route](spec)
    assert restored.is_adapted
    assert restored.get_config() == spec.get_config()
    assert restored.default_embedding_dim == 6
    assert [restored.embedding_dim(n) for n in ("user", "price_b", "hist")] == [4, 3, 6]
    df = _evaluation_frame()
    expected, actual = preprocess(spec, df), preprocess(restored, df)
    assert expected.keys() == actual.keys()
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)


def test_census_spec_json_round_trip(census_spec, census_small, preprocess):
    """The fitted census spec restored from JSON preprocesses real rows identically."""
    test = census_small[1].head(500)
    restored = kr.FeatureSpec.from_json(census_spec.to_json())
    expected, actual = preprocess(census_spec, test), preprocess(restored, test)
    for name in census_spec.names:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)
