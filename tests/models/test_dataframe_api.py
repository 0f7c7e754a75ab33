"""DataFrames in, consistent shapes out: `fit`/`evaluate`/`predict` on a DataFrame,
served shapes from `predict` as from the export, a real `summary`, and class
imbalance (`Task(pos_weight=...)`, Keras' `class_weight`).

Real census rows; a binary (income), a regression (log wage) and a
multiclass task (age band) cover the three pointwise kinds.
"""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest
from keras import ops

import keras_recsys as kr
from tests.conftest import requires_tensorflow_backend
from tests.models.test_logit_losses import gradient

KINDS = [
    kr.Task("income"),
    kr.Task("wage", kind="regression"),
    kr.Task("age_band", kind="multiclass", num_classes=3),
]


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def with_targets(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["wage"] = np.log1p(df["wage_per_hour"]).astype("float32")
    df["age_band"] = (df["age"].to_numpy() // 25).clip(0, 2).astype("int32")
    return df


@pytest.fixture(scope="module")
def data(census_small):
    train, test = census_small
    return with_targets(train.head(1024)), with_targets(test.head(256))


@pytest.fixture(scope="module")
def spec(data):
    features = [
        kr.Categorical("education"),
        kr.Categorical("sex"),
        kr.Numeric("age"),
        kr.Numeric("capital_gains", buckets=4),
    ]
    return kr.FeatureSpec(features, default_embedding_dim=4).adapt(data[0])


def dnn(spec, tasks=KINDS, seed=0):
    keras.utils.set_random_seed(seed)
    model = kr.models.DNN(spec, tasks, hidden_units=[8])
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    return model


class CountBatches(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


# ------------------------------------------------------------------ DataFrames
def test_fit_evaluate_predict_take_a_dataframe(spec, data):
    train, valid = data
    model = dnn(spec)
    counter = CountBatches()
    history = model.fit(
        train, validation_data=valid, epochs=2, batch_size=256, verbose=0, callbacks=[counter]
    ).history
    assert counter.batches == 2 * 4  # batch_size honoured: 1024 rows / 256
    assert history["loss"][-1] < history["loss"][0]
    assert {"val_income_auc", "val_wage_rmse", "val_age_band_accuracy"} <= set(history)
    # The DataFrame goes exactly where kr.data.from_pandas goes.
    by_frame = model.evaluate(valid, verbose=0, return_dict=True)
    by_dataset = model.evaluate(kr.data.from_pandas(valid, model), verbose=0, return_dict=True)
    assert by_frame == pytest.approx(by_dataset, rel=1e-6)
    predicted = model.predict(valid.drop(columns=["income", "wage", "age_band"]), verbose=0)
    want = model.predict(kr.data.from_pandas(valid, model, labels=False), verbose=0)
    for name in want:
        np.testing.assert_allclose(predicted[name], want[name], rtol=1e-6)


def test_fit_on_a_dataframe_shuffles_as_asked(spec, data):
    """shuffle=False trains exactly as the unshuffled pipeline; the default reshuffles."""
    train = data[0].head(512)

    def weights_after(x, **kwargs):
        model = dnn(spec)
        model.fit(x, epochs=1, batch_size=64, verbose=0, **kwargs)
        return [_np(w) for w in model.weights]

    plain = weights_after(kr.data.from_pandas(train, spec, batch_size=64, tasks=KINDS))
    unshuffled = weights_after(train, shuffle=False)
    shuffled = weights_after(train)
    for a, b in zip(plain, unshuffled):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(a, b, atol=1e-6) for a, b in zip(plain, shuffled))


def test_validation_split_holds_out_the_last_rows(spec, data):
    train = data[0].head(512)
    model = dnn(spec)
    history = model.fit(train, validation_split=0.25, epochs=1, shuffle=False, verbose=0)
    held_out = model.evaluate(train.tail(128), verbose=0, return_dict=True)
    assert history.history["val_income_auc"][0] == pytest.approx(held_out["income_auc"])


def test_a_dataframe_brings_its_own_labels(spec, data):
    model = dnn(spec)
    with pytest.raises(ValueError, match="do not pass `y`"):
        model.fit(data[0], data[0]["income"].to_numpy(), verbose=0)
    with pytest.raises(ValueError, match="label.*'wage'|'wage'.*missing"):
        model.fit(data[0].drop(columns=["wage"]), verbose=0)


def test_raw_arrays_get_a_clear_error(spec, data):
    model = dnn(spec)
    rows = data[1].head(32)
    raw = {name: rows[name].to_numpy() for name in ["education", "sex", "age", "capital_gains"]}
    with pytest.raises(ValueError, match=r"Feature 'education' holds .*raw.*from_pandas"):
        model.predict(raw, verbose=0)
    with pytest.raises(ValueError, match=r"Feature 'education' holds .*raw"):
        model.fit(raw, {t.name: rows[t.label].to_numpy() for t in KINDS}, verbose=0)
    with pytest.raises(TypeError, match=r"dict of preprocessed.*DataFrame"):
        model.predict(rows[["age"]].to_numpy(), verbose=0)
    # Raw integer codes where ids are expected: outside the vocabulary's range.
    ids = kr.data.to_numpy(rows, model)
    with pytest.raises(ValueError, match=r"Feature 'capital_gains' holds ids outside \[0, "):
        model.predict(dict(ids, capital_gains=np.full(32, 10_000)), verbose=0)
    with pytest.raises(KeyError, match=r"no feature\(s\) \['sex'\]"):
        model.predict({k: v for k, v in ids.items() if k != "sex"}, verbose=0)
    # Preprocessed arrays are what the model reads: they pass.
    assert model.predict(ids, verbose=0)["income"].shape == (32,)


# --------------------------------------------------------------------- shapes
@pytest.mark.multibackend
def test_predict_returns_the_served_shapes(spec, data):
    """(B,) for binary and regression tasks, (B, C) for multiclass: predict,
    predict_on_batch and predict_outputs alike; the probabilities of the logits."""
    model = dnn(spec)
    rows = data[1].head(40)
    x = kr.data.to_numpy(rows, model)
    logits = {k: _np(v) for k, v in model(x).items()}
    for outputs in (
        model.predict(rows, verbose=0),
        model.predict(x, batch_size=16, verbose=0),
        model.predict_on_batch(x),
        {k: _np(v) for k, v in model.predict_outputs(x).items()},
    ):
        assert {k: v.shape for k, v in outputs.items()} == {
            "income": (40,),
            "wage": (40,),
            "age_band": (40, 3),
        }
        np.testing.assert_allclose(
            outputs["income"], 1 / (1 + np.exp(-logits["income"][:, 0])), rtol=1e-5
        )
        np.testing.assert_allclose(outputs["wage"], logits["wage"][:, 0], rtol=1e-5, atol=1e-6)
        softmax = np.exp(logits["age_band"]) / np.exp(logits["age_band"]).sum(-1, keepdims=True)
        np.testing.assert_allclose(outputs["age_band"], softmax, rtol=1e-5)


@requires_tensorflow_backend
def test_predict_matches_the_export_in_shape_and_value(spec, data, tmp_path):
    import tensorflow as tf

    model = dnn(spec)
    rows = data[1].head(16)
    path = model.export(str(tmp_path / "dnn"))
    serving = tf.saved_model.load(path).signatures["serving_default"]
    inputs = kr.export.serving_inputs(spec, rows)
    served = serving(
        **{k: tf.constant(v.tolist() if v.dtype == object else v) for k, v in inputs.items()}
    )
    predicted = model.predict(rows, verbose=0)
    for name, value in predicted.items():
        assert value.shape == tuple(served[name].shape), name
        np.testing.assert_allclose(value, served[name].numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.multibackend
def test_summary_shows_real_output_shapes(spec):
    model = dnn(spec)
    lines = []
    model.summary(print_fn=lambda line, **_: lines.append(line))
    text = "\n".join(lines)
    table = text.split("Total params")[0]
    assert "?" not in table  # dict-output layers (embedding, heads) included
    assert "(2," not in table  # not the dummy build batch
    assert "(None, 8)" in table  # the MLP's hidden output
    assert "(None, 3)" in table  # the multiclass head's logits
    assert (
        "Served outputs (predict, export): income (None,) float32, wage (None,) float32, "
        "age_band (None, 3) float32"
    ) in text
    # The heads give their shapes without a traced call, too.
    assert model.heads.compute_output_shape((None, 8)) == {
        "income": (None, 1),
        "wage": (None, 1),
        "age_band": (None, 3),
    }


# ------------------------------------------------------------ class imbalance
def weighted_bce_numpy(y, z, w):
    """−[w·y·log σ(z) + (1−y)·log(1−σ(z))], float64, stable for any z."""
    y, z = np.asarray(y, np.float64), np.asarray(z, np.float64)
    log_p, log_not_p = -np.logaddexp(0, -z), -np.logaddexp(0, z)
    return -(w * y * log_p + (1 - y) * log_not_p)


@pytest.mark.multibackend
@pytest.mark.parametrize("pos_weight", [1.0, 7.5, 0.2])
def test_pos_weight_loss_and_gradient_match_numpy(pos_weight):
    loss = kr.Task("click", pos_weight=pos_weight).make_loss()
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(0, 3, 14), [-40.0, 40.0]]).astype("float32").reshape(-1, 1)
    y = np.tile([0.0, 1.0], 8).astype("float32").reshape(-1, 1)
    got = _np(loss(y, z))
    np.testing.assert_allclose(got, weighted_bce_numpy(y, z, pos_weight).mean(), rtol=1e-5)
    (g,) = gradient(lambda logits: loss(y, logits), z)
    # dℓ/dz = (1−y) − (1 + (w−1)·y)·σ(−z), averaged over the batch.
    sigma_minus = 1 / (1 + np.exp(z.astype(np.float64)))
    want = ((1 - y) - (1 + (pos_weight - 1) * y) * sigma_minus) / len(z)
    np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-7)
    if pos_weight == 1.0:  # the plain binary cross-entropy from logits
        plain = keras.losses.BinaryCrossentropy(from_logits=True)(y, z)
        np.testing.assert_allclose(got, _np(plain), rtol=1e-5)


