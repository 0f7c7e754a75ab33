"""`FusedEmbedding` and `FeatureSpec(fuse_tables=True)`: one array, the same function."""

import keras
import numpy as np
import pandas as pd
import pytest
from keras import ops

import keras_recsys as kr
from keras_recsys.export import check_export
from keras_recsys.layers.fused_embedding import FusedEmbedding
from tests.conftest import requires_tensorflow_backend

pytestmark = pytest.mark.multibackend


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def test_lookup_reads_each_tables_rows_at_its_offset(rng, round_trip):
    fused = FusedEmbedding({"user": 5, "item": 3, "city": 4}, 2)
    fused.build()
    table = rng.normal(size=(12, 2)).astype("float32")
    fused.embeddings.assign(table)
    ids = np.array([[0, 2], [1, 1]])
    np.testing.assert_array_equal(_np(fused.lookup("item", ids)), table[5:8][ids])
    np.testing.assert_array_equal(_np(fused.table("city")), table[8:12])
    user, city = np.array([4, 0, 3]), np.array([3, 1, 0])
    stacked = _np(fused.lookup_stacked([("user", user), ("city", city)]))
    np.testing.assert_array_equal(stacked, np.stack([table[user], table[8 + city]], axis=1))
    out = fused({"item": np.array([2])})
    np.testing.assert_array_equal(_np(out["item"]), table[[7]])
    copy = round_trip(fused, {"item": np.array([2])})
    np.testing.assert_array_equal(_np(copy.lookup("user", user)), table[user])
    with pytest.raises(KeyError, match="no table 'age'.*user"):
        fused.lookup("age", ids)
    with pytest.raises(ValueError, match="need >= 1 row.*'city': 0"):
        FusedEmbedding({"user": 5, "city": 0}, 2)


def test_mixed_precision_gathers_rows_of_the_float32_table():
    """Under mixed_bfloat16 the variable stays float32 and is not cast whole
    when read inside another layer's call (the rows are cast after the gather)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        fused = FusedEmbedding({"a": 3, "b": 2}, 4)
        fused.build()
    finally:
        keras.config.set_dtype_policy(previous)
    assert fused.embeddings.dtype == "float32"
    assert not fused.embeddings._autocast
    assert ops.convert_to_numpy(fused.lookup("b", np.array([1]))).dtype.name == "bfloat16"


def _frame(rows=300, seed=0):
    rng = np.random.default_rng(seed)
    items = [f"i{k}" for k in range(20)]
    return pd.DataFrame(
        {
            "user": rng.choice([f"u{k}" for k in range(30)], rows),
            "item": rng.choice(items, rows),
            "city": rng.choice(["x", "y", "z"], rows),
            "history": [list(rng.choice(items, rng.integers(0, 5))) for _ in range(rows)],
            "age": rng.normal(40, 10, rows),
            "click": rng.integers(0, 2, rows),
        }
    )


def _spec(fuse_tables):
    return kr.FeatureSpec(
        [
            kr.Categorical("user", embedding_dim=8),
            kr.Categorical("item", embedding_dim=8),
            kr.Categorical("city", embedding_dim=4),  # the only width-4 table: not fused
            kr.Sequence("history", shares_vocabulary_with="item", max_length=4),
            kr.Numeric("age"),
        ],
        fuse_tables=fuse_tables,
    )


def test_fused_model_computes_the_unfused_model(tmp_path):
    """Wide & Deep over fused tables (embeddings and first-order weights), given the
    unfused model's weights, predicts the same; the spec option survives save/load."""
    df = _frame()
    plain_spec = _spec(False).adapt(df)
    fused_spec = kr.FeatureSpec.from_config({**plain_spec.get_config(), "fuse_tables": True})
    assert fused_spec.get_config()["fuse_tables"] is True
    assert "fuse_tables" not in plain_spec.get_config()
    plain = kr.models.WideAndDeep(plain_spec, ["click"], hidden_units=(8,))
    fused = kr.models.WideAndDeep(fused_spec, ["click"], hidden_units=(8,))
    front, fused_front = plain.embedding, fused.embedding
    assert set(fused_front.fused) == {"8"} and set(fused_front.tables) == {"city"}
    rng = np.random.default_rng(1)
    for table in front.tables.values():  # random tables, so a wrong row shows
        table.embeddings.assign(rng.normal(size=table.embeddings.shape).astype("float32"))
    linear, fused_linear = plain.backbone.wide, fused.backbone.wide
    for layer in linear.weights_by_feature.values():
        layer.embeddings.assign(rng.normal(size=layer.embeddings.shape).astype("float32"))
    group = fused_front.fused["8"]
    group.embeddings.assign(
        np.concatenate([_np(front.tables[t].embeddings) for t in group.input_dims])
    )
    fused_linear.fused.embeddings.assign(
        np.concatenate(
            [_np(linear.weights_by_feature[n].embeddings) for n in fused_linear.id_features]
        )
    )
    by_path = {v.path: v for v in plain.weights}
    for variable in fused.weights:
        if variable.path in by_path:
            variable.assign(_np(by_path[variable.path]))
    assert plain.count_params() == fused.count_params()
    x = kr.data.preprocess(df, plain).features
    expected = _np(plain.predict(x, verbose=0)["click"])
    np.testing.assert_allclose(_np(fused.predict(x, verbose=0)["click"]), expected, atol=1e-6)
    path = str(tmp_path / "fused.keras")
    fused.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.spec.fuse_tables and loaded.embedding.fused
    np.testing.assert_allclose(_np(loaded.predict(x, verbose=0)["click"]), expected, atol=1e-6)


@requires_tensorflow_backend
def test_fused_model_exports_and_serves_raw_values(tmp_path):
    """The export of a fused-tables model takes the same raw values and answers like
    the model in a TensorFlow-only process (unseen values included)."""
    df = _frame()
    spec = _spec(True).adapt(df)
    model = kr.models.WideAndDeep(spec, ["click"], hidden_units=(8,))
    model.compile(optimizer="adam")
    model.fit(kr.data.from_pandas(df, model, batch_size=64), epochs=1, verbose=0)
    path = model.export(str(tmp_path / "export"))
    rows = _frame(rows=40, seed=1)
    rows.loc[0, "user"] = "never-seen"
    rows.at[1, "history"] = ["i3", "unknown-item"]
    differences = check_export(model, path, rows)
    assert max(differences.values()) <= 1e-5
