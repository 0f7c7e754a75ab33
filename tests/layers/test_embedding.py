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


def _many_ids(spec, rng, rows=4000):
    """Preprocessed inputs of `rows` examples: only real ids (>= 2), padded histories."""
    item_dim, user_dim = spec.input_dim("item"), spec.input_dim("user")
    hist = rng.integers(2, item_dim, size=(rows, 3)).astype("int32")
    hist[rng.random((rows, 3)) < 0.3] = 0  # padding
    return {
        "user": rng.integers(2, user_dim, size=rows).astype("int32"),
        "item": rng.integers(2, item_dim, size=rows).astype("int32"),
        "hist": hist,
        "price": rng.integers(2, spec.input_dim("price"), size=rows).astype("int32"),
        "age": rng.normal(size=rows).astype("float32"),
        "income": rng.normal(size=rows).astype("float32"),
    }


def _rows_read(vectors, table):
    """The row of `table` each vector of `vectors` (..., d) is (exact lookups)."""
    match = np.all(vectors[..., None, :] == table, axis=-1)
    assert np.all(match.sum(-1) == 1), "every vector is exactly one table row"
    return match.argmax(-1)


@pytest.mark.multibackend
def test_oov_dropout_replaces_real_ids_in_training_only(rng, randomize):
    """In training each real id becomes OOV (1) at about the rate; padding stays
    padding, bucketized numerics are left alone, and inference reads the ids as given."""
    spec = _spec()
    inputs = _many_ids(spec, rng)
    front = FeatureEmbedding.from_spec(spec, oov_dropout=0.2, seed=3)
    assert front.oov_dropout_features == ["user", "item", "hist"]  # not "price"
    front(inputs)
    randomize(front, rng)
    table = {name: _np(layer.embeddings) for name, layer in front.tables.items()}

    out = front(inputs, training=True)
    read = {name: _rows_read(_np(out["fields"][name]), table[name]) for name in ("user", "item")}
    read["hist"] = _rows_read(_np(out["sequences"]["hist"]), table["item"])
    read["price"] = _rows_read(_np(out["fields"]["price"]), table["price"])
    for name in ("user", "item", "hist"):
        given, real = inputs[name], inputs[name] >= 2
        dropped = read[name] == 1
        # Every id read is the one given or OOV; padding is still padding (and masked).
        assert np.all((read[name] == given) | (dropped & real)), name
        # 4,000 (user, item) or ~8,400 (hist) Bernoulli(0.2) draws: sd <= 0.0064.
        rate = dropped[real].mean()
        assert abs(rate - 0.2) < 0.04, (name, rate)
    np.testing.assert_array_equal(_np(out["masks"]["hist"]), inputs["hist"] != 0)
    np.testing.assert_array_equal(read["price"], inputs["price"])
    # Different draws for the user and item columns (one generator, advancing).
    assert np.mean((read["user"] == 1) == (read["item"] == 1)) < 0.9

    expected = {name: table[name][inputs[name]] for name in ("user", "item", "price")}
    for training in (False, None):
        out = front(inputs, training=training)
        for name, vectors in expected.items():
            np.testing.assert_array_equal(_np(out["fields"][name]), vectors, err_msg=name)
        np.testing.assert_array_equal(_np(out["sequences"]["hist"]), table["item"][inputs["hist"]])
    # Without a rate (the default) training reads the ids as given too.
    plain = FeatureEmbedding.from_spec(spec)
    plain(inputs)
    plain.set_weights(front.get_weights())
    out = plain(inputs, training=True)
    np.testing.assert_array_equal(_np(out["fields"]["user"]), expected["user"])


class Scorer(keras.Model):
    """One logit from a FeatureEmbedding, passed `training` as a model must pass it."""

    def __init__(self, front):
        super().__init__(name="scorer")
        self.front = front
        self.out = keras.layers.Dense(1)

    def call(self, inputs, training=None):
        # Explicitly: JAX's `fit` runs this `call` outside Keras' call context,
        # so a front end called without `training` would not know it trains.
        embedded = self.front(inputs, training=training)
        return self.out(concat_inputs(embedded, self.front.field_names))


@pytest.mark.multibackend
@pytest.mark.parametrize("rate", [0.0, 0.3])
def test_oov_row_is_trained_only_with_oov_dropout(rng, rate):
    """Data without an OOV id: `fit` (compiled) moves row 1 of the tables only when
    oov_dropout > 0; the other rows train either way."""
    spec = _spec()
    batch = {k: np.asarray(v) for k, v in next(iter(kr.data.from_pandas(_frame(), spec))).items()}
    assert all(np.all(batch[name] != 1) for name in ("user", "item", "hist"))
    keras.utils.set_random_seed(0)
    model = Scorer(FeatureEmbedding.from_spec(spec, oov_dropout=rate, seed=1))
    model(batch)
    before = {name: _np(layer.embeddings).copy() for name, layer in model.front.tables.items()}
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    inputs = {k: np.repeat(v, 40, axis=0) for k, v in batch.items()}
    labels = rng.normal(size=(len(inputs["user"]), 1)).astype("float32")
    model.fit(inputs, labels, batch_size=50, epochs=2, verbose=0)
    for name in ("user", "item"):
        after = _np(model.front.tables[name].embeddings)
        assert np.any(after[2:] != before[name][2:]), name  # the model trained
        moved = not np.array_equal(after[1], before[name][1])
        assert moved == (rate > 0), (name, rate)
    # Bucket ids are never out of vocabulary, so their row 1 is never dropped to.
    np.testing.assert_array_equal(
        _np(model.front.tables["price"].embeddings)[1], before["price"][1]
    )


def test_oov_dropout_config_round_trip_and_errors(rng, randomize, round_trip):
    """oov_dropout, its features and seed survive the config; bad values name the layer."""
    spec = _spec()
    batch = next(iter(kr.data.from_pandas(_frame(), spec)))
    front = FeatureEmbedding.from_spec(spec, oov_dropout=0.05, seed=7, name="front")
    front(batch)
    randomize(front, rng)
    copy = round_trip(front, batch)
    assert (copy.oov_dropout, copy.oov_dropout_features, copy.seed) == (
        0.05,
        ["user", "item", "hist"],
        7,
    )
    np.testing.assert_array_equal(
        _np(copy(batch)["fields"]["user"]), _np(front(batch)["fields"]["user"])
    )
    # Without a rate the config is what it was before the option existed.
    assert "oov_dropout" not in FeatureEmbedding.from_spec(spec).get_config()
    with pytest.raises(ValueError, match=r"'front': oov_dropout must be in \[0, 1\), got 1.0"):
        FeatureEmbedding.from_spec(spec, oov_dropout=1.0, name="front")
    with pytest.raises(ValueError, match=r"oov_dropout_features names \['age'\]"):
        FeatureEmbedding.from_spec(spec, oov_dropout=0.1, oov_dropout_features=["user", "age"])
