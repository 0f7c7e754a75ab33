"""Multi-task models on real data: training, equations, structure, losses, save, export.

Census income (income, marital) with a compact spec keeps tracing fast. ESMM
runs on a census funnel (click = never married, conversion = never married
and income > 50k: a conversion implies a click) for the backend matrix, and on
a MovieLens-100K slice (click = rating >= 4, conversion = rating 5) when that
data is available.
"""

import keras
import numpy as np
import pytest
from keras import ops

import keras_recsys as kr
from keras_recsys.models.multitask import (
    ESMMBackbone,
    MMoEBackbone,
    PLEBackbone,
    SharedBottomBackbone,
)
from tests.conftest import BACKEND, requires_tensorflow_backend
from tests.layers.test_cgc import cgc_numpy
from tests.layers.test_moe import mlp_numpy, softmax

CATEGORICAL = ["education", "class_worker", "det_hh_fam_stat", "sex", "major_occ_code"]
NUMERIC = ["age", "capital_gains", "weeks_worked"]
TASKS = ["income", "marital"]


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def bce(y, p):
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def with_funnel(df):
    df = df.copy()
    df["click"] = df["marital"]
    df["conversion"] = df["marital"] * df["income"]
    return df


@pytest.fixture(scope="module")
def data(census_small):
    train, test = census_small
    return with_funnel(train.head(4096)), with_funnel(test.head(1024))


@pytest.fixture(scope="module")
def spec(data):
    features = [kr.Categorical(c) for c in CATEGORICAL]
    features += [kr.Numeric(c, transform="log1p") for c in NUMERIC]
    return kr.FeatureSpec(features, default_embedding_dim=4).adapt(data[0])


BUILDERS = {
    "shared_bottom": lambda spec, **kw: kr.models.SharedBottom(
        spec, TASKS, bottom_units=[16], tower_units=[8], **kw
    ),
    "mmoe": lambda spec, **kw: kr.models.MMoE(
        spec, TASKS, num_experts=3, expert_units=[16], tower_units=[8], **kw
    ),
    "ple": lambda spec, **kw: kr.models.PLE(
        spec,
        TASKS,
        num_levels=2,
        num_task_experts=1,
        num_shared_experts=1,
        expert_units=[16],
        tower_units=[8],
        **kw,
    ),  # fmt: skip
    "esmm": lambda spec, **kw: kr.models.ESMM(spec, tower_units=[16, 8], **kw),
}


def _batch(model, df):
    return next(iter(kr.data.from_pandas(df, model, batch_size=len(df), labels=False)))


def _labelled_batch(model, df):
    return next(iter(kr.data.from_pandas(df, model, batch_size=len(df))))


def _fit(model, df, epochs=3, lr=0.01):
    """Trains without metrics (tracing AUCs costs seconds)."""
    model.compile(optimizer=keras.optimizers.Adam(lr), metrics=[])
    return model.fit(
        kr.data.from_pandas(df, model, batch_size=512, shuffle=True, seed=0),
        epochs=epochs,
        verbose=0,
    ).history


