"""`kr.tuning`: keras-tuner HyperModels for the builders, on a small census slice.

The searches are tiny (2 trials of 1-2 epochs on 2,048 rows, 1-2 steps an
epoch). On TensorFlow they run eagerly (`run_eagerly=True`): tracing a train
step costs more than these few steps cost to run. JAX is the other way
round (every eager op compiles on its own), and PyTorch is eager anyway.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import keras_tuner
import numpy as np
import pytest

import keras_recsys as kr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKS = ["income", "marital"]
FAST = {"run_eagerly": keras.backend.backend() == "tensorflow"}


@pytest.fixture(scope="module")
def frames(census_splits):
    train, valid, _ = census_splits
    return train.head(2048), valid.head(1024)


@pytest.fixture(scope="module")
def datasets(frames, census_spec):
    """Preprocessed once with the fitted spec: they feed every trial's model."""
    train, valid = frames
    return (
        kr.data.from_pandas(train, census_spec, tasks=TASKS, batch_size=2048, shuffle=True, seed=0),
        kr.data.from_pandas(valid, census_spec, tasks=TASKS, batch_size=1024),
    )


class Recorder(keras.callbacks.Callback):
    """Every epoch's logs and every trial's train steps, across trials.

    keras-tuner deep-copies the callbacks of `search` for each trial; this one
    stays itself, so the records of all trials land in one place.
    """

    def __init__(self):
        super().__init__()
        self.epochs: list[dict] = []
        self.steps: list[int] = []

    def __deepcopy__(self, memo):
        return self

    def on_train_begin(self, logs=None):
        self.steps.append(0)

    def on_train_batch_end(self, batch, logs=None):
        self.steps[-1] += 1

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append({k: float(v) for k, v in logs.items()})


def small_mmoe_space(**shared) -> kr.tuning.SearchSpace:
    """A narrow MMoE space: tiny models whose trials still differ."""

    def model(hp):
        return {
            "num_experts": hp.Int("num_experts", 2, 4),
            "expert_units": (8,),
            "tower_units": (4,),
        }

    shared.setdefault("embedding_dim", (4, 8))
    shared.setdefault("learning_rate", (1e-3, 3e-2))
    return kr.tuning.SearchSpace(model, **shared)


def hyperparameters(space: kr.tuning.SearchSpace, **values) -> keras_tuner.HyperParameters:
    """The space's hyperparameters at their defaults, then `values`, as a tuner sets them."""
    hp = keras_tuner.HyperParameters()
    space.model_arguments(hp)
    space.shared_values(hp)
    for name, value in values.items():
        assert name in hp.values, (name, sorted(hp.values))
        hp.values[name] = value
    return hp


def make_tuner(kind: str, hypermodel, objective, directory):
    common = {"objective": objective, "directory": directory, "overwrite": True, "seed": 1}
    if kind == "random":
        return keras_tuner.RandomSearch(hypermodel, max_trials=2, **common)
    if kind == "bayesian":
        # One random point, then one trial the Gaussian process proposes.
        return keras_tuner.BayesianOptimization(
            hypermodel, max_trials=2, num_initial_points=1, **common
        )
    # max_epochs=2, factor=3: one bracket of two trials of 2 epochs.
    return keras_tuner.Hyperband(hypermodel, max_epochs=2, factor=3, **common)


