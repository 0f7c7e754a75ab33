"""Input pipelines (pandas, CSV, Parquet) and the bundled census data set and split."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import keras_recsys as kr
from keras_recsys.data.pipeline import frame_tensors
from keras_recsys.datasets import census

_CATEGORICAL = ["education", "det_ind_code", "hisp_origin", "sex", "class_worker"]
_NUMERIC = ["age", "capital_gains"]
_SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data")
_SHARED_CENSUS = os.path.join(_SHARED_DATA, "census_income_kdd", "census-income.test.gz")


@pytest.fixture(scope="module")
def census_rows(census_small):
    """Real census rows: 1,000 train rows to fit on, 700 test rows to read back."""
    train, test = census_small
    return train.head(1000).copy(), test.head(700).reset_index(drop=True)


@pytest.fixture(scope="module")
def subset_spec(census_rows):
    """A census spec on a few columns (string codes, a column with NaN, numerics)."""
    features = [kr.Categorical(c) for c in _CATEGORICAL]
    features += [kr.Numeric(c, transform="log1p") for c in _NUMERIC]
    return kr.FeatureSpec(features).adapt(census_rows[0])


def _tasks():
    return [kr.Task("income"), kr.Task("marital")]


def _numpy(batches):
    """A list of dataset elements as nested numpy structures."""
    return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in batches]


def _concat(batches, index):
    keys = batches[0][index].keys()
    return {k: np.concatenate([b[index][k] for b in batches]) for k in keys}


# --------------------------------------------------------------------- from_pandas
def test_from_pandas_batches(census_rows, subset_spec):
    """(features, labels) batches: int32 ids, float32 numerics, (B, 1) float32 labels, in order."""
    rows = census_rows[1]
    batches = _numpy(kr.data.from_pandas(rows, subset_spec, batch_size=256, tasks=_tasks()))
    assert [len(b[0]["age"]) for b in batches] == [256, 256, 188]
    features, labels = batches[0]
    assert set(features) == set(_CATEGORICAL + _NUMERIC)
    for name in _CATEGORICAL:
        assert features[name].dtype == np.int32 and features[name].shape == (256,)
    for name in _NUMERIC:
        assert features[name].dtype == np.float32 and features[name].shape == (256,)
    assert set(labels) == {"income", "marital"}
    assert all(v.dtype == np.float32 and v.shape == (256, 1) for v in labels.values())
    all_labels = _concat(batches, 1)
    for task in ("income", "marital"):
        np.testing.assert_array_equal(all_labels[task][:, 0], rows[task].to_numpy())
    raw, _, _ = frame_tensors(rows, subset_spec, None, labels=False)
    expected = {k: v.numpy() for k, v in subset_spec.preprocessor(raw).items()}
    all_features = _concat(batches, 0)
    for name in expected:
        np.testing.assert_array_equal(all_features[name], expected[name], err_msg=name)
    assert (all_features["hisp_origin"] == 1).sum() == rows["hisp_origin"].isna().sum()


@pytest.fixture(scope="module")
def tiny():
    """A tiny spec whose numeric 'row' passes through unchanged, to track row order."""
    df = pd.DataFrame(
        {
            "city": np.resize(["paris", "rome", "oslo"], 300),
            "row": np.arange(300, dtype=np.float32),
            "click": np.resize([0, 1, 1, 0, 0], 300),
            "weight": np.linspace(0.5, 2.0, 300),
            "shown": np.resize([1, 0, 1], 300),
        }
    )
    spec = kr.FeatureSpec([kr.Categorical("city"), kr.Numeric("row", normalization=None)])
    return spec.adapt(df), df


def test_from_pandas_reads_a_model(tiny):
    """Given a model, the dataset uses its spec and tasks; labels=False gives features only."""
    spec, df = tiny
    model = kr.models.WideAndDeep(spec, tasks=[kr.Task("click")], hidden_units=[4])
    features, labels = next(iter(kr.data.from_pandas(df, model, batch_size=8)))
    assert set(labels) == {"click"} and labels["click"].shape == (8, 1)
    assert model(features)["click"].shape == (8, 1)
    only_features = next(iter(kr.data.from_pandas(df.drop(columns="click"), model, labels=False)))
    assert isinstance(only_features, dict) and set(only_features) == {"city", "row"}
    # A bare spec without tasks has no labels to read.
    assert isinstance(next(iter(kr.data.from_pandas(df, spec))), dict)


def test_missing_label_column_is_an_error_not_features_only(tiny):
    """A misspelled task label fails in from_pandas, naming the column, the task and the
    close match, instead of silently giving features only (which failed in the loss)."""
    spec, df = tiny
    model = kr.models.WideAndDeep(spec, tasks=[kr.Task("clck")], hidden_units=[4])
    message = (
        r"Label column 'clck' of task 'clck' \(did you mean 'click'\?\) is missing from the "
        r"data; it has columns \[city, row, click, weight, shown\]"
    )
    with pytest.raises(ValueError, match=message):
        kr.data.from_pandas(df, model)
    with pytest.raises(ValueError, match=message):  # e.g. for validation_data
        kr.data.from_pandas(df.head(10), model, batch_size=8)
    features = next(iter(kr.data.from_pandas(df, model, batch_size=8, labels=False)))
    assert set(features) == {"city", "row"}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_files_without_the_label_column(tmp_path, tiny, fmt):
    """from_csv / from_parquet: a missing label column is an error; labels=False reads features."""
    spec, df = tiny
    path = tmp_path / f"rows.{fmt}"
    rows = df.drop(columns="click")
    rows.to_csv(path, index=False) if fmt == "csv" else rows.to_parquet(path)
    reader = kr.data.from_csv if fmt == "csv" else kr.data.from_parquet
    with pytest.raises(ValueError, match=r"Label column 'click' of task 'click' is missing"):
        reader(str(path), spec, 64, tasks="click")
    batch = next(iter(reader(str(path), spec, 64, tasks="click", labels=False)))
    assert set(batch) == {"city", "row"} and len(batch["row"]) == 64


def test_csv_of_a_list_column_is_rejected(tmp_path):
    """A list column written by DataFrame.to_csv comes back as "['a', 'b']" text: an error
    naming the feature, not one unknown item per row."""
    df = pd.DataFrame({"hist": [["a", "b"], ["b"], [], ["c", "a"]], "click": [0, 1, 1, 0]})
    spec = kr.FeatureSpec([kr.Sequence("hist", max_length=3)]).adapt(df)
    path = tmp_path / "rows.csv"
    df.to_csv(path, index=False)
    with pytest.raises(
        ValueError,
        match=r"Sequence feature 'hist': cells look like lists written out as text "
        r"\(e\.g\. \"\['a', 'b'\]\" at row 0\)",
    ):
        kr.data.from_csv(str(path), spec, tasks="click")


def _rows_seen(dataset):
    return np.concatenate([b[0]["row"].numpy() for b in dataset]).astype(int)


def test_shuffle_reshuffles_every_epoch(tiny):
    """shuffle=True gives a new permutation of all rows each epoch; shuffle=False keeps order."""
    spec, df = tiny
    shuffled = kr.data.from_pandas(df, spec, batch_size=64, shuffle=True, seed=3, tasks="click")
    first, second = _rows_seen(shuffled), _rows_seen(shuffled)
    np.testing.assert_array_equal(np.sort(first), np.arange(300))
    np.testing.assert_array_equal(np.sort(second), np.arange(300))
    assert not np.array_equal(first, np.arange(300))
    assert not np.array_equal(first, second)
    ordered = kr.data.from_pandas(df, spec, batch_size=64, tasks="click")
    np.testing.assert_array_equal(_rows_seen(ordered), np.arange(300))


@pytest.mark.parametrize(
    ("tasks", "expected"),
    [
        ([kr.Task("click")], None),
        ([kr.Task("click", mask="shown")], {"click": ["shown"]}),
        ([kr.Task("click", sample_weight="weight")], {"click": ["weight"]}),
        (
            [
                kr.Task("click", sample_weight="weight", mask="shown"),
                kr.Task("other", label="click"),
            ],
            {"click": ["weight", "shown"], "other": []},
        ),
    ],
    ids=["none", "mask", "sample-weight", "both-and-a-plain-task"],
)
def test_sample_weights(tiny, tasks, expected):
    """A task with mask= or sample_weight= adds per-task weights (their product) to each batch."""
    spec, df = tiny
    element = next(iter(kr.data.from_pandas(df, spec, batch_size=300, tasks=tasks)))
    if expected is None:
        assert len(element) == 2
        return
    assert len(element) == 3
    weights = element[2]
    assert set(weights) == set(expected)
    for task, columns in expected.items():
        product = np.prod([df[c].to_numpy(np.float32) for c in columns], axis=0)
        np.testing.assert_allclose(weights[task].numpy(), np.broadcast_to(product, (300,)))


# ------------------------------------------------------------------------ files
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_files_give_the_same_batches_as_from_pandas(tmp_path, census_rows, subset_spec, fmt):
    """Two files read in chunks give exactly from_pandas's batches (sizes, ids, labels)."""
    rows = census_rows[1]
    for i, part in enumerate((rows.iloc[:400], rows.iloc[400:])):
        path = tmp_path / f"part{i}.{fmt}"
        part.to_csv(path, index=False) if fmt == "csv" else part.to_parquet(path)
    reader = kr.data.from_csv if fmt == "csv" else kr.data.from_parquet
    from_files = _numpy(
        reader(str(tmp_path / f"part*.{fmt}"), subset_spec, 128, chunk_rows=150, tasks=_tasks())
    )
    expected = _numpy(kr.data.from_pandas(rows, subset_spec, batch_size=128, tasks=_tasks()))
    assert [len(b[0]["age"]) for b in from_files] == [128] * 5 + [60]
    assert len(from_files) == len(expected)
    for got, want in zip(from_files, expected):
        for part in (0, 1):
            for name in want[part]:
                np.testing.assert_array_equal(got[part][name], want[part][name], err_msg=name)


