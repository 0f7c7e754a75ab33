"""LinearTerm against a manual sum of per-id weights, sequence means and the dense part."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

import keras_recsys as kr
from keras_recsys.layers import LinearTerm


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _inputs(rng):
    return {
        "user": np.array([2, 3, 1, 4]),
        "city": np.array([3, 2, 2, 1]),
        "hist": np.array([[0, 2, 3], [4, 4, 1], [0, 0, 0], [0, 0, 2]]),  # row 2 empty
    }, rng.normal(size=(4, 2)).astype("float32")


@pytest.mark.parametrize("units", [1, 3])
def test_matches_manual_sum(rng, randomize, units):
    """Σ_f w_f[id_f] + mean over unpadded items of w_s + dense · W + b, per output unit."""
    inputs, dense = _inputs(rng)
    layer = LinearTerm({"user": 5, "city": 4}, {"hist": 5}, num_dense=2, units=units)
    layer(inputs, dense)
    randomize(layer, rng)
    w = {name: _np(e.embeddings) for name, e in layer.weights_by_feature.items()}
    expected = w["user"][inputs["user"]] + w["city"][inputs["city"]]
    for row, ids in enumerate(inputs["hist"]):
        items = ids[ids != 0]
        if len(items):
            expected[row] += w["hist"][items].mean(0)
    expected += dense @ _np(layer.dense_layer.kernel) + _np(layer.bias)
    out = _np(layer(inputs, dense))
    assert out.shape == (4, units)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_starts_at_zero(rng):
    """Id weights and the bias start at zero: an untrained wide part outputs 0 for any ids."""
    inputs, dense = _inputs(rng)
    layer = LinearTerm({"user": 5}, {"hist": 5})
    np.testing.assert_array_equal(_np(layer(inputs)), 0.0)


def test_from_spec_sizes():
    """from_spec weighs categorical, bucketized and crossed ids, sequences and dense features."""
    df = pd.DataFrame(
        {
            "user": ["a", "b", "c", "a"],
            "price": [1.0, 2.0, 3.0, 4.0],
            "age": [10.0, 20.0, 30.0, 40.0],
            "hist": [["a"], ["b", "c"], [], ["z"]],
        }
    )
    spec = kr.FeatureSpec(
        [
            kr.Categorical("user"),
            kr.Numeric("price", buckets=2),
            kr.Numeric("age"),
            kr.Sequence("hist", shares_vocabulary_with="user", max_length=2),
            kr.Crossed("user_x_price", ["user", "price"], num_bins=11),
        ]
    ).adapt(df)
    layer = LinearTerm.from_spec(spec, units=2)
    assert layer.id_features == {
        "user": spec.input_dim("user"),
        "price": spec.input_dim("price"),
        "user_x_price": 13,
    }
    assert layer.sequence_features == {"hist": spec.input_dim("user")}
    assert layer.num_dense == 1 and layer.units == 2
    batch = next(iter(kr.data.from_pandas(df, spec)))
    assert layer(batch, keras.ops.expand_dims(batch["age"], -1)).shape == (4, 2)


def test_no_feature_is_an_error():
    """A linear term with nothing to weigh says so."""
    with pytest.raises(ValueError, match="LinearTerm has no feature to weigh"):
        LinearTerm({})({})


def test_config_round_trip(rng, randomize, round_trip):
    """Rebuilt from config with copied weights, the term computes the same values."""
    inputs, dense = _inputs(rng)
    layer = LinearTerm({"user": 5, "city": 4}, {"hist": 5}, num_dense=2, units=2)
    layer(inputs, dense)
    randomize(layer, rng)
    copy = round_trip(layer, inputs, dense)
    np.testing.assert_allclose(_np(copy(inputs, dense)), _np(layer(inputs, dense)), rtol=1e-6)
