"""FeatureEmbedding: lookups, pooled sequences, numeric fields, shared tables, regularizer."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

import keras_recsys as kr
from keras_recsys.layers import FeatureEmbedding
from keras_recsys.layers.embedding import concat_inputs, stack_fields


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _frame():
    return pd.DataFrame(
        {
            "user": ["u1", "u2", "u1", "u3", "u9"],
            "item": ["a", "b", "c", "a", "b"],
            "hist": [["a", "b"], ["c"], [], ["b", "b", "a", "c"], ["zz"]],
            "age": [20.0, 30.0, 40.0, 50.0, 60.0],
            "income": [1.0, 5.0, 3.0, 2.0, 8.0],
            "price": [1.0, 5.0, 3.0, 2.0, 4.0],
        }
    )


def _spec(pooling="mean"):
    return kr.FeatureSpec(
        [
            kr.Categorical("user", embedding_dim=3),
            kr.Categorical("item", embedding_dim=4),
            kr.Sequence("hist", shares_vocabulary_with="item", max_length=3, pooling=pooling),
            kr.Numeric("age"),
            kr.Numeric("income", normalization=None),
            kr.Numeric("price", buckets=2, embedding_dim=2),
        ]
    ).adapt(_frame())


def _pool(vectors, mask, mode):
    kept = vectors[mask]
    if len(kept) == 0:
        return np.zeros(vectors.shape[-1])
    return {"mean": kept.mean(0), "sum": kept.sum(0), "max": kept.max(0)}[mode]


@pytest.mark.parametrize("pooling", ["mean", "sum", "max"])
def test_lookups_pooling_and_numeric_fields(rng, randomize, pooling):
    """Fields are table rows at the ids; sequences pool the shared table; numerics x_i · v_i."""
    spec = _spec(pooling)
    batch = next(iter(kr.data.from_pandas(_frame(), spec)))
    front = FeatureEmbedding.from_spec(spec, numeric_field_dim=4)
    front(batch)
    randomize(front, rng)
    out = front(batch)
    ids = {name: batch[name].numpy() for name in ("user", "item", "price", "hist")}
    table = {name: _np(layer.embeddings) for name, layer in front.tables.items()}
    for name in ("user", "item", "price"):
        np.testing.assert_allclose(_np(out["fields"][name]), table[name][ids[name]], err_msg=name)
    # The history reads the item table: the same vectors for the same items.
    np.testing.assert_allclose(_np(out["sequences"]["hist"]), table["item"][ids["hist"]])
    mask = ids["hist"] != 0
    np.testing.assert_array_equal(_np(out["masks"]["hist"]), mask)
    pooled = [_pool(table["item"][row], m, pooling) for row, m in zip(ids["hist"], mask)]
    np.testing.assert_allclose(_np(out["fields"]["hist"]), pooled, rtol=1e-5, atol=1e-6)
    assert not mask[2].any() and np.all(_np(out["fields"]["hist"])[2] == 0)
    dense = np.stack([batch["age"].numpy(), batch["income"].numpy()], axis=-1)
    np.testing.assert_allclose(_np(out["dense"]), dense)
    np.testing.assert_array_equal(dense[:, 1], _frame()["income"])  # normalization=None
    vectors = _np(front.numeric_vectors)
    for i, name in enumerate(("age", "income")):
        np.testing.assert_allclose(
            _np(out["fields"][name]), dense[:, i : i + 1] * vectors[i], rtol=1e-6
        )


def test_tables_are_shared_by_name():
    """A sequence sharing a vocabulary adds no table; sizes follow the spec."""
    spec = _spec()
    front = FeatureEmbedding.from_spec(spec)
    assert front.tables_config == {
        "user": [spec.input_dim("user"), 3],
        "item": [spec.input_dim("item"), 4],
        "price": [4, 2],
    }
    front(next(iter(kr.data.from_pandas(_frame(), spec))))
    assert len(front.weights) == 3  # three tables, no numeric vectors without numeric_field_dim
    assert front.field_names == ["user", "item", "price", "hist"]
    assert front.field_dims() == {"user": 3, "item": 4, "price": 2, "hist": 4}
    assert FeatureEmbedding.from_spec(spec, numeric_field_dim=5).field_names[-2:] == [
        "age",
        "income",
    ]


def test_regularizer_penalizes_every_table(rng, randomize):
    """embeddings_regularizer adds l2 · Σ w² over every table and the numeric vectors."""
    spec = _spec()
    batch = next(iter(kr.data.from_pandas(_frame(), spec)))
    front = FeatureEmbedding.from_spec(
        spec, numeric_field_dim=2, embeddings_regularizer=keras.regularizers.L2(0.1)
    )
    front(batch)
    randomize(front, rng)
    front(batch)
    expected = 0.1 * sum(float(np.square(_np(w)).sum()) for w in front.weights)
    assert float(sum(_np(loss) for loss in front.losses)) == pytest.approx(expected, rel=1e-5)


def test_stack_and_concat_helpers(rng):
    """stack_fields gives (B, F, d) and names mismatched sizes; concat_inputs appends dense."""
    fields = {
        "a": rng.normal(size=(2, 3)).astype("float32"),
        "b": rng.normal(size=(2, 3)).astype("float32"),
        "c": rng.normal(size=(2, 5)).astype("float32"),
    }
    np.testing.assert_allclose(
        _np(stack_fields(fields, ["b", "a"])), np.stack([fields["b"], fields["a"]], 1)
    )
    with pytest.raises(ValueError, match=r"same size, got \{'a': 3, 'c': 5\}"):
        stack_fields(fields, ["a", "c"])
    dense = rng.normal(size=(2, 2)).astype("float32")
    x0 = _np(concat_inputs({"fields": fields, "dense": dense}, ["c", "a"]))
    np.testing.assert_allclose(x0, np.concatenate([fields["c"], fields["a"], dense], -1))


def test_config_round_trip(rng, randomize, round_trip):
    """Rebuilt from config (regularizer included) with copied weights: identical outputs."""
    spec = _spec("max")
    batch = next(iter(kr.data.from_pandas(_frame(), spec)))
    front = FeatureEmbedding.from_spec(spec, numeric_field_dim=3, embeddings_regularizer="l2")
    front(batch)
    randomize(front, rng)
    copy = round_trip(front, batch)
    assert isinstance(copy.embeddings_regularizer, keras.regularizers.L2)
    expected, actual = front(batch), copy(batch)
    for part in ("fields", "sequences", "masks"):
        for name in expected[part]:
            np.testing.assert_array_equal(_np(actual[part][name]), _np(expected[part][name]))
    np.testing.assert_array_equal(_np(actual["dense"]), _np(expected["dense"]))
