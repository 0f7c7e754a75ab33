"""Hashed categorical features (`hash_buckets`): ids, options, export and big tables."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import keras_recsys as kr
from keras_recsys.data.pipeline import frame_tensors
from keras_recsys.features import OOV_ID, PAD_ID
from tests.conftest import requires_tensorflow_backend


def _keras_hashing(values, buckets, salt=None) -> np.ndarray:
    """Bucket ids from Keras' own `Hashing` layer: the independent reference."""
    layer = keras.layers.Hashing(num_bins=buckets, salt=salt)
    return np.asarray(tf.convert_to_tensor(layer(tf.constant(values))))


def _frame(n=300, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "user": [f"u{i}" for i in rng.integers(0, 1000, n)],
            "ad": rng.integers(0, 10**12, n),
            "x": rng.normal(size=n),
            "hist": [
                "|".join(f"u{j}" for j in rng.integers(0, 1000, k)) for k in rng.integers(0, 5, n)
            ],
            "click": rng.integers(0, 2, n),
        }
    )


# ------------------------------------------------------------------------- ids
@pytest.mark.parametrize("salt", [None, 7, [1, 2**40]])
def test_hashed_ids_equal_keras_hashing_plus_reserved_ids(preprocess, salt):
    """id = 2 + Keras Hashing bucket of the text (ints through their decimal form); missing -> 1."""
    df = pd.DataFrame(
        {"user": ["a", "b", None, "a", "zzz"], "ad": [5, 123456789012, 5, np.nan, -3]}
    )
    spec = kr.FeatureSpec(
        [
            kr.Categorical("user", hash_buckets=97, hash_salt=salt),
            kr.Categorical("ad", hash_buckets=1000, hash_salt=salt),
        ]
    ).adapt(df)
    assert spec.dtype_of("ad") == "int64" and spec["user"].vocabulary is None
    assert spec.input_dim("user") == 99 and spec.input_dim("ad") == 1002
    ids = preprocess(spec, df)
    users = _keras_hashing(["a", "b", "a", "zzz"], 97, salt) + 2
    np.testing.assert_array_equal(ids["user"], [users[0], users[1], OOV_ID, users[2], users[3]])
    ads = _keras_hashing(["5", "123456789012", "5", "-3"], 1000, salt) + 2
    np.testing.assert_array_equal(ids["ad"], [ads[0], ads[1], ads[2], OOV_ID, ads[3]])
    # The NumPy-side lookup (evaluation targets, candidate lists) agrees.
    np.testing.assert_array_equal(spec.lookup("user", df["user"]), ids["user"])
    np.testing.assert_array_equal(spec.lookup("ad", df["ad"]), ids["ad"])


def test_salt_changes_the_buckets(preprocess):
    """Two salts collide differently; the same salt (or none) gives the same ids every time."""
    df = pd.DataFrame({"c": [f"v{i}" for i in range(200)]})

    def ids(salt):
        spec = kr.FeatureSpec([kr.Categorical("c", hash_buckets=50, hash_salt=salt)]).adapt(df)
        return preprocess(spec, df)["c"]

    np.testing.assert_array_equal(ids(3), ids(3))
    np.testing.assert_array_equal(ids(None), ids(None))
    assert (ids(3) != ids(4)).mean() > 0.5
    assert (ids(3) != ids(None)).mean() > 0.5
    assert ids(3).min() >= 2 and ids(3).max() < 52


def test_hashed_sequence_hashes_items_like_the_categorical(preprocess):
    """A hashed Sequence gives each item the Categorical's bucket, front-padded with 0."""
    df = _frame(50)
    spec = kr.FeatureSpec(
        [
            kr.Categorical("user", hash_buckets=64, hash_salt=9),
            kr.Sequence("hist", max_length=3, hash_buckets=64, hash_salt=9),
        ]
    ).adapt(df)
    out = preprocess(spec, df)
    for row, items in enumerate(df["hist"]):
        kept = [i for i in items.split("|") if i][-3:]
        expected = [PAD_ID] * (3 - len(kept)) + list(
            _keras_hashing(kept or ["x"], 64, 9)[: len(kept)] + 2
        )
        np.testing.assert_array_equal(out["hist"][row], expected)
    lists = [[i for i in items.split("|") if i] for items in df["hist"]]
    np.testing.assert_array_equal(spec.sequence_ids("hist", lists), out["hist"])
    shared = kr.FeatureSpec(
        [
            kr.Categorical("user", hash_buckets=64),
            kr.Sequence("hist", shares_vocabulary_with="user"),
        ]
    ).adapt(df)
    assert shared.input_dim("hist") == 66


