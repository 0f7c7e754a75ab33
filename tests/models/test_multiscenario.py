"""Multi-scenario models on real census data: training, structure, save, export.

The scenario is `worker_group` (four groups of `class_worker`, see
`kr.datasets.add_worker_group`); a small spec keeps tracing fast.
"""

import json

import keras
import numpy as np
import pytest
from keras import ops

import keras_recsys as kr
from keras_recsys.models.scenario import (
    HMoEBackbone,
    M2MBackbone,
    PEPNetBackbone,
    SplitMergeBackbone,
    STARBackbone,
)
from tests.conftest import backend_params, requires_tensorflow_backend

CATEGORICAL = ["education", "sex", "major_occ_code", "tax_filer_stat", "det_hh_summ"]
NUMERIC = ["age", "weeks_worked", "capital_gains"]
TASKS = ["income", "marital"]


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


@pytest.fixture(scope="module")
def scenario_data(census_splits):
    train, _, test = census_splits
    return (
        kr.datasets.add_worker_group(train.head(4096)),
        kr.datasets.add_worker_group(test.head(1024)),
    )


@pytest.fixture(scope="module")
def scenario_spec(scenario_data):
    features = [kr.Categorical("worker_group", role="scenario")]
    features += [kr.Categorical(c) for c in CATEGORICAL]
    features += [kr.Numeric(c, transform="log1p") for c in NUMERIC]
    return kr.FeatureSpec(features, default_embedding_dim=4).adapt(scenario_data[0])


BUILDERS = {
    "dnn_scenario_tower": lambda spec: kr.models.DNN(
        spec, TASKS, hidden_units=[16], scenario_tower={"hidden_units": [4], "dropout": 0.1}
    ),
    "split_merge": lambda spec: kr.models.SplitMerge(
        spec, TASKS, bottom_units=[16], tower_units=[8]
    ),
    "hmoe": lambda spec: kr.models.HMoE(spec, TASKS, bottom_units=[16], tower_units=[8]),
    "star": lambda spec: kr.models.STAR(spec, TASKS, hidden_units=[16]),
    "pepnet": lambda spec: kr.models.PEPNet(
        spec,
        TASKS,
        hidden_units=[16, 8],
        epnet_features=["worker_group"],
        ppnet_features=["sex", "education"],
    ),
    "m2m": lambda spec: kr.models.M2M(
        spec, TASKS, num_experts=2, expert_units=[16], num_tower_layers=1
    ),
}


def _batch(model, df):
    return next(iter(kr.data.from_pandas(df, model, batch_size=len(df), labels=False)))


@pytest.mark.multibackend
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_trains_on_census_and_round_trips(name, scenario_spec, scenario_data, tmp_path):
    train, test = scenario_data
    keras.utils.set_random_seed(0)
    model = BUILDERS[name](scenario_spec)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    history = model.fit(
        kr.data.from_pandas(train, model, batch_size=256, shuffle=True, seed=0),
        epochs=2,
        verbose=0,
    )
    losses = history.history["loss"]
    assert losses[-1] < 0.75 * losses[0], losses
    if name == "star":  # PN's moving statistics were updated inside the compiled train step
        np.testing.assert_array_equal(_np(model.backbone.pn.seen), [0, 0, 1, 1, 1, 1])
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    x = _batch(model, test.head(256))
    want, got = model.predict_outputs(x), loaded.predict_outputs(x)
    assert sorted(got) == TASKS
    for task in TASKS:
        np.testing.assert_allclose(_np(got[task]), _np(want[task]), rtol=1e-5, atol=1e-6)


