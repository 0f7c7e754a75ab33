"""Wide&Deep, DeepFM and DCN on real census data: learning, saving, configs, task kinds.

Cost control: one trained model per variant is shared by the module's tests,
models read a compact census spec (10 categorical and 4 numeric columns; the
full 40-feature spec only where no training happens), losses and AUCs are
computed from eager forward passes instead of `evaluate`, and every training
batch has the same size, so each backend traces or compiles one train step
per model.

Markers: the variants in `FAST` (one path per model family) train under
`multibackend`; the save / resume round trip, the named outputs and the
backbone-alone check keep one variant each there (the others and the config
round trips run in the default TensorFlow pass). The default TensorFlow run also
trains every other variant in `VARIANTS`; the rest of the matrix (every variant
in every test, the DCN version x structure grid) is `slow`, so
`KERAS_BACKEND=jax pytest -m slow tests/models` runs it on JAX.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest
from keras import ops
from sklearn.metrics import roc_auc_score

import keras_recsys as kr
from keras_recsys.models.interaction import DCNBackbone, WideAndDeepBackbone
from tests.conftest import BACKEND, backend_params

TRAIN_ROWS, BATCH = 3072, 256
EVAL_ROWS = 2000  # every eager forward pass sees this many rows (one shape for JAX)
TASK_NAMES = ["income", "marital"]
CATEGORICAL = [
    "education", "class_worker", "det_hh_fam_stat", "sex", "major_occ_code",
    "major_ind_code", "race", "citizenship", "tax_filer_stat", "full_or_part_emp",
]  # fmt: skip
NUMERIC = ["age", "capital_gains", "weeks_worked", "stock_dividends"]

VARIANTS = {
    "wide_deep": (kr.models.WideAndDeep, {}),
    "deepfm": (kr.models.DeepFM, {}),
    "dcn_v1_stacked": (kr.models.DCN, {"version": "v1"}),
    "dcn_v2_full_stacked": (kr.models.DCN, {"version": "v2"}),
    "dcn_v2_low_rank_parallel": (
        kr.models.DCN,
        {"version": "v2", "projection_dim": 4, "structure": "parallel"},
    ),
    "dcn_mix_parallel": (
        kr.models.DCN,
        {"version": "mix", "projection_dim": 4, "num_experts": 2, "structure": "parallel"},
    ),
}
# The rest of the DCN version x structure matrix: slow on every backend.
SLOW_VARIANTS = {
    "dcn_v1_parallel": (kr.models.DCN, {"version": "v1", "structure": "parallel"}),
    "dcn_v2_full_parallel": (kr.models.DCN, {"version": "v2", "structure": "parallel"}),
    "dcn_v2_low_rank_stacked": (kr.models.DCN, {"version": "v2", "projection_dim": 4}),
    "dcn_mix_stacked": (kr.models.DCN, {"version": "mix", "projection_dim": 4}),
    "dcn_cross_only": (kr.models.DCN, {"version": "v2", "hidden_units": ()}),
}
ALL_VARIANTS = {**VARIANTS, **SLOW_VARIANTS}
FAST = ("wide_deep", "deepfm", "dcn_v2_low_rank_parallel")


def variant_params(also_fast_on_tf=tuple(VARIANTS), multibackend=FAST):
    """Every variant as a pytest param: those in `multibackend` on every backend; the
    other FAST ones and those in `also_fast_on_tf` in the default TensorFlow run; all
    others slow."""
    params = []
    for name in ALL_VARIANTS:
        if name in multibackend:
            marks = [pytest.mark.multibackend]
        elif (name in FAST or name in also_fast_on_tf) and BACKEND == "tensorflow":
            marks = []
        else:
            marks = [pytest.mark.slow]
        params.append(pytest.param(name, marks=marks, id=name))
    return params


def build(name, spec, tasks, **overrides):
    cls, kwargs = ALL_VARIANTS[name]
    kwargs = {"hidden_units": (16,), **kwargs, **overrides}
    if cls is kr.models.DCN:
        kwargs.setdefault("num_cross_layers", 2)
    return cls(spec, tasks, **kwargs)


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def batches(model, df):
    """Equal-size training batches (the last partial one dropped)."""
    return kr.data.from_pandas(df, model, batch_size=BATCH, drop_remainder=True)


def predict(model, df) -> dict[str, np.ndarray]:
    """Eager forward pass on all rows of `df` (raw rows through the model's spec)."""
    features = next(iter(kr.data.from_pandas(df, model, batch_size=len(df), labels=False)))
    return {name: _np(value) for name, value in model.predict_outputs(features).items()}


def log_loss(outputs, df) -> float:
    """Σ over tasks of the mean binary cross-entropy."""
    total = 0.0
    for task in TASK_NAMES:
        p = np.clip(outputs[task], 1e-7, 1 - 1e-7)
        y = df[task].to_numpy()
        total += float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))
    return total