def test_pos_weight_is_the_models_loss_and_round_trips(spec, data):
    task = kr.Task("income", pos_weight=4.0)
    assert kr.Task.from_config(task.get_config()).pos_weight == 4.0
    assert task.get_config()["pos_weight"] == 4.0
    assert "pos_weight" not in kr.Task("income").get_config()
    model = dnn(spec, [task])
    clone = kr.models.DNN.from_config(model.get_config())
    assert clone.tasks[0].pos_weight == 4.0
    x, y = next(iter(kr.data.from_pandas(data[1].head(64), model, batch_size=64)))
    logits = model(x)
    want = weighted_bce_numpy(_np(y["income"]), _np(logits["income"]), 4.0).mean()
    np.testing.assert_allclose(_np(model.compute_loss(x, y, logits)), want, rtol=1e-5)


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        ({"pos_weight": 0}, ValueError, "finite number > 0"),
        ({"pos_weight": -2.0}, ValueError, "finite number > 0"),
        ({"pos_weight": float("inf")}, ValueError, "finite number > 0"),
        ({"pos_weight": float("nan")}, ValueError, "finite number > 0"),
        ({"pos_weight": "3"}, TypeError, "positive number"),
        ({"pos_weight": True}, TypeError, "positive number"),
        ({"pos_weight": 2.0, "kind": "regression"}, ValueError, "only for binary"),
        ({"pos_weight": 2.0, "loss": "mse"}, ValueError, "custom `loss`"),
    ],
)
def test_pos_weight_is_validated(arguments, error, message):
    with pytest.raises(error, match=message):
        kr.Task("click", **arguments)