# ------------------------------------------------------------ train and save
@pytest.mark.multibackend
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_trains_on_real_data_and_round_trips(name, spec, data, tmp_path):
    train, test = data
    keras.utils.set_random_seed(0)
    model = BUILDERS[name](spec)
    losses = _fit(model, train)["loss"]
    assert losses[-1] < 0.8 * losses[0], losses
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    x = _batch(model, test.head(256))
    want, got = model.predict_outputs(x), loaded.predict_outputs(x)
    assert sorted(got) == sorted(want)
    for key in want:
        np.testing.assert_allclose(_np(got[key]), _np(want[key]), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ equations
def test_mmoe_matches_numpy_and_gates_sum_to_one(spec, data):
    model = BUILDERS["mmoe"](spec)
    x = _batch(model, data[1].head(64))
    x0 = _np(model.concat_inputs(model.embedding(x)))
    experts = np.stack([mlp_numpy(e, x0) for e in model.backbone.moe.experts], axis=1)
    logits = model.compute_logits(x)
    gates = model.gate_values(x)
    for k, task in enumerate(TASKS):
        g = softmax(x0 @ _np(model.backbone.moe.gates[k].dense.kernel))
        np.testing.assert_allclose(_np(gates[task]), g, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(_np(gates[task]).sum(-1), 1.0, rtol=1e-6)
        tower = mlp_numpy(model.backbone.towers.towers[task], np.einsum("bn,bnd->bd", g, experts))
        head = model.heads.heads[task]
        want = tower @ _np(head.kernel) + _np(head.bias)
        np.testing.assert_allclose(_np(logits[task]), want, rtol=1e-4, atol=1e-5)


def _ple_numpy(model, x0):
    inputs = [x0] * len(TASKS) + [x0]
    for level in model.backbone.levels:
        outputs, _ = cgc_numpy(level, inputs[: len(TASKS)], inputs[-1])
        inputs = outputs if level.output_shared else outputs + [None]
    logits = {}
    for k, task in enumerate(TASKS):
        head = model.heads.heads[task]
        tower = mlp_numpy(model.backbone.towers.towers[task], inputs[k])
        logits[task] = tower @ _np(head.kernel) + _np(head.bias)
    return logits


@pytest.mark.parametrize("levels", [1, 3])
def test_ple_matches_numpy(levels, spec, data):
    model = kr.models.PLE(
        spec, TASKS, num_levels=levels, num_task_experts=2, num_shared_experts=1,
        expert_units=[8], tower_units=[4],
    )  # fmt: skip
    assert [lv.output_shared for lv in model.backbone.levels] == [True] * (levels - 1) + [False]
    x = _batch(model, data[1].head(32))
    want = _ple_numpy(model, _np(model.concat_inputs(model.embedding(x))))
    got = model.compute_logits(x)
    for task in TASKS:
        np.testing.assert_allclose(_np(got[task]), want[task], rtol=1e-4, atol=1e-5)


def test_ple_with_one_level_is_cgc(spec, data):
    kwargs = dict(num_task_experts=2, num_shared_experts=2, expert_units=[8], tower_units=[4])
    ple = kr.models.PLE(spec, TASKS, num_levels=1, **kwargs)
    cgc = kr.models.CGC(spec, TASKS, **kwargs)
    assert [w.shape for w in cgc.get_weights()] == [w.shape for w in ple.get_weights()]
    assert cgc.backbone.levels[0].shared_gate is None  # one level: no shared gate
    cgc.set_weights(ple.get_weights())
    x = _batch(ple, data[1].head(32))
    for task in TASKS:
        np.testing.assert_allclose(_np(cgc(x)[task]), _np(ple(x)[task]), rtol=1e-6)
    with pytest.raises(ValueError, match="exactly one level"):
        kr.models.CGC(spec, TASKS, num_levels=2)


def test_shared_bottom_matches_numpy(spec, data):
    model = BUILDERS["shared_bottom"](spec)
    x = _batch(model, data[1].head(32))
    x0 = _np(model.concat_inputs(model.embedding(x)))
    bottom = mlp_numpy(model.backbone.bottom, x0)
    got = model.compute_logits(x)
    for task in TASKS:
        head = model.heads.heads[task]
        tower = mlp_numpy(model.backbone.towers.towers[task], bottom)
        want = tower @ _np(head.kernel) + _np(head.bias)
        np.testing.assert_allclose(_np(got[task]), want, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ backbones
# name: (backbone class, its own arguments, task units, width of every "hidden")
BACKBONES = {
    "shared_bottom": (
        SharedBottomBackbone,
        {"bottom_units": [16], "tower_units": [8]},
        {t: 1 for t in TASKS},
        8,
    ),
    "mmoe": (
        MMoEBackbone,
        {"num_experts": 3, "expert_units": [16], "tower_units": [8]},
        {t: 1 for t in TASKS},
        8,
    ),
    # No towers: "hidden" is the last level's per-task mixture.
    "ple": (
        PLEBackbone,
        {
            "num_levels": 2,
            "num_task_experts": 1,
            "num_shared_experts": 1,
            "expert_units": [16],
            "tower_units": [],
        },
        {t: 1 for t in TASKS},
        16,
    ),
    "esmm": (ESMMBackbone, {"tower_units": [16, 8]}, {"ctr": 1, "cvr": 1}, 8),
}


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_backbone_alone_gives_one_hidden_per_task_and_no_loss(name, spec, data):
    cls, arguments, task_units, width = BACKBONES[name]
    backbone = cls(spec, task_units, **arguments)
    x = next(iter(kr.data.from_pandas(data[1].head(16), spec, batch_size=16)))
    outputs = backbone(x)
    assert set(outputs) == {"hidden"}  # no logit-level terms in these bodies
    assert {k: tuple(v.shape) for k, v in outputs["hidden"].items()} == {
        t: (16, width) for t in task_units
    }
    assert not backbone.losses
    config = backbone.get_config()
    assert {k: config[k] for k in arguments} == arguments
    rebuilt = cls.from_config(config)
    again = rebuilt(x)["hidden"]
    assert {k: tuple(v.shape) for k, v in again.items()} == {t: (16, width) for t in task_units}
    assert [w.shape for w in rebuilt.get_weights()] == [w.shape for w in backbone.get_weights()]


# ----------------------------------------------------------------------- ESMM
@pytest.mark.multibackend
def test_esmm_outputs_and_entire_space_loss(spec, data):
    model = BUILDERS["esmm"](spec)
    model.compile(optimizer="adam")
    x, y = _labelled_batch(model, data[1].head(128))
    out = model.predict_outputs(x)
    assert sorted(out) == ["ctcvr", "ctr", "cvr"]
    ctr, cvr, ctcvr = (_np(out[k]) for k in ("ctr", "cvr", "ctcvr"))
    np.testing.assert_allclose(ctcvr, ctr * cvr, rtol=1e-6)
    logits = model.compute_logits(x)  # the stable logit of the product
    np.testing.assert_allclose(sigmoid(_np(logits["ctcvr"]))[:, 0], ctcvr, rtol=1e-4, atol=1e-6)
    # The loss is BCE(click, pCTR) + BCE(conversion, pCTCVR): pCVR is not supervised.
    loss = _np(model.compute_loss(x, y, model(x)))
    click, conversion = _np(y["ctr"])[:, 0], _np(y["ctcvr"])[:, 0]
    want = bce(click, ctr).mean() + bce(conversion, ctcvr).mean()
    np.testing.assert_allclose(loss, want, rtol=1e-4)


def test_esmm_checks_its_tasks(spec):
    with pytest.raises(ValueError, match="exactly two binary tasks"):
        kr.models.ESMM(spec, tasks=["click"])
    with pytest.raises(ValueError, match="sample selection bias"):
        kr.models.ESMM(spec, tasks=[kr.Task("ctr"), kr.Task("ctcvr", mask="ctr")])
    with pytest.raises(ValueError, match="name the tasks otherwise"):
        kr.models.ESMM(spec, tasks=["ctr", "cvr"])


@pytest.fixture(scope="module")
def movielens_slice():
    try:
        train, _, test = kr.datasets.movielens_100k()
    except FileNotFoundError as error:
        pytest.skip(f"MovieLens-100K is not available here: {error}".splitlines()[0])
    return train.head(6000), test.head(2000)


def test_esmm_learns_the_movielens_funnel(movielens_slice):
    train, test = movielens_slice
    spec = kr.datasets.movielens_feature_spec(embedding_dim=8).adapt(train)
    keras.utils.set_random_seed(0)
    model = kr.models.ESMM(spec, tower_units=[32, 16])
    losses = _fit(model, train, epochs=2, lr=0.01)["loss"]
    assert losses[-1] < 0.95 * losses[0], losses
    cvr = kr.Task("cvr", label="conversion", mask="click")
    metrics = kr.metrics.evaluate(model, test, group_column="user_id", tasks=[*model.tasks, cvr])
    assert metrics["ctr"]["auc"] > 0.65 and metrics["ctcvr"]["auc"] > 0.65, metrics
    assert metrics["cvr"]["count"] == int(test["click"].sum())
    assert 0 < metrics["ctr"]["ne"] < 1


# --------------------------------------------------------------- task masks
def test_masked_task_is_computed_on_its_space_only(spec, data):
    """Labels outside a task's mask change nothing; its loss and metrics see its rows only."""
    train, test = data
    tasks = [kr.Task("click"), kr.Task("cvr", label="conversion", mask="click")]
    keras.utils.set_random_seed(0)
    model = kr.models.SharedBottom(spec, tasks, bottom_units=[8], tower_units=[])
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    history = model.fit(kr.data.from_pandas(train, model, batch_size=1024), epochs=2, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    noisy = test.copy()
    outside = noisy["click"] == 0
    noise = np.random.default_rng(0).integers(0, 2, outside.sum()).astype("int32")
    noisy.loc[outside, "conversion"] = noise
    assert (noisy["conversion"] != test["conversion"]).any()
    losses = []
    for frame in (test, noisy):
        x, y, w = next(iter(kr.data.from_pandas(frame, model, batch_size=len(frame))))
        out = model.predict_outputs(x)
        losses.append(_np(model.compute_loss(x, y, model(x), w)))
    assert losses[0] == losses[1]  # so are its gradients: outside rows weigh 0
    # The masked loss is the mean over the clicked rows.
    clicked = test["click"].to_numpy() == 1
    p_click, p_cvr = _np(out["click"]).ravel(), _np(out["cvr"]).ravel()
    want = bce(test["click"].to_numpy(), p_click).mean()
    want += bce(test["conversion"].to_numpy()[clicked], p_cvr[clicked]).mean()
    np.testing.assert_allclose(losses[0], want, rtol=1e-4)
    # Keras' metrics of the masked task are over the clicked rows too.
    result = model.evaluate(
        kr.data.from_pandas(noisy, model, batch_size=len(test)), verbose=0, return_dict=True
    )
    reference = kr.metrics.auc(test["conversion"].to_numpy()[clicked], p_cvr[clicked])
    assert abs(result["cvr_auc"] - reference) < 2e-3


# ------------------------------------------------------------ loss weighting
@pytest.mark.multibackend
def test_uncertainty_weighting_learns_log_variances(spec, data, tmp_path):
    train, test = data
    keras.utils.set_random_seed(0)
    model = BUILDERS["mmoe"](spec, loss_weighting="uncertainty")
    assert model.get_config()["loss_weighting"] == "uncertainty"
    model.compile(optimizer=keras.optimizers.Adam(0.01), metrics=[])
    x, y = _labelled_batch(model, test.head(256))
    logits = model(x)
    out = model.serving_outputs(logits)
    s = np.array([0.3, -0.2], "float32")
    model.loss_weighter.log_variances.assign(s)
    per_task = np.array([bce(_np(y[t]), _np(out[t])).mean() for t in TASKS])
    want = np.sum(np.exp(-s) * per_task + s)
    np.testing.assert_allclose(_np(model.compute_loss(x, y, logits)), want, rtol=1e-4)
    model.loss_weighter.log_variances.assign([0.0, 0.0])
    history = model.fit(
        kr.data.from_pandas(train, model, batch_size=512, shuffle=True, seed=0),
        epochs=3,
        verbose=0,
    ).history
    assert {"income_loss", "marital_loss", "loss"} <= set(history)
    assert history["income_loss"][-1] < history["income_loss"][0]
    learned = _np(model.loss_weighter.log_variances)
    assert np.all(np.abs(learned) > 1e-3), learned
    path = str(tmp_path / "uncertainty.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(_np(loaded.loss_weighter.log_variances), learned, rtol=1e-6)


def test_learned_weighting_rejects_loss_weights(spec):
    model = BUILDERS["shared_bottom"](spec, loss_weighting="uncertainty")
    with pytest.raises(ValueError, match="loss_weights"):
        model.compile(loss_weights={"income": 1.0, "marital": 2.0})
    with pytest.raises(ValueError, match="one loss per task"):
        model.compile(loss="binary_crossentropy")
    with pytest.raises(ValueError, match="loss_weighting must be one of"):
        BUILDERS["shared_bottom"](spec, loss_weighting="dwa")


def _gradnorm_shared_bottom(spec):
    """SharedBottom with GradNorm (α = 1) from task weights 1 and 3 (w = [0.5, 1.5])."""
    tasks = [kr.Task("income", weight=1.0), kr.Task("marital", weight=3.0)]
    keras.utils.set_random_seed(0)
    return kr.models.SharedBottom(
        spec, tasks, bottom_units=[16], tower_units=[8], loss_weighting="gradnorm",
        gradnorm_alpha=1.0,
    )  # fmt: skip


# TensorFlow only: on JAX and PyTorch GradNorm's train step is checked exactly by
# test_gradnorm_step_matches_the_paper; this is the same step, repeated by `fit`.
def test_gradnorm_balances_task_weights(spec, data):
    train, _ = data
    model = _gradnorm_shared_bottom(spec)
    np.testing.assert_allclose(_np(model.loss_weighter.task_weights), [0.5, 1.5])
    history = _fit(model, train.head(2048), epochs=2)
    assert history["loss"][-1] < history["loss"][0]
    weights = _np(model.loss_weighter.task_weights)
    np.testing.assert_allclose(weights.sum(), 2.0, rtol=1e-5)
    assert not np.allclose(weights, [0.5, 1.5], atol=1e-3), weights
    assert np.all(_np(model.loss_weighter.initial_losses) > 0)
    assert kr.models.SharedBottom.from_config(model.get_config()).loss_weighting == "gradnorm"


def _task_gradients(model, x, y, variables):
    """(L_k, [dL_k/dv for v in variables]) for every task k, by the backend's own
    autodiff outside any train step (None gradients as zeros)."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape(persistent=True) as tape:
            losses = model.task_losses(y, model(x, training=True))
        grads = [tape.gradient(loss, variables) for loss in losses]
    elif BACKEND == "torch":
        import torch

        losses = model.task_losses(y, model(x, training=True))
        values = [v.value for v in variables]
        grads = [
            torch.autograd.grad(loss, values, retain_graph=True, allow_unused=True)
            for loss in losses
        ]
    else:
        import jax

        positions = [[id(w) for w in model.trainable_variables].index(id(v)) for v in variables]
        base = [v.value for v in model.trainable_variables]
        fixed = [v.value for v in model.non_trainable_variables]

        def task_losses(values):
            full = list(base)
            for position, value in zip(positions, values):
                full[position] = value
            y_pred, _ = model.stateless_call(full, fixed, x, training=True)
            return model.task_losses(y, y_pred)

        losses = task_losses([base[i] for i in positions])
        grads = [
            jax.grad(lambda values, k=k: task_losses(values)[k])([base[i] for i in positions])
            for k in range(len(losses))
        ]
    as_numpy = [
        [np.zeros(v.shape) if g is None else _np(g) for g, v in zip(row, variables)]
        for row in grads
    ]
    return [float(_np(loss)) for loss in losses], as_numpy


@pytest.mark.multibackend
def test_gradnorm_step_matches_the_paper(spec, data):
    """One SGD step: w follows -lr * sign(G_k - mean G) * ||grad_W L_k|| (first
    step: every r_k = 1), renormalized to sum to K; the network follows
    -lr * grad(sum_k w_k L_k), untouched by GradNorm's term."""
    train, _ = data
    model = _gradnorm_shared_bottom(spec)
    lr = 0.5
    model.compile(optimizer=keras.optimizers.SGD(lr), metrics=[])
    x, y = (
        {k: _np(v) for k, v in part.items()} for part in _labelled_batch(model, train.head(512))
    )
    weighter = model.loss_weighter
    network = [v for v in model.trainable_variables if v is not weighter.task_weights]
    shared = model.gradnorm_variables()
    losses, grads = _task_gradients(model, x, y, network)
    shared_rows = [
        [g for g, v in zip(row, network) if any(v is s for s in shared)] for row in grads
    ]
    norms = np.array([np.sqrt(sum(np.sum(g**2) for g in row)) for row in shared_rows])
    assert np.all(norms > 0)
    w = _np(weighter.task_weights).astype(np.float64)
    weighted = w * norms
    gradient = np.sign(weighted - weighted.mean()) * norms
    expected = np.maximum(w - lr * gradient, 1e-4)
    expected = 2 * expected / expected.sum()
    before = [_np(v) for v in network]

    model.train_on_batch(x, y)

    np.testing.assert_allclose(_np(weighter.task_weights), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_np(weighter.initial_losses), losses, rtol=1e-5)
    for variable, old, *task_grads in zip(network, before, *grads):
        step = sum(wk * g for wk, g in zip(w, task_grads))
        np.testing.assert_allclose(_np(variable), old - lr * step, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------- export
def _export_and_check(model, data, tmp_path):
    train, test = data
    _fit(model, train.head(1024), epochs=1)
    path = model.export(str(tmp_path / "export"), warmup_data=test.head(3))
    rows = test.head(64).copy()
    rows.loc[rows.index[:2], "education"] = "an education never seen"  # OOV at serving
    return kr.export.check_export(model, path, rows, atol=1e-5)


@requires_tensorflow_backend
def test_esmm_exports_ctr_cvr_ctcvr(spec, data, tmp_path):
    differences = _export_and_check(BUILDERS["esmm"](spec), data, tmp_path)
    assert sorted(differences) == ["ctcvr", "ctr", "cvr"]


@pytest.mark.slow
@requires_tensorflow_backend
@pytest.mark.parametrize("name", ["shared_bottom", "mmoe", "ple"])
def test_exports_one_output_per_task(name, spec, data, tmp_path):
    differences = _export_and_check(BUILDERS[name](spec), data, tmp_path)
    assert sorted(differences) == TASKS