@pytest.fixture(scope="module")
def data(census_small):
    train, test = census_small
    return train.head(TRAIN_ROWS).copy(), test.head(EVAL_ROWS).copy()


@pytest.fixture(scope="module")
def spec(data):
    """A compact census spec (real columns), fitted on the training rows."""
    features = [kr.Categorical(c) for c in CATEGORICAL]
    features += [kr.Numeric(c, transform="log1p") for c in NUMERIC]
    return kr.FeatureSpec(features, default_embedding_dim=8).adapt(data[0])


class Trained:
    """A variant trained two epochs, with its loss on the training rows before and
    after, and its test AUCs."""

    def __init__(self, name, spec, data):
        train, test = data
        keras.utils.set_random_seed(0)
        self.model = build(name, spec, [kr.Task(t) for t in TASK_NAMES])
        self.model.compile(optimizer=keras.optimizers.Adam(0.01))
        seen = train.head(EVAL_ROWS)
        self.loss_before = log_loss(predict(self.model, seen), seen)
        self.history = self.model.fit(batches(self.model, train), epochs=2, verbose=0).history
        self.loss_after = log_loss(predict(self.model, seen), seen)
        outputs = predict(self.model, test)
        self.auc = {t: roc_auc_score(test[t], outputs[t]) for t in TASK_NAMES}


@pytest.fixture(scope="module")
def trained(spec, data):
    """trained(name): the variant, trained once per module."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = Trained(name, spec, data)
        return cache[name]

    return get


@pytest.mark.parametrize("name", variant_params())
def test_learns_census_income_and_marital(name, trained):
    """Training lowers the loss on the same rows and both test AUCs beat chance."""
    run = trained(name)
    assert np.isfinite(run.history["loss"]).all()
    assert run.loss_after < 0.75 * run.loss_before, (run.loss_before, run.loss_after)
    assert min(run.auc.values()) > 0.75, run.auc


# One .keras round trip (with the optimizer state) per backend: the DCN, the richest config.
@pytest.mark.parametrize(
    "name", variant_params(also_fast_on_tf=(), multibackend=("dcn_v2_low_rank_parallel",))
)
def test_save_load_predicts_identically_and_resumes_training(name, trained, data, tmp_path):
    """The .keras file alone (spec inside) predicts like the model, and its restored
    optimizer state takes the same next step as the model."""
    train, test = data
    model = trained(name).model
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    loaded = keras.models.load_model(path)

    assert type(loaded) is type(model)
    assert loaded.spec is not model.spec
    assert loaded.spec.get_config() == model.spec.get_config()
    expected = predict(model, test)
    got = predict(loaded, test)  # raw rows through the deserialized spec
    assert list(got) == TASK_NAMES
    for task in TASK_NAMES:
        np.testing.assert_allclose(got[task], expected[task], atol=1e-6)

    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) > 0
    step = train.tail(BATCH)
    model.fit(batches(model, step), verbose=0)
    loaded.fit(batches(loaded, step), verbose=0)
    changed, got = predict(model, test), predict(loaded, test)
    for task in TASK_NAMES:
        assert np.abs(changed[task] - expected[task]).max() > 1e-4  # the step did something
        np.testing.assert_allclose(got[task], changed[task], atol=1e-5)


# Configs are backend-independent Python: TensorFlow only (the save / load and
# backbone tests round trip a config on every backend).
@pytest.mark.parametrize(
    "name", variant_params(also_fast_on_tf=("dcn_mix_parallel",), multibackend=())
)
def test_config_round_trip(name, census_spec, spec, census_tasks, data):
    """get_config is JSON, from_config rebuilds the same architecture, and with the
    same weights the clone computes the same outputs. On TensorFlow with the full
    40-feature census spec (building it eagerly is slow on JAX)."""
    model = build(name, census_spec if BACKEND == "tensorflow" else spec, census_tasks)
    config = model.get_config()
    clone = type(model).from_config(json.loads(json.dumps(config)))
    assert clone.get_config() == config
    assert [tuple(w.shape) for w in clone.weights] == [tuple(w.shape) for w in model.weights]
    clone.set_weights(model.get_weights())
    got, expected = predict(clone, data[1]), predict(model, data[1])
    for task in TASK_NAMES:
        np.testing.assert_allclose(got[task], expected[task], atol=1e-6)


@pytest.mark.multibackend
def test_numeric_fields_survive_config_round_trip(spec, census_tasks):
    """numeric_field_dim (numeric features embedded as fields) is part of the config:
    without it the clone had no numeric vectors and could not take the weights."""
    model = kr.models.WideAndDeep(spec, census_tasks, hidden_units=(8,), numeric_field_dim=4)
    clone = kr.models.WideAndDeep.from_config(model.get_config())
    assert clone.numeric_field_dim == 4
    assert [tuple(w.shape) for w in clone.weights] == [tuple(w.shape) for w in model.weights]


@pytest.mark.parametrize("name", backend_params(FAST, multibackend=("wide_deep",)))
def test_outputs_are_named_after_tasks(name, spec, data):
    """One output per task, keyed by the task's name, in task order: (B,) probabilities."""
    model = build(name, spec, [kr.Task("marital"), kr.Task("income", weight=0.5)])
    outputs = predict(model, data[1])
    assert list(outputs) == ["marital", "income"]
    for value in outputs.values():
        assert value.shape == (EVAL_ROWS,)
        assert ((value > 0) & (value < 1)).all()