def test_class_weight_equals_per_example_weights(spec, data):
    """class_weight on a one-task model trains exactly as a sample_weight column
    holding each row's class weight, for a DataFrame, a dataset and arrays."""
    train = data[0].head(256).copy()
    class_weight = {0: 0.5, 1: 4.0}
    train["cw"] = np.where(train["income"] == 1, 4.0, 0.5).astype("float32")

    def weights_after(tasks, x, **kwargs):
        model = dnn(spec, tasks)
        model.fit(x, epochs=1, batch_size=64, shuffle=False, verbose=0, **kwargs)
        return [_np(w) for w in model.weights]

    want = weights_after([kr.Task("income", sample_weight="cw")], train)
    task = kr.Task("income")
    arrays = kr.data.to_numpy(train, spec)
    for x, kwargs in [
        (train, {}),
        (kr.data.from_pandas(train, spec, batch_size=64, tasks=[task]), {}),
        (arrays, {"y": {"income": train["income"].to_numpy()}}),
    ]:
        got = weights_after([task], x, class_weight=class_weight, **kwargs)
        for a, b in zip(want, got):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_class_weight_errors_name_the_way_out(spec, data):
    with pytest.raises(ValueError, match=r"single-task.*sample_weight.*pos_weight"):
        dnn(spec, ["income", "marital"]).fit(data[0], class_weight={1: 2.0}, verbose=0)
    with pytest.raises(ValueError, match="regression"):
        dnn(spec, [KINDS[1]]).fit(data[0], class_weight={1: 2.0}, verbose=0)
    with pytest.raises(ValueError, match=r"class 3, but task 'age_band'"):
        dnn(spec, [KINDS[2]]).fit(data[0], class_weight={3: 2.0}, verbose=0)