# name: (backbone class, its arguments, "hidden" width (one int: a tensor shared by the
# tasks; a dict: one tensor per task), has "logits" (its output layer is in the body))
BACKBONES = {
    "star": (STARBackbone, {"hidden_units": [8, 6], "dropout": 0.1}, 6, True),
    "split_merge": (SplitMergeBackbone, {"bottom_units": [8], "tower_units": [4]}, 8, True),
    "hmoe": (HMoEBackbone, {"bottom_units": [7], "tower_units": [4]}, 7, True),
    "m2m": (
        M2MBackbone,
        {"num_experts": 2, "expert_units": [8, 6], "num_tower_layers": 1},
        {"income": 6, "marital": 6},
        False,
    ),
    "pepnet": (
        PEPNetBackbone,
        {"hidden_units": [8, 5], "epnet_features": ["worker_group"], "ppnet_features": ["sex"]},
        {"income": 5, "marital": 5},
        False,
    ),
}


# On JAX and PyTorch STAR's backbone stands for the five (every one of them runs inside
# its trained model above on every backend); TensorFlow checks all five.
@pytest.mark.parametrize("name", backend_params(sorted(BACKBONES), multibackend=("star",)))
def test_backbone_alone_returns_named_representations_and_round_trips(
    name, scenario_spec, scenario_data
):
    """The backbone on a preprocessed batch: "hidden" (shared or per task) and, where
    the output layer is scenario-conditioned, per-task "logits"; no loss; from_config
    rebuilds it, and with the same weights the rebuilt one computes the same outputs."""
    cls, kwargs, hidden_width, has_logits = BACKBONES[name]
    task_units = {"income": 1, "marital": 3}
    rows = scenario_data[1].head(32)
    batch = next(kr.data.from_pandas(rows, scenario_spec, batch_size=32).as_numpy_iterator())
    keras.utils.set_random_seed(0)
    backbone = cls(scenario_spec, task_units, **kwargs)
    outputs = backbone(batch)

    assert not isinstance(backbone, keras.Model) and not backbone.losses
    if isinstance(hidden_width, dict):
        got = {task: tuple(h.shape) for task, h in outputs["hidden"].items()}
        assert got == {task: (32, width) for task, width in hidden_width.items()}
    else:
        assert tuple(outputs["hidden"].shape) == (32, hidden_width)
    if has_logits:
        got = {task: tuple(v.shape) for task, v in outputs["logits"].items()}
        assert got == {"income": (32, 1), "marital": (32, 3)}
    else:
        assert set(outputs) == {"hidden"}

    config = backbone.get_config()
    clone = type(backbone).from_config(json.loads(json.dumps(config)))
    assert clone.get_config() == config
    clone(batch)
    clone.set_weights(backbone.get_weights())
    got = keras.tree.flatten(clone(batch))
    want = keras.tree.flatten(outputs)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(_np(g), _np(w), rtol=1e-5, atol=1e-6)


def test_output_layer_in_the_backbone_means_no_task_heads(scenario_spec):
    """STAR's star output layer and SplitMerge / HMoE's towers give the logits, so
    those models have no linear heads; M2M and PEPNet put one on each task tower."""
    for model in (BUILDERS["star"](scenario_spec), BUILDERS["hmoe"](scenario_spec)):
        assert model.heads is None and not any("head" in w.path for w in model.weights)
    assert isinstance(BUILDERS["hmoe"](scenario_spec).backbone, HMoEBackbone)
    assert sorted(BUILDERS["m2m"](scenario_spec).heads.heads) == sorted(TASKS)