# name: (backbone class, its arguments, "hidden" width given x0's width, has "logits")
BACKBONES = {
    "wide_deep": (WideAndDeepBackbone, {"hidden_units": (16, 8)}, lambda width: 8, True),
    "dcn_stacked": (
        DCNBackbone,
        {"num_cross_layers": 2, "hidden_units": (8,)},
        lambda width: 8,
        False,
    ),
    "dcn_mix_parallel": (
        DCNBackbone,
        {"version": "mix", "projection_dim": 4, "structure": "parallel", "hidden_units": (8,)},
        lambda width: width + 8,
        False,
    ),
    "dcn_v1_cross_only": (
        DCNBackbone,
        {"version": "v1", "num_cross_layers": 2, "hidden_units": ()},
        lambda width: width,
        False,
    ),
}


# On JAX and PyTorch the mixture-of-experts parallel DCN only (Wide&Deep's and the v2
# DCN's backbones run inside the FAST models there); all four on TensorFlow.
@pytest.mark.parametrize(
    "name", backend_params(sorted(BACKBONES), multibackend=("dcn_mix_parallel",))
)
def test_backbone_alone_returns_named_representations_and_round_trips(name, spec, data):
    """The backbone on a preprocessed batch: "hidden" (B, d), the wide part as per-task
    "logits" where the model has one, no loss; from_config rebuilds it, and with the
    same weights the rebuilt one computes the same outputs (same shapes included)."""
    cls, kwargs, hidden_width, has_logits = BACKBONES[name]
    task_units = {"income": 1, "status": 3}
    rows = data[1].head(32)
    batch = next(kr.data.from_pandas(rows, spec, batch_size=32).as_numpy_iterator())
    keras.utils.set_random_seed(0)
    backbone = cls(spec, task_units, **kwargs)
    outputs = backbone(batch)

    assert not isinstance(backbone, keras.Model) and not backbone.losses
    assert tuple(outputs["hidden"].shape) == (32, hidden_width(backbone.input_width()))
    if has_logits:
        assert {k: tuple(v.shape) for k, v in outputs["logits"].items()} == {
            "income": (32, 1),
            "status": (32, 3),
        }
    else:
        assert set(outputs) == {"hidden"}

    config = backbone.get_config()
    clone = type(backbone).from_config(json.loads(json.dumps(config)))
    assert clone.get_config() == config
    clone(batch)
    clone.set_weights(backbone.get_weights())
    got = clone(batch)
    np.testing.assert_allclose(_np(got["hidden"]), _np(outputs["hidden"]), atol=1e-6)
    for task, value in outputs.get("logits", {}).items():
        np.testing.assert_allclose(_np(got["logits"][task]), _np(value), atol=1e-6)


def test_dcn_rejects_unknown_options(spec):
    """Bad DCN options fail at construction, naming the allowed values."""
    with pytest.raises(ValueError, match="v1"):
        kr.models.DCN(spec, "income", version="v3")
    with pytest.raises(ValueError, match="parallel"):
        kr.models.DCN(spec, "income", structure="sideways")


def test_adam_first_step_moves_no_weight_more_than_the_learning_rate(spec, data):
    """Adam's first step is lr·g/(|g|+ε) ≤ lr for every weight. Ids repeat within a
    batch; Keras' TensorFlow optimizers applied the repeated sparse rows one by one
    and moved frequent ids' embeddings by up to ~15·lr (training diverged on TF)."""
    lr = 0.01
    keras.utils.set_random_seed(0)
    model = build("deepfm", spec, [kr.Task("income")])
    model.compile(optimizer=keras.optimizers.Adam(lr))
    x, y = next(batches(model, data[0]).as_numpy_iterator())
    before = [_np(w) for w in model.trainable_weights]
    model.train_on_batch(x, y)
    steps = {w.path: np.abs(_np(w) - b).max() for w, b in zip(model.trainable_weights, before)}
    assert max(steps.values()) <= lr * (1 + 1e-4), max(steps.items(), key=lambda kv: kv[1])
    table_steps = [step for path, step in steps.items() if "/table_" in path]
    assert table_steps and max(table_steps) > 0.9 * lr