# ----------------------------------------------------------------- census data set
def _raw_census_rows() -> pd.DataFrame:
    """Every line of the raw file as text, with nothing read as missing."""
    path = _SHARED_CENSUS if os.path.exists(_SHARED_CENSUS) else census.BUNDLED_FILE
    if not os.path.exists(path):
        pytest.skip(f"census file {path} is not present on this machine")
    return pd.read_csv(path, header=None, dtype=str, na_filter=False, skipinitialspace=True)


def test_census_split_matches_the_documented_protocol(census_splits):
    """Rows permuted with numpy default_rng(2026), then 60/20/20: re-derived from the raw file."""
    raw = _raw_census_rows().to_numpy(dtype=object)
    n = len(raw)
    assert raw.shape == (99_762, len(census.COLUMNS))
    order = np.random.default_rng(2026).permutation(n)
    parts = np.split(order, [int(0.6 * n), int(0.8 * n)])
    assert [len(p) for p in census_splits] == [len(p) for p in parts] == [59_857, 19_952, 19_953]
    for frame, index in zip(census_splits, parts):
        for j, column in enumerate(census.COLUMNS):
            expected = raw[index, j]
            if column in census.NUMERIC_COLUMNS or column == "instance_weight":
                np.testing.assert_array_equal(frame[column], expected.astype(np.float32))
            else:
                # The loader strips values ('Handlers equip cleaners etc ' has a trailing space).
                got = frame[column].to_numpy(dtype=object)
                assert (got == np.char.strip(expected.astype(str))).all(), column
        np.testing.assert_array_equal(frame["income"], raw[index, 41] == "50000+.")
        np.testing.assert_array_equal(frame["marital"], raw[index, 7] == "Never married")


def test_census_keeps_the_na_category(census_splits):
    """'NA' is one of hisp_origin's documented values, so it should stay a category."""
    train = census_splits[0]
    assert train["hisp_origin"].notna().all()


@pytest.mark.parametrize(
    ("label", "low", "high"), [("income", 0.05, 0.08), ("marital", 0.40, 0.46)]
)
def test_census_label_rates(census_splits, label, low, high):
    """Label rates are the known ones (income >50k about 6%, never married about 43%) per split."""
    for frame in census_splits:
        assert frame[label].dtype == np.int32
        assert low < frame[label].mean() < high