def test_scenario_tower_adds_its_logit_to_every_task(scenario_spec, scenario_data):
    model = kr.models.DNN(scenario_spec, TASKS, hidden_units=[8], scenario_tower=True)
    x = _batch(model, scenario_data[1].head(64))
    main = model.compute_logits(x)
    shallow = _np(model.scenario_logit_tower(x))
    out = model.predict_outputs(x)
    for k, task in enumerate(TASKS):
        want = 1 / (1 + np.exp(-(_np(main[task])[:, 0] + shallow[:, k])))
        np.testing.assert_allclose(_np(out[task]), want, rtol=1e-5, atol=1e-6)
    # Any model can add the tower.
    deepfm = kr.models.DeepFM(scenario_spec, TASKS, hidden_units=[8], scenario_tower=True)
    tower = _np(deepfm.scenario_logit_tower(x))
    base = deepfm.compute_logits(x)
    np.testing.assert_allclose(
        _np(deepfm.predict_outputs(x)["income"]),
        1 / (1 + np.exp(-(_np(base["income"])[:, 0] + tower[:, 0]))),
        rtol=1e-5,
        atol=1e-6,
    )
    plain = kr.models.DNN(scenario_spec, TASKS, hidden_units=[8])
    assert plain.scenario_logit_tower is None and "scenario_tower" not in plain.get_config()
    # STAR's auxiliary network is on by default; switching it off survives a round trip.
    star = kr.models.STAR(scenario_spec, TASKS, hidden_units=[8], scenario_tower=False)
    assert kr.models.STAR.from_config(star.get_config()).scenario_logit_tower is None


def test_census_worker_groups(census_splits):
    train = kr.datasets.add_worker_group(census_splits[0])
    counts = train["worker_group"].value_counts().to_dict()
    assert counts == {
        "not_working": 30260,
        "private": 21699,
        "government": 4378,
        "self_employed": 3520,
    }
    spec = kr.datasets.census_scenario_feature_spec()
    assert spec.scenario_feature.name == "worker_group" and "class_worker" not in spec
    with pytest.raises(ValueError, match="no worker group"):
        kr.datasets.add_worker_group(train.head(2).assign(class_worker="Astronaut"))


def test_models_need_a_scenario_feature(census_spec):
    with pytest.raises(ValueError, match="role='scenario'"):
        kr.models.SplitMerge(census_spec, "income")
    with pytest.raises(ValueError, match="role='scenario'"):
        kr.models.DNN(census_spec, "income", scenario_tower=True)
    with pytest.raises(ValueError, match="not embedded fields"):
        kr.models.PEPNet(census_spec, "income", gate_features=["nope"])
    with pytest.raises(ValueError, match="role='scenario'"):
        kr.models.PEPNet(census_spec, "income")  # EPNet's default features
    with pytest.raises(ValueError, match=r"ppnet_features \['nope'\] are not embedded"):
        kr.models.PEPNet(census_spec, "income", epnet_features=["sex"], ppnet_features=["nope"])


def _numpy_gate(gate, x):
    """`PersonalizedGate` in numpy from its weights: γ·σ(W2 relu(W1 x + b1) + b2)."""
    w1, b1 = (_np(w) for w in gate.hidden.weights)
    w2, b2 = (_np(w) for w in gate.output_layer.weights)
    return gate.scale / (1 + np.exp(-(np.maximum(x @ w1 + b1, 0) @ w2 + b2)))


def _numpy_pepnet(model, x):
    """PEPNet's logits in numpy: EPNet on the domain features, then PPNet gating
    the input of every tower layer (the first one and the head included)."""
    backbone = model.backbone
    embedded = model.embedding(x)
    fields = {k: _np(v) for k, v in embedded["fields"].items()}
    dense = _np(embedded["dense"])
    names = model.field_names
    x0 = np.concatenate([fields[f] for f in names] + [dense], axis=-1)
    domain = np.concatenate([fields[f] for f in backbone.epnet_features], axis=-1)
    delta = _numpy_gate(backbone.embedding_gate, np.concatenate([domain, x0], axis=-1))
    xs = np.concatenate(
        [fields[f] * delta[:, i : i + 1] for i, f in enumerate(names)] + [dense], -1
    )
    prior = np.concatenate([fields[f] for f in backbone.ppnet_features], axis=-1)
    gate_input = np.concatenate([prior, xs], axis=-1)
    logits = {}
    for k, task in enumerate(model.task_names):
        h = xs
        depth = range(len(backbone.hidden_units))
        gates = [backbone.unit_gates[f"layer_{i}"] for i in depth]
        layers = [backbone.tower_layers[f"{task}_{i}"] for i in depth]
        for gate, layer in zip(gates, layers):
            width = h.shape[1]
            h = h * _numpy_gate(gate, gate_input)[:, k * width : (k + 1) * width]
            kernel, bias = (_np(w) for w in layer.weights)
            h = np.maximum(h @ kernel + bias, 0)
        width = h.shape[1]
        h = h * _numpy_gate(backbone.unit_gates["head"], gate_input)[:, k * width : (k + 1) * width]
        kernel, bias = (_np(w) for w in model.heads.heads[task].weights)
        logits[task] = h @ kernel + bias
    return logits, xs