@pytest.fixture(scope="module")
def mixed_kinds(data):
    """A spec without `age`, and rows with a regression label (standardized age) and a
    7-class label (marital status, not a model input)."""
    train, test = data
    classes = sorted(set(train["marital_stat"]) | set(test["marital_stat"]))
    frames = []
    for df in (train, test):
        df = df.copy()
        df["age_z"] = (df["age"] - train["age"].mean()) / train["age"].std()
        df["marital_class"] = pd.Categorical(df["marital_stat"], categories=classes).codes
        frames.append(df)
    features = [kr.Categorical(c) for c in CATEGORICAL]
    features += [kr.Numeric(c, transform="log1p") for c in NUMERIC if c != "age"]
    spec = kr.FeatureSpec(features, default_embedding_dim=8).adapt(train)
    return spec, frames[0], frames[1], len(classes)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("deepfm", marks=pytest.mark.multibackend),
        pytest.param("wide_deep", marks=pytest.mark.slow),
        pytest.param("dcn_v2_low_rank_parallel", marks=pytest.mark.slow),
    ],
)
def test_binary_regression_and_multiclass_heads(name, mixed_kinds):
    """A binary, a regression and a multiclass task train together: RMSE below the
    predict-the-mean baseline, accuracy above the majority class, softmax rows."""
    spec, train, test, num_classes = mixed_kinds
    tasks = [
        kr.Task("income"),
        kr.Task("age", kind="regression", label="age_z"),
        kr.Task("status", kind="multiclass", num_classes=num_classes, label="marital_class"),
    ]
    keras.utils.set_random_seed(0)
    model = build(name, spec, tasks)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit(batches(model, train), epochs=2, verbose=0)

    outputs = predict(model, test)
    assert list(outputs) == ["income", "age", "status"]
    assert outputs["income"].shape == outputs["age"].shape == (len(test),)
    assert outputs["status"].shape == (len(test), num_classes)
    np.testing.assert_allclose(outputs["status"].sum(axis=1), 1.0, atol=1e-5)

    target = test["age_z"].to_numpy()
    rmse = np.sqrt(np.mean((outputs["age"] - target) ** 2))
    baseline = np.sqrt(np.mean((target - train["age_z"].mean()) ** 2))
    assert rmse < 0.7 * baseline, (rmse, baseline)
    accuracy = np.mean(outputs["status"].argmax(axis=1) == test["marital_class"].to_numpy())
    majority = test["marital_class"].value_counts(normalize=True).max()
    assert accuracy > majority + 0.1, (accuracy, majority)


@pytest.mark.multibackend
def test_fit_takes_labels_of_shape_n_and_pipelines_without_a_shuffle_warning(mixed_kinds):
    """Labels as flat numpy arrays (N,) evaluate like the pipeline's (N, 1); fitting on
    a kr.data pipeline does not draw Keras' "shuffle=True ... ignored" warning."""
    import warnings

    spec, train, _, num_classes = mixed_kinds
    tasks = [
        kr.Task("income"),
        kr.Task("age", kind="regression", label="age_z"),
        kr.Task("status", kind="multiclass", num_classes=num_classes, label="marital_class"),
    ]

    def make_model():  # one per label shape: a retrace would relax TensorFlow's shapes
        keras.utils.set_random_seed(0)
        model = kr.models.DeepFM(spec, tasks, hidden_units=(8,))
        model.compile(optimizer="adam")
        return model

    model = make_model()
    pipeline = kr.data.from_pandas(train.head(512), model, batch_size=512)
    x, y = next(iter(pipeline.as_numpy_iterator()))
    assert all(v.shape == (512, 1) for v in y.values())
    flat = {name: value.reshape(-1) for name, value in y.items()}
    as_columns = make_model().evaluate(x, y, batch_size=512, return_dict=True, verbose=0)
    as_flat = model.evaluate(x, flat, batch_size=512, return_dict=True, verbose=0)
    assert set(as_flat) == set(as_columns) and "income_auc" in as_flat
    for key, value in as_columns.items():
        assert as_flat[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(
            kr.data.from_pandas(train.head(512), model, batch_size=256, shuffle=True, seed=0),
            epochs=1,
            verbose=0,
        )
    assert not [w for w in caught if "shuffle" in str(w.message)]
    assert np.isfinite(history.history["loss"][0])