def test_hashed_feature_config_round_trip(preprocess):
    """get_config keeps hash_buckets and hash_salt; the rebuilt spec gives the same ids;
    a config written with the former name `num_bins` still loads."""
    df = _frame()
    spec = kr.FeatureSpec(
        [
            kr.Categorical("user", hash_buckets=500, hash_salt=11, embedding_dim=4),
            kr.Categorical("ad", hash_buckets=1000),
            kr.Sequence("hist", max_length=4, hash_buckets=500, hash_salt=11),
        ]
    ).adapt(df)
    config = spec.get_config()
    user = config["features"][0]["config"]
    assert user["hash_buckets"] == 500 and user["hash_salt"] == 11
    assert user["fitted"] == {"dtype": "string"}
    rebuilt = kr.FeatureSpec.from_json(spec.to_json())
    assert rebuilt.get_config() == config
    for name, value in preprocess(spec, df).items():
        np.testing.assert_array_equal(preprocess(rebuilt, df)[name], value, err_msg=name)
    old = kr.Categorical.from_config({"name": "ad", "num_bins": 1000, "fitted": {"dtype": "int64"}})
    assert old.hash_buckets == 1000 and old.get_config()["hash_buckets"] == 1000


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"vocabulary": ["a", "b"]}, "`vocabulary`"),
        ({"min_frequency": 3}, "`min_frequency`"),
        ({"max_tokens": 10}, "`max_tokens`"),
        ({"max_tokens": 10, "min_frequency": 2}, "`min_frequency`, `max_tokens`"),
    ],
)
@pytest.mark.parametrize("kind", [kr.Categorical, kr.Sequence])
def test_hash_buckets_with_vocabulary_options_is_an_error(kind, options, named):
    with pytest.raises(ValueError, match=f"Feature 'ad_id': hash_buckets .* {named}"):
        kind("ad_id", hash_buckets=100, **options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"hash_buckets": 0}, "hash_buckets must be >= 1"),
        ({"hash_salt": 3}, "hash_salt needs hash_buckets"),
        ({"hash_buckets": 10, "hash_salt": -1}, "hash_salt must be an int"),
        ({"hash_buckets": 10, "hash_salt": [1, 2, 3]}, "hash_salt must be an int"),
        ({"hash_buckets": 10, "num_bins": 20}, "`num_bins` is the former name"),
    ],
)
def test_bad_hashing_options(options, message):
    with pytest.raises(ValueError, match=f"Feature 'ad_id': {message}"):
        kr.Categorical("ad_id", **options)


def test_sharing_sequence_cannot_hash_on_its_own():
    with pytest.raises(ValueError, match="Feature 'hist'.*cannot also set"):
        kr.Sequence("hist", shares_vocabulary_with="user", hash_buckets=10)


# ---------------------------------------------------------------------- export
@requires_tensorflow_backend
def test_export_hashes_raw_values_like_the_pipeline(tmp_path):
    """The SavedModel (run in a TF-only process) hashes raw strings, ints and sequence
    items as kr.data does: equal outputs on rows whose values training never saw."""
    train, test = _frame(400, seed=0), _frame(60, seed=1)
    test["user"] = [f"new{i}" for i in range(len(test))]  # unseen everywhere
    test["ad"] = np.arange(len(test)) + 10**13
    test["hist"] = ["new1|new2", "", "u5|new3"] + list(test["hist"][3:])
    spec = kr.FeatureSpec(
        [
            kr.Categorical("user", hash_buckets=2000),
            kr.Categorical("ad", hash_buckets=5000, hash_salt=1234),
            kr.Numeric("x"),
            kr.Sequence("hist", shares_vocabulary_with="user", max_length=3),
        ],
        default_embedding_dim=4,
    ).adapt(train)
    keras.utils.set_random_seed(0)
    model = kr.models.DNN(spec, "click", hidden_units=(8,))
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit(kr.data.from_pandas(train, model, batch_size=128), epochs=1, verbose=0)
    ids = spec.preprocessor(frame_tensors(test, spec, None, False)[0])
    # Unseen values still get real buckets (hashing has no OOV but for missing values).
    assert (ids["user"].numpy() >= 2).all() and (ids["ad"].numpy() >= 2).all()
    path = model.export(str(tmp_path / "hashed"))
    assert kr.export.describe(path)["inputs"]["ad"] == ("int64", [None])
    differences = kr.export.check_export(model, path, test)
    assert differences["click"] <= 1e-5


# -------------------------------------------------------------- big hashed tables
def _train_hashed_table(buckets: int, steps: int = 3, batch: int = 2048):
    """(table before, table after, ids the batches touched) of a DNN on a hashed feature."""
    rng = np.random.default_rng(0)
    n = steps * batch
    df = pd.DataFrame(
        {
            "ad": rng.integers(0, 10**15, n),
            "x": rng.normal(size=n),
            "click": rng.integers(0, 2, n),
        }
    )
    spec = kr.FeatureSpec(
        [kr.Categorical("ad", hash_buckets=buckets, embedding_dim=8), kr.Numeric("x")]
    ).adapt(df)
    keras.utils.set_random_seed(0)
    model = kr.models.DNN(spec, "click", hidden_units=(16,))
    model.compile(optimizer=keras.optimizers.Adagrad(0.5))
    data = kr.data.from_pandas(df, model, batch_size=batch)
    model(next(iter(data))[0])  # builds the tables
    (table,) = [w for w in model.weights if "table_ad" in w.path and w.shape[0] == buckets + 2]
    before = keras.ops.convert_to_numpy(table)
    touched = np.unique(np.concatenate([b[0]["ad"].numpy() for b in data]))
    history = model.fit(data, epochs=1, verbose=0)
    after = keras.ops.convert_to_numpy(table)
    return before, after, touched, history.history["loss"]


def _check_only_touched_rows_changed(buckets: int):
    before, after, touched, loss = _train_hashed_table(buckets)
    assert before.shape == (buckets + 2, 8)
    assert np.isfinite(loss).all()
    changed = np.flatnonzero(np.any(before != after, axis=1))
    # Adagrad moves a row only where its gradient is non-zero: rows no batch
    # looked up keep their initial values exactly.
    assert set(changed) <= set(touched.tolist())
    assert len(changed) >= 0.9 * len(touched)
    assert PAD_ID not in set(changed)


@requires_tensorflow_backend
def test_million_row_hashed_table_updates_only_touched_rows():
    _check_only_touched_rows_changed(1_000_000)


@pytest.mark.slow
@requires_tensorflow_backend
def test_ten_million_row_hashed_table_updates_only_touched_rows():
    _check_only_touched_rows_changed(10_000_000)