@pytest.mark.multibackend
def test_pepnet_gates_every_layer_input_against_numpy(scenario_spec, scenario_data):
    """EPNet reads the domain features, PPNet the prior (id) features, and PPNet
    scales the input of every tower layer, the first one (the EPNet output)
    and the heads' included (Chang et al., 2023, PPNet)."""
    keras.utils.set_random_seed(0)
    model = kr.models.PEPNet(
        scenario_spec,
        TASKS,
        hidden_units=[6, 5],
        gate_hidden_units=7,
        epnet_features=["worker_group"],
        ppnet_features=["sex", "education"],
    )
    x = _batch(model, scenario_data[1].head(32))
    want, xs = _numpy_pepnet(model, x)
    got = model.compute_logits(x)
    for task in TASKS:
        np.testing.assert_allclose(_np(got[task]), want[task], rtol=1e-4, atol=1e-5)
    width = xs.shape[1]  # the first layer's input: every field embedding and numeric
    unit_gates = model.backbone.unit_gates
    assert unit_gates["layer_0"].units == len(TASKS) * width
    assert [unit_gates[n].units for n in ("layer_1", "head")] == [2 * 6, 2 * 5]
    gated = model.gated_tower_inputs(x)
    np.testing.assert_allclose(_np(gated["x"]), xs, rtol=1e-5, atol=1e-6)
    assert sorted(gated["scales"]) == ["head", "layer_0", "layer_1"]


def test_pepnet_gate_features_config(scenario_spec):
    """Separate EPNet / PPNet features survive a round trip; a config written with
    the one `gate_features` list loads, giving both gates that list; the
    defaults are the scenario feature."""
    model = kr.models.PEPNet(
        scenario_spec, TASKS, hidden_units=[4], epnet_features=["worker_group"],
        ppnet_features=["sex"],
    )  # fmt: skip
    config = model.get_config()
    assert (config["epnet_features"], config["ppnet_features"]) == (["worker_group"], ["sex"])
    assert "gate_features" not in config
    assert kr.models.PEPNet.from_config(config).get_config() == config
    old = {k: v for k, v in config.items() if not k.endswith("net_features")}
    old["gate_features"] = ["worker_group", "sex"]
    loaded = kr.models.PEPNet.from_config(old).backbone
    assert loaded.epnet_features == loaded.ppnet_features == ["worker_group", "sex"]
    default = kr.models.PEPNet(scenario_spec, TASKS, hidden_units=[4]).backbone
    assert default.epnet_features == default.ppnet_features == ["worker_group"]
    # PPNet alone needs no scenario feature, only its own.
    lhuc = kr.models.PEPNet(
        scenario_spec, TASKS, hidden_units=[4], epnet=False, ppnet_features=["sex"]
    ).backbone
    assert lhuc.embedding_gate is None and lhuc.ppnet_features == ["sex"]


