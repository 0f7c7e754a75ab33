"""Data-parallel training equals single-device training, on each engine the design names.

Each test runs its body in a child process: logical CPU devices (TensorFlow)
and forced host devices (JAX) must be set up before the framework starts, and
the child picks its own backend whatever the parent's is. The models read
string categorical features, which the input pipeline (not the replicated
model) turns into ids.
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