@pytest.mark.parametrize("kind", ["random", "bayesian", "hyperband"])
def test_tuner_finds_the_best_trial_by_the_mean_validation_auc(
    kind, census_spec, datasets, tmp_path
):
    train, valid = datasets
    hypermodel = kr.tuning.RecHyperModel(
        census_spec,
        TASKS,
        kr.models.MMoE,
        small_mmoe_space(batch_size=(1024, 2048)),
        seed=0,
        compile_arguments=FAST,
    )
    tuner = make_tuner(kind, hypermodel, kr.tuning.objective(TASKS), tmp_path)
    recorder = Recorder()
    tuner.search(train, validation_data=valid, epochs=1, callbacks=[recorder], verbose=0)

    trials = list(tuner.oracle.trials.values())
    assert len(trials) == 2 and all(t.status == "COMPLETED" for t in trials)
    assert trials[0].hyperparameters.values != trials[1].hyperparameters.values
    epochs = 2 if kind == "hyperband" else 1
    assert len(recorder.epochs) == 2 * epochs
    # The logged objective is the mean of the tasks' validation AUCs, every epoch ...
    for logs in recorder.epochs:
        expected = (logs["val_income_auc"] + logs["val_marital_auc"]) / 2
        assert logs["val_mean_auc"] == pytest.approx(expected, abs=1e-6)
    # ... and so are the metrics the oracle recorded for each trial.
    for trial in trials:
        metrics = {name: trial.metrics.get_last_value(name) for name in trial.metrics.metrics}
        mean = (metrics["val_income_auc"] + metrics["val_marital_auc"]) / 2
        assert trial.score == pytest.approx(mean, abs=1e-6)
    # The tuned batch size re-batches the dataset: 2,048 rows in 2048 / batch_size steps.
    batch_sizes = [t.hyperparameters.get("batch_size") for t in trials]
    assert sorted(recorder.steps) == sorted(epochs * 2048 // b for b in batch_sizes)

    best_seen = max(logs["val_mean_auc"] for logs in recorder.epochs)
    best_trial = tuner.oracle.get_best_trials(1)[0]
    assert best_trial.score == pytest.approx(best_seen, abs=1e-6)
    values = kr.tuning.best_hyperparameters(tuner)
    assert values == {
        k: v for k, v in best_trial.hyperparameters.values.items() if not k.startswith("tuner/")
    }
    json.dumps(values)  # plain values, for the records

    # The best model is rebuilt from its hyperparameters with its best epoch's weights.
    model = tuner.get_best_models(1)[0]
    assert model.backbone.num_experts == values["num_experts"]
    assert model.spec.default_embedding_dim == values["embedding_dim"]
    result = model.evaluate(valid, return_dict=True, verbose=0)
    mean = (result["income_auc"] + result["marital_auc"]) / 2
    assert mean == pytest.approx(best_seen, abs=1e-5)


CASES = {
    "DNN": (
        kr.models.DNN,
        {"hidden_layers": 2, "hidden_units": 128, "dropout": 0.2},
        lambda m: (m.backbone.hidden_units, m.backbone.dropout),
        ([128, 64], 0.2),
    ),
    "DeepFM": (
        kr.models.DeepFM,
        {"hidden_layers": 3, "hidden_units": 64},
        lambda m: m.backbone.hidden_units,
        [64, 32, 16],
    ),
    "DCN": (
        kr.models.DCN,
        {"num_cross_layers": 2, "projection_dim": 0, "structure": "parallel"},
        lambda m: (m.backbone.num_cross_layers, m.backbone.projection_dim, m.backbone.structure),
        (2, None, "parallel"),
    ),
    "MMoE": (
        kr.models.MMoE,
        {"num_experts": 6, "expert_layers": 2, "expert_units": 32, "tower_units": 16},
        lambda m: (
            len(m.backbone.moe.experts),
            m.backbone.expert_units,
            m.backbone.tower_units,
        ),
        (6, [32, 16], [16]),
    ),
    "PLE": (
        kr.models.PLE,
        {"num_levels": 3, "num_task_experts": 2, "num_shared_experts": 4},
        lambda m: (
            len(m.backbone.levels),
            len(m.backbone.levels[0].shared_experts),
            len(m.backbone.levels[0].task_experts[0]),
        ),
        (3, 4, 2),
    ),
    "SharedBottom": (
        kr.models.SharedBottom,
        {"bottom_layers": 1, "bottom_units": 512, "tower_units": 64},
        lambda m: (m.backbone.bottom_units, m.backbone.tower_units),
        ([512], [64]),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hyperparameters_shape_the_built_model(name, census_spec):
    builder, values, read, expected = CASES[name]
    hypermodel = kr.tuning.RecHyperModel(census_spec, TASKS, builder)
    space = kr.tuning.default_search_space(builder)
    hp = hyperparameters(space, embedding_dim=4, learning_rate=0.005, l2=1e-5, **values)
    model = hypermodel.build(hp)

    assert read(model) == expected
    # The embedding size comes from a copy of the fitted spec, not from adapting again.
    assert model.spec is not census_spec and model.spec.default_embedding_dim == 4
    assert {dim for _, dim in model.embedding.tables_config.values()} == {4}
    assert census_spec.default_embedding_dim == 8
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.005)
    penalized = [v for v in model.trainable_weights if v.regularizer is not None]
    assert penalized and all(len(v.shape) >= 2 for v in penalized)
    assert all(v.regularizer is None for v in model.trainable_weights if len(v.shape) < 2)
    assert model.compiled


def test_embedding_copy_keeps_the_fitted_vocabularies(census_spec, frames):
    copy = kr.tuning.with_embedding_dim(census_spec, 16)
    assert copy.is_adapted and copy.default_embedding_dim == 16
    assert kr.tuning.with_embedding_dim(census_spec, 8) is census_spec
    for feature in census_spec.categorical:
        values = frames[1][feature.name].head(50)
        np.testing.assert_array_equal(
            copy.lookup(feature.name, values), census_spec.lookup(feature.name, values)
        )
        assert copy.input_dim(feature.name) == census_spec.input_dim(feature.name)


def test_search_spaces_declare_their_documented_hyperparameters(census_spec):
    shared = ["learning_rate", "embedding_dim", "l2"]
    assert kr.tuning.mmoe_space().names() == [
        "num_experts",
        "expert_layers",
        "expert_units",
        "tower_units",
        "dropout",
        *shared,
    ]
    assert kr.tuning.ple_space().names()[:3] == [
        "num_levels",
        "num_task_experts",
        "num_shared_experts",
    ]
    assert "num_cross_layers" in kr.tuning.dcn_space().names()
    tuned = kr.tuning.mmoe_space().replace(batch_size=(512, 1024), l2=None, embedding_dim=16)
    hp = keras_tuner.HyperParameters()
    assert tuned.shared_values(hp)["embedding_dim"] == 16  # fixed: recorded, not searched
    assert "l2" not in tuned.names() and "batch_size" in tuned.names()
    with pytest.raises(ValueError, match="no ready-made search space for CGC"):
        kr.tuning.RecHyperModel(census_spec, TASKS, kr.models.CGC)


def test_unknown_metric_is_a_clear_error(census_spec):
    with pytest.raises(ValueError, match=r"'aucc'.*\['auc', 'logloss', 'loss'\]"):
        kr.tuning.objective(TASKS, "aucc")
    with pytest.raises(ValueError, match="'aucc'"):
        kr.tuning.RecHyperModel(census_spec, TASKS, kr.models.MMoE, metric="aucc")
    assert kr.tuning.objective(TASKS, "logloss").direction == "min"
    assert kr.tuning.objective(TASKS).name == "val_mean_auc"


def test_unknown_objective_stops_the_search_at_once(census_spec, datasets, tmp_path):
    train, valid = datasets
    hypermodel = kr.tuning.RecHyperModel(
        census_spec,
        TASKS,
        kr.models.MMoE,
        small_mmoe_space(),
        compile_arguments=FAST,
    )
    misspelled = keras_tuner.Objective("val_incom_auc", direction="max")
    tuner = keras_tuner.RandomSearch(
        hypermodel, objective=misspelled, max_trials=3, directory=tmp_path, overwrite=True
    )
    with pytest.raises(ValueError, match=r"\['val_incom_auc'\] is not among the logged"):
        tuner.search(train, validation_data=valid, epochs=1, verbose=0)
    assert len(tuner.oracle.trials) == 1  # not retried trial after trial

    no_objective = keras_tuner.RandomSearch(
        hypermodel, max_trials=1, directory=tmp_path, project_name="none", overwrite=True
    )
    with pytest.raises(ValueError, match="without an objective"):
        no_objective.search(train, validation_data=valid, epochs=1, verbose=0)


@pytest.mark.multibackend
def test_search_on_dataframes_with_l2_on_every_backend(census_spec, frames, tmp_path):
    """One trial from DataFrames: the tuned batch size, the mean objective, and the
    L2 penalty (val_loss = the task losses + l2 · Σ w²) on this backend."""
    train, valid = frames
    space = kr.tuning.SearchSpace(
        lambda hp: {"bottom_units": (hp.Choice("bottom_units", [16]),), "tower_units": (4,)},
        embedding_dim=(4,),
        learning_rate=0.01,
        l2=1e-3,
        batch_size=2048,
    )
    hypermodel = kr.tuning.RecHyperModel(
        census_spec,
        TASKS,
        kr.models.SharedBottom,
        space,
        seed=0,
        compile_arguments=FAST,
    )
    tuner = keras_tuner.RandomSearch(
        hypermodel,
        objective=kr.tuning.objective(TASKS),
        max_trials=1,
        directory=tmp_path,
        overwrite=True,
    )
    recorder = Recorder()
    tuner.search(train, validation_data=valid, epochs=1, callbacks=[recorder], verbose=0)
    (logs,) = recorder.epochs
    assert recorder.steps == [1]  # batch_size 2048 on 2,048 rows
    assert logs["val_mean_auc"] == pytest.approx(
        (logs["val_income_auc"] + logs["val_marital_auc"]) / 2, abs=1e-6
    )
    model = tuner.get_best_models(1)[0]
    squares = sum(
        float(np.sum(keras.ops.convert_to_numpy(v) ** 2))
        for v in model.trainable_weights
        if len(v.shape) >= 2
    )
    penalty = logs["val_loss"] - logs["val_income_loss"] - logs["val_marital_loss"]
    assert penalty == pytest.approx(1e-3 * squares, rel=1e-3)
    assert kr.tuning.best_hyperparameters(tuner)["l2"] == 1e-3


def test_keras_tuner_loads_with_kr_tuning_only_and_without_tensorflow():
    code = (
        "import sys; import keras_recsys as kr; before = 'keras_tuner' in sys.modules; "
        "kr.tuning.RecHyperModel; "
        "print(before, 'keras_tuner' in sys.modules, 'tensorflow' in sys.modules)"
    )
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=ROOT)
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["False", "True", "False"]