def test_split_merge_routes_each_example_to_its_own_tower(scenario_spec, scenario_data):
    model = kr.models.SplitMerge(scenario_spec, "income", bottom_units=[8], tower_units=[4])
    x = _batch(model, scenario_data[1].head(200))
    ids = _np(x["worker_group"])
    before = _np(model.predict_outputs(x)["income"])
    kernel = model.backbone.towers.kernels[-1]
    changed = _np(kernel).copy()
    changed[1] += 1.0  # tower of id 3 only
    kernel.assign(changed)
    after = _np(model.predict_outputs(x)["income"])
    np.testing.assert_allclose(after[ids != 3], before[ids != 3], rtol=1e-6)
    assert not np.allclose(after[ids == 3], before[ids == 3])


@requires_tensorflow_backend
def test_hmoe_gives_zero_gradient_to_other_scenarios_towers(scenario_spec, scenario_data):
    import tensorflow as tf

    model = kr.models.HMoE(scenario_spec, TASKS, bottom_units=[8], tower_units=[4])
    x = _batch(model, scenario_data[1].head(200))
    ids = _np(x["worker_group"])
    rows = np.flatnonzero(ids == 4)[:8]  # examples of the scenario with id 4
    some = {k: tf.gather(v, rows) for k, v in x.items()}
    with tf.GradientTape() as tape:
        out = model(some, training=True)
        loss = sum(tf.reduce_sum(tf.math.log(out[t])) for t in TASKS)
    backbone = model.backbone
    towers = backbone.towers
    grads = tape.gradient(loss, towers.kernels + towers.biases)
    own = 4 - 2
    for grad in grads:
        grad = grad.numpy()
        assert np.abs(grad[own]).sum() > 0
        others = np.delete(grad, own, axis=0)
        np.testing.assert_array_equal(others, 0.0)
    # In the forward pass every tower still contributes through the gate.
    g = _np(backbone.gate.gate_weights(backbone.bottom(model.concat_inputs(model.embedding(some)))))
    assert np.all(g > 0)


def test_star_inference_uses_each_scenarios_own_statistics(scenario_spec, scenario_data):
    train, test = scenario_data
    model = kr.models.STAR(scenario_spec, "income", hidden_units=[8], momentum=0.5)
    for batch in kr.data.from_pandas(train, model, batch_size=1024, labels=False):
        model(batch, training=True)  # training-mode calls update the moving statistics
    pn = model.backbone.pn
    np.testing.assert_array_equal(_np(pn.seen), [0, 0, 1, 1, 1, 1])
    means = _np(pn.moving_mean)
    assert not np.allclose(means[2], means[3])  # statistics differ by scenario
    x = _batch(model, test.head(300))
    ids = _np(x["worker_group"])
    before = _np(model.predict_outputs(x)["income"])
    shifted = means.copy()
    shifted[3] += 3.0  # scenario id 3 only
    pn.moving_mean.assign(shifted)
    after = _np(model.predict_outputs(x)["income"])
    np.testing.assert_allclose(after[ids != 3], before[ids != 3], rtol=1e-6)
    assert not np.allclose(after[ids == 3], before[ids == 3])


def _export_and_check(model, scenario_data, tmp_path):
    train, test = scenario_data
    model(_batch(model, train.head(1024)), training=True)  # e.g. STAR's moving statistics
    path = model.export(str(tmp_path / "export"), warmup_data=test.head(3))
    rows = test.head(64).copy()
    rows.loc[rows.index[:2], "worker_group"] = "a scenario never seen"  # OOV at serving
    differences = kr.export.check_export(model, path, rows, atol=1e-5)
    assert sorted(differences) == sorted(t.name for t in model.tasks)


@requires_tensorflow_backend
def test_star_exports_one_output_per_task(scenario_spec, scenario_data, tmp_path):
    _export_and_check(BUILDERS["star"](scenario_spec), scenario_data, tmp_path)


@pytest.mark.slow
@requires_tensorflow_backend
@pytest.mark.parametrize("name", sorted(set(BUILDERS) - {"star"}))
def test_exports_one_output_per_task(name, scenario_spec, scenario_data, tmp_path):
    _export_and_check(BUILDERS[name](scenario_spec), scenario_data, tmp_path)
