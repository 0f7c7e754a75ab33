"""Scenario helpers, ScenarioIndicatorTower and ScenarioTowers against numpy."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_recsys as kr

IDS = np.array([2, 3, 5, 1, 4, 2], dtype="int32")  # 1: out of vocabulary


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _relu(x):
    return np.maximum(x, 0.0)


@pytest.mark.multibackend
def test_one_hot_and_routing():
    full = _np(kr.layers.scenario_one_hot(IDS, 6))
    np.testing.assert_array_equal(full, np.eye(6)[IDS])
    vocab = _np(kr.layers.scenario_one_hot(IDS, 6, reserved=False))
    expected = np.eye(6)[IDS][:, 2:]
    np.testing.assert_array_equal(vocab, expected)
    assert vocab[3].sum() == 0  # the OOV example has no tower
    routing = _np(kr.layers.scenario_routing(IDS, 6))
    expected[3] = 0.25  # OOV: the mean of the 4 towers
    np.testing.assert_allclose(routing, expected)


@pytest.mark.multibackend
def test_scenario_indicator_tower_matches_numpy():
    tower = kr.layers.ScenarioIndicatorTower(
        {"domain": 6, "slot": 3}, units=2, embedding_dim=3, hidden_units=[5]
    )
    slot = np.array([2, 1, 2, 0, 1, 2], dtype="int32")
    inputs = {"domain": IDS, "slot": slot, "other": np.zeros(6, "float32")}
    got = _np(tower(inputs))
    e_domain = _np(tower.tables["domain"].embeddings)
    e_slot = _np(tower.tables["slot"].embeddings)
    w1, b1 = (_np(w) for w in tower.hidden[0].weights)
    w2, b2 = (_np(w) for w in tower.output_layer.weights)
    x = np.concatenate([e_domain[IDS], e_slot[slot]], axis=-1)
    want = _relu(x @ w1 + b1) @ w2 + b2
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert got.shape == (6, 2)
    rebuilt = kr.layers.ScenarioIndicatorTower.from_config(tower.get_config())
    assert rebuilt.get_config() == tower.get_config()


def test_scenario_indicator_tower_dropout_acts_on_its_output():
    keras.utils.set_random_seed(1)
    tower = kr.layers.ScenarioIndicatorTower({"domain": 6}, units=1, dropout=0.5)
    inputs = {"domain": np.repeat(IDS, 50)}
    clean = _np(tower(inputs, training=False))
    dropped = _np(tower(inputs, training=True))
    zero = np.isclose(dropped, 0.0)
    assert 0.2 < zero.mean() < 0.8
    np.testing.assert_allclose(dropped[~zero], 2.0 * clean[~zero], rtol=1e-5)


@pytest.mark.multibackend
def test_scenario_towers_match_numpy():
    towers = kr.layers.ScenarioTowers(6, units=[4, 2], output_activation=False)
    x = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    got = _np(towers(x))
    assert got.shape == (5, 4, 2)
    k0, k1 = _np(towers.kernels[0]), _np(towers.kernels[1])
    b0, b1 = _np(towers.biases[0]), _np(towers.biases[1])
    for s in range(4):
        want = _relu(x @ k0[s] + b0[s]) @ k1[s] + b1[s]
        np.testing.assert_allclose(got[:, s], want, rtol=1e-5, atol=1e-6)


def test_scenario_layers_reject_a_too_small_id_space():
    with pytest.raises(ValueError, match="num_scenarios"):
        kr.layers.ScenarioTowers(2, units=[4])
