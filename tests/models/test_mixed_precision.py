"""`mixed_bfloat16` trains one model of every family; outputs and losses stay float32.

The scenario family (STAR: a scenario-indexed normalization and star-topology
weights) stands for the three on every backend (`multibackend`). The other two are
`slow` (`make test-slow`): emulated bfloat16 makes them among the slowest TensorFlow
model tests on CPU, and the policy handling they check (bfloat16 compute, float32
logits and loss) is the one STAR's test checks.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_recsys as kr


@pytest.fixture
def mixed_precision():
    keras.config.set_dtype_policy("mixed_bfloat16")
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture(scope="module")
def scenario_train(census_splits):
    return kr.datasets.add_worker_group(census_splits[0].head(2048))


@pytest.fixture(scope="module")
def scenario_spec(scenario_train):
    features = [kr.Categorical("worker_group", role="scenario")]
    features += [kr.Categorical(c) for c in kr.datasets.census.CATEGORICAL_COLUMNS]
    features += [kr.Numeric(c, transform="log1p") for c in kr.datasets.census.NUMERIC_COLUMNS]
    return kr.FeatureSpec(features, default_embedding_dim=8).adapt(scenario_train)


TASKS = [kr.Task("income"), kr.Task("marital")]
FAMILIES = {
    "interaction": lambda spec: kr.models.DeepFM(spec, TASKS, hidden_units=[32]),
    "multitask": lambda spec: kr.models.MMoE(spec, TASKS, num_experts=2, expert_units=[16]),
    "scenario": lambda spec: kr.models.STAR(spec, TASKS, hidden_units=[16]),
}


@pytest.mark.parametrize(
    "family",
    [
        pytest.param(
            family, marks=pytest.mark.multibackend if family == "scenario" else pytest.mark.slow
        )
        for family in sorted(FAMILIES)
    ],
)
def test_ranking_families_train_in_mixed_bfloat16(
    family, mixed_precision, scenario_spec, scenario_train
):
    model = FAMILIES[family](scenario_spec)
    assert model.embedding.compute_dtype == "bfloat16"
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    data = kr.data.from_pandas(scenario_train, model, batch_size=256, shuffle=True, seed=0)
    losses = model.fit(data, epochs=3, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    x = next(iter(kr.data.from_pandas(scenario_train.head(8), model, labels=False)))
    logits = model(x)
    assert all(keras.backend.standardize_dtype(v.dtype) == "float32" for v in logits.values())
