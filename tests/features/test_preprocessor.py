"""The TF preprocessor on serving-style raw tensors (what the exported signature feeds it)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import keras_recsys as kr
from keras_recsys.features import OOV_ID


@pytest.fixture(scope="module")
def fitted():
    """A small spec of every kind, fitted on a frame with missing values."""
    df = pd.DataFrame(
        {
            "user": [10, 20, 20, 30, 30, 30],
            "city": ["paris", "rome", "rome", "oslo", "oslo", None],
            "price": [1.0, 2.0, np.nan, 4.0, 100.0, 7.0],
            "hist": [["a", "b"], ["b"], [], ["c", "a", "b"], ["a"], ["b", "b"]],
        }
    )
    spec = kr.FeatureSpec(
        [
            kr.Categorical("user"),
            kr.Categorical("city"),
            kr.Categorical("city_hash", column="city", num_bins=50),
            kr.Numeric("price", transform="log1p"),
            kr.Numeric("price_b", column="price", buckets=3),
            kr.Sequence("hist", max_length=2),
            kr.Crossed("user_x_city", ["user", "city"], num_bins=100),
        ]
    )
    return spec.adapt(df), df


def _serving_inputs(**overrides):
    """One serving request: every feature a (B,) tensor, sequences as '|' strings."""
    inputs = {
        "user": tf.constant([30, 10, 99], tf.int64),
        "city": tf.constant(["oslo", "paris", "atlantis"]),
        "city_hash": tf.constant(["oslo", "", "atlantis"]),
        "price": tf.constant([4.0, np.nan, np.inf], tf.float32),
        "price_b": tf.constant([1.0, 50.0, -np.inf], tf.float32),
        "hist": tf.constant(["a|b|c", "", "zzz|a"]),
    }
    inputs.update(overrides)
    return inputs


def test_input_signature_types(fitted):
    """The serving signature takes fitted dtypes: int64/str ids, float32, delimited strings."""
    spec, _ = fitted
    signature = spec.preprocessor.input_signature()
    assert set(signature) == {"user", "city", "city_hash", "price", "price_b", "hist"}
    dtypes = {name: s.dtype for name, s in signature.items()}
    assert dtypes == {
        "user": tf.int64,
        "city": tf.string,
        "city_hash": tf.string,
        "price": tf.float32,
        "price_b": tf.float32,
        "hist": tf.string,
    }
    assert all(s.shape.as_list() == [None] for s in signature.values())


def test_serving_inputs_map_unseen_and_missing_values(fitted):
    """Unseen ids go to OOV, missing/inf numerics are imputed, sequences parse from strings."""
    spec, df = fitted
    out = {k: v.numpy() for k, v in spec.preprocessor(_serving_inputs()).items()}
    user_vocab, city_vocab = spec["user"].vocabulary, spec["city"].vocabulary
    np.testing.assert_array_equal(
        out["user"], [2 + user_vocab.index(30), 2 + user_vocab.index(10), OOV_ID]
    )
    np.testing.assert_array_equal(
        out["city"], [2 + city_vocab.index("oslo"), 2 + city_vocab.index("paris"), OOV_ID]
    )
    assert out["city_hash"][1] == OOV_ID  # the empty string is a missing value
    assert out["city_hash"][0] >= 2 and out["city_hash"][2] >= 2
    price = spec["price"]
    np.testing.assert_allclose(out["price"], [(np.log1p(4.0) - price.mean) / price.std, 0, 0])
    price_b = spec["price_b"]
    fill_bucket = 2 + np.searchsorted(price_b.boundaries, price_b.fill_value, side="right")
    assert out["price_b"][2] == fill_bucket  # -inf at serving time is imputed, not bucket 0
    hist_vocab = spec["hist"].vocabulary
    np.testing.assert_array_equal(
        out["hist"],
        [
            [2 + hist_vocab.index("b"), 2 + hist_vocab.index("c")],
            [0, 0],
            [OOV_ID, 2 + hist_vocab.index("a")],
        ],
    )
    assert (out["user_x_city"] >= 2).all() and (out["user_x_city"] < 102).all()


def test_serving_inputs_equal_the_dataframe_path(fitted, preprocess):
    """The same rows give the same model inputs from a DataFrame and from raw tensors."""
    spec, df = fitted
    rows = df.dropna().reset_index(drop=True)
    from_frame = preprocess(spec, rows)
    inputs = {
        "user": tf.constant(rows["user"].to_numpy(np.int64)),
        "city": tf.constant(rows["city"].tolist()),
        "city_hash": tf.constant(rows["city"].tolist()),
        "price": tf.constant(rows["price"].to_numpy(np.float32)[:, None]),  # (B, 1) is accepted
        "price_b": tf.constant(rows["price"].to_numpy(np.float32)),
        "hist": tf.constant(["|".join(h) for h in rows["hist"]]),
    }
    from_tensors = spec.preprocessor(inputs)
    for name, expected in from_frame.items():
        np.testing.assert_array_equal(from_tensors[name].numpy(), expected, err_msg=name)


def test_int_feature_accepts_numeric_strings(fitted):
    """An int64 categorical fed as strings (e.g. from a CSV client) is parsed, not OOV."""
    spec, _ = fitted
    as_ints = spec.preprocessor(_serving_inputs())["user"].numpy()
    as_strings = spec.preprocessor(_serving_inputs(user=tf.constant(["30", "10", "99"])))["user"]
    np.testing.assert_array_equal(as_strings.numpy(), as_ints)


def test_unparsable_integer_strings_become_oov(fitted):
    """An int64 categorical fed a string that is no int64 ("abc", "12,7", 20 digits)
    reads the OOV id, like an unseen value, and the rest of the batch is unchanged
    (the rule the serving signature's joined sequences rely on)."""
    spec, _ = fitted
    known = spec.preprocessor(_serving_inputs(user=tf.constant([30, 10, 99], tf.int64)))["user"]
    thirty, ten = known.numpy()[:2]
    for sent, expected in [
        (["30", "abc", "10,20"], [thirty, OOV_ID, OOV_ID]),
        ([" 10 ", "99999999999999999999", "+010"], [ten, OOV_ID, ten]),
    ]:
        ids = spec.preprocessor(_serving_inputs(user=tf.constant(sent)))["user"].numpy()
        np.testing.assert_array_equal(ids, expected, err_msg=str(sent))


def test_runs_in_a_traced_function(fitted):
    """The preprocessor traces under tf.function with the serving signature (export path)."""
    spec, _ = fitted
    preprocessor = spec.preprocessor
    traced = tf.function(preprocessor.__call__, input_signature=[preprocessor.input_signature()])
    eager = preprocessor(_serving_inputs())
    graph = traced(_serving_inputs())
    for name in eager:
        np.testing.assert_array_equal(graph[name].numpy(), eager[name].numpy(), err_msg=name)


def _without_price():
    inputs = _serving_inputs()
    del inputs["price"]
    return inputs


@pytest.mark.parametrize(
    ("inputs", "error", "pattern"),
    [
        (_without_price, KeyError, "Feature 'price' is missing from the input"),
        (
            lambda: _serving_inputs(hist=tf.constant([1, 2, 3])),
            TypeError,
            "Sequence feature 'hist' takes a RaggedTensor or a 1-D string tensor",
        ),
    ],
    ids=["missing-feature", "int-sequence"],
)
def test_bad_raw_tensors(fitted, inputs, error, pattern):
    """A request missing a feature, or with a sequence of the wrong type, names the feature."""
    spec, _ = fitted
    with pytest.raises(error, match=pattern):
        spec.preprocessor(inputs())
