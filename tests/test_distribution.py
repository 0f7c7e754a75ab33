"""Data-parallel training equals single-device training, on each engine the design names.

Each test runs its body in a child process: logical CPU devices (TensorFlow)
and forced host devices (JAX) must be set up before the framework starts, and
the child picks its own backend whatever the parent's is. The models read
string categorical features, which the input pipeline (not the replicated
model) turns into ids.

Every model family is covered under `MirroredStrategy`: ranking (DCN,
DeepFM), multi-task (MMoE), multi-scenario (STAR), next-item (SASRec) and
two-tower retrieval; each is built and compiled under the strategy, trained,
evaluated, saved and reloaded, and exported, and compared with one device on
the same global batches. One known gap (STAR's per-replica normalization
statistics) is an `xfail(strict=True)` test that turns into a failure
(XPASS) once fixed. Multi-worker training is in
tests/test_multi_worker.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COMMON = textwrap.dedent(
    """
    import json
    import keras
    import numpy as np
    import keras_recsys as kr

    TASKS = ["income", "marital"]
    train, _, _ = kr.datasets.census_income()
    train = train.head(1024)
    features = [kr.Categorical(c) for c in
                ["education", "class_worker", "det_hh_fam_stat", "sex", "major_occ_code"]]
    features += [kr.Numeric(c, transform="log1p") for c in ["age", "weeks_worked"]]
    spec = kr.FeatureSpec(features, default_embedding_dim=4).adapt(train)
    assert spec.dtype_of("education") == "string"

    def make_model():
        return kr.models.DCN(spec, TASKS, num_cross_layers=1, projection_dim=4,
                             hidden_units=(8,))

    def max_difference(a, b):
        a = a if isinstance(a, list) else a.get_weights()
        b = b if isinstance(b, list) else b.get_weights()
        return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
                   for x, y in zip(a, b))
    """
)

MIRRORED = (
    textwrap.dedent(
        """
    import sys
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    """
    )
    + COMMON
    + textwrap.dedent(
        """
    keras.utils.set_random_seed(0)
    initial = make_model().get_weights()
    batches = kr.data.from_pandas(train, spec, batch_size=128, tasks=TASKS)  # no shuffle
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    result = {"replicas": strategy.num_replicas_in_sync}
    for name, optimizer in [("sgd", lambda: keras.optimizers.SGD(0.5)),
                            ("adam", lambda: keras.optimizers.Adam(0.01))]:
        single = make_model()
        single.set_weights(initial)
        single.compile(optimizer=optimizer())
        single_losses = single.fit(batches, epochs=1, verbose=0).history["loss"]
        with strategy.scope():
            mirrored = make_model()
            mirrored.set_weights(initial)
            mirrored.compile(optimizer=optimizer())
        mirrored_losses = mirrored.fit(batches, epochs=1, verbose=0).history["loss"]
        result[name] = {
            "mirrored_variables": isinstance(
                mirrored.trainable_weights[0].value, tf.distribute.DistributedValues),
            "single_losses": single_losses,
            "mirrored_losses": mirrored_losses,
            "weight_difference": max_difference(single, mirrored),
            "moved": max_difference(single, initial),
        }
    # A model trained under the strategy (mirrored variables) still exports.
    rows = train.head(100)
    path = mirrored.export(sys.argv[1])
    serving = tf.saved_model.load(path).signatures["serving_default"]
    served = serving(**{k: tf.constant(v.tolist() if v.dtype == object else v)
                        for k, v in kr.export.serving_inputs(spec, rows).items()})
    predicted = mirrored.predict(kr.data.from_pandas(rows, spec, labels=False), verbose=0)
    result["export_differences"] = {
        k: float(np.max(np.abs(served[k].numpy() - predicted[k]))) for k in TASKS}
    print("RESULT " + json.dumps(result))
    """
    )
)

DATA_PARALLEL = COMMON + textwrap.dedent(
    """
    import jax

    assert keras.backend.backend() == "jax"
    keras.utils.set_random_seed(0)
    initial = make_model().get_weights()
    batch = kr.data.from_pandas(train.head(256), spec, batch_size=256, tasks=TASKS)

    def one_step():
        model = make_model()
        model.set_weights(initial)
        model.compile(optimizer=keras.optimizers.SGD(0.5))
        loss = model.fit(batch, epochs=1, verbose=0).history["loss"][0]
        return model, loss

    single, single_loss = one_step()
    devices = keras.distribution.list_devices("cpu")
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    parallel, parallel_loss = one_step()
    print("RESULT " + json.dumps({
        "devices": len(devices),
        "variable_devices": len(parallel.trainable_weights[0].value.sharding.device_set),
        "single_loss": single_loss,
        "parallel_loss": parallel_loss,
        "weight_difference": max_difference(single, parallel),
    }))
    """
)


# Two logical CPUs, then the setup every family child shares.
TWO_CPUS = textwrap.dedent(
    """
    import contextlib, json, os, sys
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    import pandas as pd
    from keras import ops
    import keras_recsys as kr

    OUT, NAMES = sys.argv[1], sys.argv[2].split(",")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    class StepLosses(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.losses = []
        def on_train_batch_end(self, batch, logs=None):
            self.losses.append(float(logs["loss"]))

    def max_difference(a, b):
        return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b))

    def replica_divergence(model):
        # Mirrored copies of every variable must stay equal on both replicas.
        return max(
            float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
            for v in model.weights
            for a, b in [strategy.experimental_local_results(v.value)])

    def train_model(build, initial, batches, optimizer, distributed, control=False):
        with strategy.scope() if distributed else contextlib.nullcontext():
            model = build()
            model.set_weights(initial)
            optimizer = optimizer()
            if control:  # skip the repeated-rows fix, to show the test would see it
                optimizer._recsys_sums_repeats = True
            model.compile(optimizer=optimizer)
        steps = StepLosses()
        model.fit(batches, epochs=1, verbose=0, callbacks=[steps])
        return model, steps.losses
    """
)

# Ranking (DeepFM), multi-task (MMoE) and multi-scenario (STAR) on census rows.
POINTWISE = TWO_CPUS + textwrap.dedent(
    """
    TASKS = ["income", "marital"]
    train, _, test = kr.datasets.census_income()
    train = kr.datasets.add_worker_group(train.head(1024))
    rows = kr.datasets.add_worker_group(test.head(64))
    categorical = ["education", "class_worker", "det_hh_fam_stat", "sex", "major_occ_code"]
    numeric = [kr.Numeric(c, transform="log1p") for c in ["age", "weeks_worked"]]
    plain = kr.FeatureSpec([kr.Categorical(c) for c in categorical] + numeric, 4).adapt(train)
    scenario = kr.FeatureSpec(
        [kr.Categorical("worker_group", role="scenario")]
        + [kr.Categorical(c) for c in categorical] + numeric, 4).adapt(train)
    # Adagrad keeps sparse embedding updates (the repeated-rows fix sums them
    # with tf.unique); Adam's are dense.
    FAMILIES = {
        "deepfm": (plain, lambda: kr.models.DeepFM(plain, TASKS, hidden_units=(8,)),
                   lambda: keras.optimizers.Adagrad(0.5)),
        "mmoe": (plain, lambda: kr.models.MMoE(plain, TASKS, num_experts=2, expert_units=[8],
                                               tower_units=[4]),
                 lambda: keras.optimizers.Adam(0.02)),
        "star": (scenario, lambda: kr.models.STAR(scenario, TASKS, hidden_units=[8]),
                 lambda: keras.optimizers.Adam(0.02)),
    }
    result = {}
    for name in NAMES:
        spec, build, optimizer = FAMILIES[name]
        keras.utils.set_random_seed(0)
        initial = build().get_weights()
        batches = kr.data.from_pandas(train, spec, batch_size=128, tasks=TASKS)  # no shuffle
        single, single_losses = train_model(build, initial, batches, optimizer, False)
        mirrored, mirrored_losses = train_model(build, initial, batches, optimizer, True)
        first = next(iter(batches))[0]
        run = {
            "mirrored_variables": isinstance(
                mirrored.trainable_weights[0].value, tf.distribute.DistributedValues),
            "single_losses": single_losses,
            "mirrored_losses": mirrored_losses,
            "weight_difference": max_difference(single.get_weights(), mirrored.get_weights()),
            "moved": max_difference(single.get_weights(), initial),
            "replica_divergence": replica_divergence(mirrored),
            "single_evaluated": single.evaluate(batches, verbose=0, return_dict=True)["loss"],
            "mirrored_evaluated": mirrored.evaluate(batches, verbose=0, return_dict=True)["loss"],
            # The strategy splits each batch of 128 into rows 0-63 and 64-127.
            "ids_in_both_replicas": min(
                len(set(first[c].numpy()[:64].ravel()) & set(first[c].numpy()[64:].ravel()))
                for c in categorical),
        }
        if name == "deepfm":
            unfixed, _ = train_model(build, initial, batches, optimizer, True, control=True)
            run["unfixed_weight_difference"] = max_difference(
                single.get_weights(), unfixed.get_weights())
        x = next(iter(kr.data.from_pandas(rows, spec, batch_size=64, labels=False)))
        path = os.path.join(OUT, name + ".keras")
        mirrored.save(path)
        loaded = keras.models.load_model(path)
        # Outside the strategy (one device), the reloaded model is the reference.
        reloaded = loaded.predict(x, verbose=0)
        predicted = mirrored.predict(x, verbose=0)
        run["reload_weight_difference"] = max_difference(
            loaded.get_weights(), mirrored.get_weights())
        run["predict_vs_reloaded"] = max(
            float(np.max(np.abs(predicted[t] - reloaded[t]))) for t in TASKS)
        exported = mirrored.export(os.path.join(OUT, name))
        serving = tf.saved_model.load(exported).signatures["serving_default"]
        served = serving(**{k: tf.constant(v.tolist() if v.dtype == object else v)
                            for k, v in kr.export.serving_inputs(spec, rows).items()})
        run["export_vs_reloaded"] = max(
            float(np.max(np.abs(served[t].numpy() - reloaded[t]))) for t in TASKS)
        result[name] = run
    print("RESULT " + json.dumps(result))
    """
)

# Next-item (SASRec) and two-tower retrieval. Their losses are per-replica by
# nature: each replica's in-batch negatives (two-tower) and its own valid
# positions (SASRec's mean over positions) come from its share of the batch,
# so the single-device reference is the same model whose loss is the mean of
# its loss on each half of the batch.
SEQUENTIAL = TWO_CPUS + textwrap.dedent(
    """
    def per_replica_reference(cls):
        class PerReplicaLoss(cls):
            def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                             training=True):
                half = ops.shape(tf.nest.flatten(y_pred)[0])[0] // 2
                parts = []
                for part in (slice(None, half), slice(half, None)):
                    cut = lambda t: None if t is None else t[part]
                    parts.append(super().compute_loss(
                        tf.nest.map_structure(cut, x), tf.nest.map_structure(cut, y),
                        tf.nest.map_structure(cut, y_pred), cut(sample_weight), training))
                return ops.mean(ops.stack(parts))
        return PerReplicaLoss

    def sasrec():
        path = os.path.join(os.environ["SHARED_DATA"], "amazon_s3rec", "Beauty.txt")
        data = kr.datasets.amazon_beauty(path)
        data = kr.datasets.SequenceDataset(data.sequences.head(512), name="beauty-512")
        train, _, test = data.leave_one_out()
        spec = kr.FeatureSpec([kr.Sequence("history", max_length=20)], 8)
        spec.adapt(pd.DataFrame({"history": data.sequences["item_id"]}))
        # Full softmax and no dropout: nothing random in a training step.
        build = lambda cls=kr.models.SASRec: cls(
            spec, loss="softmax", dropout=0.0, num_blocks=1, seed=0)
        batches = kr.data.next_item_dataset(train, build(), batch_size=128, column="item_id")
        return build, batches, test.head(32)

    def two_tower():
        sequences = kr.datasets.movielens_100k_sequences().sequences[["user_id", "item_id"]]
        train, _, test = kr.datasets.leave_one_out(sequences)
        pairs = kr.datasets.next_item_pairs(train, max_history=20, columns=["user_id"])
        pairs = pairs.head(1024)
        spec = kr.FeatureSpec(
            [kr.Categorical("user_id"), kr.Categorical("item_id"),
             kr.Sequence("history", shares_vocabulary_with="item_id", max_length=20)],
            8).adapt(pairs)
        def build(cls=kr.models.TwoTower):
            model = cls(spec, candidate_features=["item_id"], tower_units=[16], output_dim=8)
            model.set_candidate_frequencies(np.bincount(
                spec.lookup("item_id", pairs["item_id"]), minlength=model.num_items))
            return model
        queries = pd.DataFrame({"user_id": test["user_id"].head(32),
                                "history": [h[-20:] for h in test["history"].head(32)],
                                "item_id": test["target"].head(32)})
        return build, kr.data.from_pandas(pairs, build(), batch_size=128), queries

    result = {}
    for name in NAMES:
        build, batches, queries = {"sasrec": sasrec, "two_tower": two_tower}[name]()
        keras.utils.set_random_seed(0)
        first = build()
        initial = first.get_weights()
        optimizer = lambda: keras.optimizers.SGD(0.5)
        reference, reference_losses = train_model(
            lambda: build(per_replica_reference(type(first))), initial, batches, optimizer, False)
        mirrored, mirrored_losses = train_model(build, initial, batches, optimizer, True)
        run = {
            "mirrored_variables": isinstance(
                mirrored.trainable_weights[0].value, tf.distribute.DistributedValues),
            "reference_losses": reference_losses,
            "mirrored_losses": mirrored_losses,
            "weight_difference": max_difference(
                reference.get_weights(), mirrored.get_weights()),
            "moved": max_difference(mirrored.get_weights(), initial),
            "replica_divergence": replica_divergence(mirrored),
            "reference_evaluated": reference.evaluate(batches, verbose=0),
            "mirrored_evaluated": mirrored.evaluate(batches, verbose=0),
        }
        x = kr.data.to_numpy(queries, mirrored)
        predicted = mirrored.recommend(x, k=5)
        path = os.path.join(OUT, name + ".keras")
        mirrored.save(path)
        loaded = keras.models.load_model(path).recommend(x, k=5)
        run["reload_same_items"] = bool(np.array_equal(
            ops.convert_to_numpy(loaded["item_ids"]), ops.convert_to_numpy(predicted["item_ids"])))
        run["reload_score_difference"] = float(np.max(np.abs(
            ops.convert_to_numpy(loaded["scores"]) - ops.convert_to_numpy(predicted["scores"]))))
        exported = mirrored.export(os.path.join(OUT, name), k=5)
        run["export"] = kr.export.check_export(mirrored, exported, queries)
        result[name] = run
    print("RESULT " + json.dumps(result))
    """
)


def run_child(script: str, *args: str, **env) -> dict:
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **env)
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def test_mirrored_strategy_matches_single_device_training(tmp_path):
    """MirroredStrategy over two logical CPUs trains DCN on string features to the
    same weights as one device (same initial weights and batches), with SGD and
    with Adam (whose sparse embedding gradients are concatenated across replicas);
    the mirrored model then exports and serves its own predictions."""
    result = run_child(MIRRORED, str(tmp_path / "mirrored"), KERAS_BACKEND="tensorflow")
    assert result["replicas"] == 2
    for name in ("sgd", "adam"):
        run = result[name]
        assert run["mirrored_variables"], name
        assert run["moved"] > 1e-2, name  # training changed the weights
        assert run["weight_difference"] < 1e-4, (name, run)
        for single, mirrored in zip(run["single_losses"], run["mirrored_losses"]):
            assert single == pytest.approx(mirrored, rel=1e-4), (name, run)
    assert max(result["export_differences"].values()) <= 1e-5


def test_jax_data_parallel_step_matches_single_device():
    """keras.distribution.DataParallel over two host devices takes one SGD step with
    the same loss and resulting weights as a single device."""
    pytest.importorskip("jax")
    result = run_child(
        DATA_PARALLEL,
        KERAS_BACKEND="jax",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
    )
    assert result["devices"] == 2
    assert result["variable_devices"] == 2
    assert result["parallel_loss"] == pytest.approx(result["single_loss"], rel=1e-5)
    assert result["weight_difference"] < 1e-5, result


def _check_trained_served_and_saved(name: str, run: dict) -> None:
    """What holds for every family under the strategy: mirrored variables that
    training moved and that stay equal on both replicas, a .keras file that
    reloads to the same weights, and an export that answers like it."""
    assert run["mirrored_variables"], name
    assert run["moved"] > 1e-3, (name, run)
    assert run["replica_divergence"] == 0.0, (name, run)
    if "reload_weight_difference" in run:
        assert run["reload_weight_difference"] == 0.0, (name, run)
        assert run["export_vs_reloaded"] <= 1e-5, (name, run)
    else:
        assert run["reload_same_items"] and run["reload_score_difference"] <= 1e-5, (name, run)
        assert run["export"]["item_ids"] == 0.0 and run["export"]["scores"] <= 1e-5, (name, run)


def _check_matches_single_device(name: str, run: dict, losses: str, evaluated: str) -> None:
    """The loss after every step of one epoch (8 steps; 4 for SASRec) and the
    final weights equal the single-device run on the same global batches."""
    assert len(run["mirrored_losses"]) == len(run[losses]) >= 4, (name, run)
    for single, mirrored in zip(run[losses], run["mirrored_losses"]):
        assert mirrored == pytest.approx(single, rel=1e-4), (name, run)
    assert run["weight_difference"] < 1e-4, (name, run)
    assert run["mirrored_evaluated"] == pytest.approx(run[evaluated], rel=1e-4), (name, run)


def test_mirrored_ranking_and_multitask_train_save_and_export_like_one_device(tmp_path):
    """DeepFM (Adagrad: sparse embedding updates) and MMoE (Adam) built and
    compiled under MirroredStrategy on two logical CPUs train to the same
    per-step losses, weights and evaluation as one device, save, reload and
    export. Every categorical id of the first batch repeats across the two
    replicas' halves, and without the repeated-rows fix the Adagrad run would
    land far away (the control)."""
    result = run_child(POINTWISE, str(tmp_path), "deepfm,mmoe", KERAS_BACKEND="tensorflow")
    for name in ("deepfm", "mmoe"):
        run = result[name]
        _check_trained_served_and_saved(name, run)
        _check_matches_single_device(name, run, "single_losses", "single_evaluated")
        assert run["predict_vs_reloaded"] <= 1e-5, (name, run)
        assert run["ids_in_both_replicas"] >= 1, (name, run)
    deepfm = result["deepfm"]
    assert deepfm["unfixed_weight_difference"] > 100 * max(deepfm["weight_difference"], 1e-6)


@pytest.fixture(scope="module")
def mirrored_star(tmp_path_factory):
    return run_child(
        POINTWISE,
        str(tmp_path_factory.mktemp("star")),
        "star",
        KERAS_BACKEND="tensorflow",
    )["star"]


@pytest.mark.slow
def test_mirrored_star_trains_saves_and_exports(mirrored_star):
    """STAR (multi-scenario) trains under MirroredStrategy, reloads and exports."""
    run = mirrored_star
    _check_trained_served_and_saved("star", {**run, "replica_divergence": 0.0})
    assert run["mirrored_losses"][-1] < run["mirrored_losses"][0]


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="STAR's PartitionedNormalization takes its per-scenario batch statistics "
    "from each replica's share of the batch and updates its moving statistics per "
    "replica (aggregation 'none'), so the replicas' copies drift apart; it needs the "
    "statistics summed across replicas (as BatchNormalization(synchronized=True)).",
)
def test_mirrored_star_matches_single_device(mirrored_star):
    """The replicas keep one copy of the statistics, predict like the saved model,
    and every step's loss and the evaluation equal one device's.

    (Weights are not compared here: a trial fix that all-reduces the statistics
    matched the losses within 3e-6 but left embedding rows 1e-2 apart after 8
    Adam steps, which the fix's author should explain first.)"""
    run = mirrored_star
    assert run["replica_divergence"] == 0.0, run
    assert run["predict_vs_reloaded"] <= 1e-5, run
    for single, mirrored in zip(run["single_losses"], run["mirrored_losses"]):
        assert mirrored == pytest.approx(single, rel=1e-4), run
    assert run["mirrored_evaluated"] == pytest.approx(run["single_evaluated"], rel=1e-4)


@pytest.fixture(scope="module")
def mirrored_sequential(tmp_path_factory):
    from tests.conftest import shared_data_path

    shared_data_path("amazon_s3rec", "Beauty.txt")  # skips when absent
    shared = os.path.dirname(os.path.dirname(shared_data_path("amazon_s3rec", "Beauty.txt")))
    return run_child(
        SEQUENTIAL,
        str(tmp_path_factory.mktemp("sequential")),
        "sasrec,two_tower",
        KERAS_BACKEND="tensorflow",
        SHARED_DATA=shared,
    )


@pytest.mark.slow
def test_mirrored_sequential_and_retrieval_train_save_and_export(mirrored_sequential):
    """SASRec and a two-tower model built and compiled under MirroredStrategy
    train (SGD), reload to the same recommendations and export."""
    for name in ("sasrec", "two_tower"):
        _check_trained_served_and_saved(name, mirrored_sequential[name])


@pytest.mark.slow
def test_mirrored_sequential_and_retrieval_match_per_replica_reference(mirrored_sequential):
    """Under the strategy each replica's in-batch negatives and valid positions
    come from its half of the batch: the losses and weights equal one device
    training on the mean of the two halves' losses."""
    for name in ("sasrec", "two_tower"):
        run = mirrored_sequential[name]
        _check_matches_single_device(name, run, "reference_losses", "reference_evaluated")
