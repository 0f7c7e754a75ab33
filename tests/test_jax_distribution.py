"""`keras.distribution` on JAX: data parallel, embedding tables sharded by rows, multi-process.

Every distributed run happens in a child process: the forced host devices
(`--xla_force_host_platform_device_count`) and `jax.distributed` must be set
up before JAX starts, and the child picks the JAX backend whatever the
parent's is. Each run is compared with a single-device run of the same
model from the same initial weights on the same batches.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pandas as pd
import pytest

import keras_recsys as kr
from keras_recsys import distribution as kr_distribution
from tests.conftest import shared_data_path

pytest.importorskip("jax")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Imports and helpers shared by the children.
HELPERS = textwrap.dedent(
    """
    import json
    import sys

    # The parent preprocessed the data: the children never load TensorFlow.
    sys.modules["tensorflow"] = None
    import keras
    import numpy as np
    import pandas as pd
    import keras_recsys as kr

    assert keras.backend.backend() == "jax"

    def step_losses(model, x, y, batch_size):
        # Loss after every step (Keras' running mean over the epoch).
        losses = []
        record = keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda batch, logs: losses.append(float(logs["loss"])))
        model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0,
                  callbacks=[record])
        return losses

    def max_difference(a, b):
        return max(float(np.max(np.abs(np.asarray(p) - np.asarray(q))))
                   for p, q in zip(a, b))

    def compare(make_model, x, y, batch_size, distribution, optimizer):
        # Single device, then the same model under `distribution`, both from
        # the same initial weights.
        keras.utils.set_random_seed(0)
        single = make_model()
        initial = single.get_weights()
        single.compile(optimizer=optimizer())
        single_losses = step_losses(single, x, y, batch_size)
        keras.distribution.set_distribution(distribution)
        try:
            keras.utils.set_random_seed(0)
            parallel = make_model()
            parallel.set_weights(initial)
            parallel.compile(optimizer=optimizer())
            parallel_losses = step_losses(parallel, x, y, batch_size)
        finally:
            keras.distribution.set_distribution(None)
        return single, parallel, {
            "single_losses": single_losses,
            "parallel_losses": parallel_losses,
            "loss_difference": max(abs(a - b) for a, b in zip(single_losses, parallel_losses)),
            "weight_difference": max_difference(single.get_weights(), parallel.get_weights()),
            "moved": max_difference(single.get_weights(), initial),
        }
    """
)

# Census rows as preprocessed arrays (the ids the input pipeline makes).
CENSUS = HELPERS + textwrap.dedent(
    """
    folder = sys.argv[1]
    TASKS = ["income", "marital"]
    spec = kr.FeatureSpec.from_json(open(f"{folder}/spec.json").read())
    arrays = np.load(f"{folder}/census.npz")
    x = {k[2:]: arrays[k] for k in arrays.files if k.startswith("x_")}
    y = {k[2:]: arrays[k] for k in arrays.files if k.startswith("y_")}
    """
)

DATA_PARALLEL_CENSUS = CENSUS + textwrap.dedent(
    """
    devices = keras.distribution.list_devices("cpu")
    builders = {
        "dcn": lambda: kr.models.DCN(spec, TASKS, num_cross_layers=2, projection_dim=4,
                                     hidden_units=(16,)),
        "mmoe": lambda: kr.models.MMoE(spec, TASKS, num_experts=3, expert_units=(16,),
                                       tower_units=(8,)),
    }
    result = {"devices": len(devices)}
    for name, make_model in builders.items():
        _, parallel, run = compare(
            make_model, x, y, 256, keras.distribution.DataParallel(devices=devices),
            lambda: keras.optimizers.Adam(1e-2))
        run["variable_devices"] = len(parallel.trainable_weights[0].value.sharding.device_set)
        result[name] = run
    print("RESULT " + json.dumps(result))
    """
)

DATA_PARALLEL_SASREC = HELPERS + textwrap.dedent(
    """
    folder = sys.argv[1]
    spec = kr.FeatureSpec.from_json(open(f"{folder}/spec.json").read())
    ids = np.load(f"{folder}/sequences.npz")["ids"]

    def make_model():
        return kr.models.SASRec(spec, dropout=0.1, loss="bce", seed=0)

    x, y = make_model().training_pair(ids)
    devices = keras.distribution.list_devices("cpu")
    _, parallel, run = compare(
        make_model, x, y, 128, keras.distribution.DataParallel(devices=devices),
        lambda: keras.optimizers.Adam(1e-2))
    run["devices"] = len(devices)
    run["table_devices"] = len(
        parallel.backbone.item_embedding.embeddings.value.sharding.device_set)
    print("RESULT " + json.dumps(run))
    """
)

MODEL_PARALLEL_SASREC = HELPERS + textwrap.dedent(
    """
    from keras_recsys import distribution as kr_distribution

    folder = sys.argv[1]
    spec = kr.FeatureSpec.from_json(open(f"{folder}/spec.json").read())
    ids = np.load(f"{folder}/sequences.npz")["ids"]

    def make_model():
        return kr.models.SASRec(spec, dropout=0.1, loss="bce", seed=0)

    x, y = make_model().training_pair(ids)
    devices = keras.distribution.list_devices("cpu")
    # 1,000 item rows split in halves: no `uneven` needed.
    distribution = kr_distribution.model_parallel(spec, model_axis_size=2, devices=devices)
    single, parallel, run = compare(
        make_model, x, y, 128, distribution, lambda: keras.optimizers.Adam(1e-2))
    histories = x["history"][:64]
    single_scores = np.asarray(single.scorer().predict_on_batch(histories))
    keras.distribution.set_distribution(distribution)
    scores = np.asarray(parallel.scorer().predict_on_batch(histories))
    run["score_difference"] = float(np.max(np.abs(scores - single_scores)))
    for name, variable in [("table", parallel.backbone.item_embedding.embeddings),
                           ("probability", parallel.head.item_probability)]:
        run[name] = {"shape": list(variable.shape), "shards": sorted(
            {tuple(s.data.shape) for s in variable.value.addressable_shards})}
    print("RESULT " + json.dumps(run))
    """
)

MODEL_PARALLEL = CENSUS + textwrap.dedent(
    """
    from keras_recsys import distribution as kr_distribution

    devices = keras.distribution.list_devices("cpu")
    distribution = kr_distribution.model_parallel(
        spec, model_axis_size=2, devices=devices, uneven="replicate")

    def make_model():
        return kr.models.DeepFM(spec, TASKS, hidden_units=(16,))

    single, parallel, run = compare(
        make_model, x, y, 256, distribution, lambda: keras.optimizers.Adam(1e-2))

    def placement(variable):
        # Shapes of the shards on the devices, and whether two devices hold
        # different rows (sharded) or all the same ones (replicated).
        shards = variable.value.addressable_shards
        return {"shapes": sorted({tuple(s.data.shape) for s in shards}),
                "rows": sorted({(s.index[0].start or 0) for s in shards}),
                "shape": list(variable.shape), "count": len(shards)}

    single_predictions = single.predict(x, batch_size=256, verbose=0)
    keras.distribution.set_distribution(distribution)
    run["placements"] = {v.path.split("/", 1)[1]: placement(v) for v in parallel.weights}
    run["optimizer_placements"] = {
        v.path: placement(v) for v in parallel.optimizer.variables if len(v.shape) == 2}
    predictions = parallel.predict(x, batch_size=256, verbose=0)
    run["predict_difference"] = max(
        float(np.max(np.abs(predictions[t] - single_predictions[t]))) for t in TASKS)
    parallel.save(f"{folder}/deepfm.keras")
    loaded = keras.models.load_model(f"{folder}/deepfm.keras")
    reloaded = loaded.predict(x, batch_size=256, verbose=0)
    run["reload_difference"] = max(
        float(np.max(np.abs(reloaded[t] - predictions[t]))) for t in TASKS)
    run["reloaded_placements"] = {v.path.split("/", 1)[1]: placement(v) for v in loaded.weights}
    print("RESULT " + json.dumps(run))
    """
)

# One process of a two-process JAX job: feeds its half of every global batch.
WORKER = (
    textwrap.dedent(
        """
    import sys
    import jax

    process_id, port = int(sys.argv[2]), sys.argv[3]
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                               process_id=process_id)
    """
    )
    + CENSUS
    + textwrap.dedent(
        """
    GLOBAL_BATCH = 256
    devices = keras.distribution.list_devices("cpu")
    # Each process already holds its own part of the data, so Keras must not
    # shard it again (which it can only do for tf.data input).
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False))
    keras.utils.set_random_seed(0)
    model = kr.models.DCN(spec, TASKS, num_cross_layers=2, projection_dim=4, hidden_units=(16,))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    half = GLOBAL_BATCH // 2
    rows = np.concatenate([np.arange(start + process_id * half, start + (process_id + 1) * half)
                           for start in range(0, len(y["income"]), GLOBAL_BATCH)])
    local_x = {k: v[rows] for k, v in x.items()}
    local_y = {k: v[rows] for k, v in y.items()}
    losses = step_losses(model, local_x, local_y, half)
    print("RESULT " + json.dumps({
        "processes": jax.process_count(), "devices": len(devices),
        "local_devices": jax.local_device_count(), "losses": losses,
        "weights": [np.asarray(w).tolist() for w in model.get_weights()]}))
    """
    )
)

SINGLE_PROCESS = CENSUS + textwrap.dedent(
    """
    keras.utils.set_random_seed(0)
    model = kr.models.DCN(spec, TASKS, num_cross_layers=2, projection_dim=4, hidden_units=(16,))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    losses = step_losses(model, x, y, 256)
    print("RESULT " + json.dumps({
        "losses": losses, "weights": [np.asarray(w).tolist() for w in model.get_weights()]}))
    """
)


def _environment(devices: int) -> dict:
    return dict(
        os.environ,
        TF_CPP_MIN_LOG_LEVEL="2",
        KERAS_BACKEND="jax",
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
    )


def _start(script: str, *args: str, devices: int = 4) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_environment(devices),
        cwd=ROOT,
    )


def _result(process: subprocess.Popen, timeout: float = 300) -> dict:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        raise AssertionError(f"child timed out: {stderr[-4000:]}") from None
    assert process.returncode == 0, stderr[-4000:]
    line = [x for x in stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def _run(script: str, *args: str, devices: int = 4) -> dict:
    return _result(_start(script, *args, devices=devices))


def _assert_matches(run: dict, name: str, loss_tolerance: float, weight_tolerance: float):
    assert run["moved"] > 1e-2, (name, run)  # training changed the weights
    assert len(run["single_losses"]) == len(run["parallel_losses"]) >= 4, (name, run)
    assert run["loss_difference"] < loss_tolerance, (name, run)
    assert run["weight_difference"] < weight_tolerance, (name, run)


@pytest.fixture(scope="module")
def census_folder(tmp_path_factory):
    """1,024 census rows preprocessed here (string categories -> ids) for the children."""
    train, _, _ = kr.datasets.census_income()
    train = train.head(1024)
    features = [
        kr.Categorical(c)
        for c in ["education", "class_worker", "det_hh_fam_stat", "sex", "major_occ_code"]
    ]
    features += [kr.Numeric(c, transform="log1p") for c in ["age", "weeks_worked"]]
    spec = kr.FeatureSpec(features, default_embedding_dim=4).adapt(train)
    pipeline = kr.data.from_pandas(train, spec, batch_size=len(train), tasks=["income", "marital"])
    x, y = next(iter(pipeline.as_numpy_iterator()))
    folder = tmp_path_factory.mktemp("census")
    arrays = {f"x_{k}": v for k, v in x.items()}
    arrays.update({f"y_{k}": v for k, v in y.items()})
    np.savez(folder / "census.npz", **arrays)
    (folder / "spec.json").write_text(spec.to_json())
    return str(folder)


@pytest.fixture(scope="module")
def sequence_folder(tmp_path_factory):
    """512 Amazon Beauty histories (leave-one-out train split) as padded item ids."""
    dataset = kr.datasets.amazon_beauty(shared_data_path("amazon_s3rec", "Beauty.txt"))
    dataset = kr.datasets.SequenceDataset(dataset.sequences.head(600), name="beauty-600")
    train, _, _ = dataset.leave_one_out()
    # The 998 most frequent items (+ 2 reserved ids): a table that divides 2 and 4.
    spec = kr.FeatureSpec([kr.Sequence("history", max_length=20, max_tokens=998)], 16)
    spec.adapt(pd.DataFrame({"history": dataset.sequences["item_id"]}))
    folder = tmp_path_factory.mktemp("sequences")
    ids = spec.sequence_ids("history", train["item_id"].head(512), 21)
    np.savez(folder / "sequences.npz", ids=ids)
    (folder / "spec.json").write_text(spec.to_json())
    return str(folder)


def test_data_parallel_ranking_and_multitask_match_single_device(census_folder):
    """DataParallel over 4 host devices trains DCN and MMoE on census (4 Adam steps of
    256 rows) to the per-step losses and weights of one device."""
    result = _run(DATA_PARALLEL_CENSUS, census_folder)
    assert result["devices"] == 4
    for name in ("dcn", "mmoe"):
        run = result[name]
        assert run["variable_devices"] == 4, name
        _assert_matches(run, name, loss_tolerance=1e-5, weight_tolerance=1e-5)


@pytest.mark.slow
def test_data_parallel_sasrec_matches_single_device(sequence_folder):
    """DataParallel over 4 host devices trains SASRec (dropout, sampled BCE negatives)
    on Beauty sequences to the losses and weights of one device: the random draws do
    not depend on how the batch is split."""
    run = _run(DATA_PARALLEL_SASREC, sequence_folder)
    assert run["devices"] == 4 and run["table_devices"] == 4
    _assert_matches(run, "sasrec", loss_tolerance=1e-5, weight_tolerance=1e-5)


def test_model_parallel_shards_tables_by_rows_and_matches_single_device(census_folder):
    """On a (2 data, 2 model) mesh, DeepFM's embedding and first-order tables are split
    by rows (with their Adam moments), the rest replicated; 4 steps give the losses,
    weights and predictions of one device, and the model saves and reloads sharded."""
    run = _run(MODEL_PARALLEL, census_folder)
    _assert_matches(run, "deepfm", loss_tolerance=1e-5, weight_tolerance=1e-5)
    assert run["predict_difference"] < 1e-5 and run["reload_difference"] < 1e-6, run
    # Census tables: 19, 11, 26, 4 and 16 rows; the odd ones stay whole.
    sharded = ["det_hh_fam_stat", "sex", "major_occ_code"]
    for placements in (run["placements"], run["reloaded_placements"]):
        for feature in sharded:
            for path in (
                f"backbone/embedding/table_{feature}/embeddings",
                f"backbone/linear/w_{feature}/embeddings",
            ):
                placement = placements[path]
                rows, width = placement["shape"]
                assert placement["count"] == 4, (path, placement)
                assert placement["shapes"] == [[rows // 2, width]], (path, placement)
                assert placement["rows"] == [0, rows // 2], (path, placement)
        for path in (
            "backbone/embedding/table_education/embeddings",
            "backbone/mlp/dense_0/kernel",
        ):
            placement = placements[path]
            assert placement["shapes"] == [placement["shape"]], (path, placement)
    moments = [p for path, p in run["optimizer_placements"].items() if "table_sex" in path]
    assert len(moments) == 2  # Adam's two moments
    for placement in moments:
        assert placement["shapes"] == [[2, 4]] and placement["rows"] == [0, 2], placement


@pytest.mark.slow
def test_model_parallel_sasrec_splits_its_item_table(sequence_folder):
    """On a (2 data, 2 model) mesh SASRec's item table (which its head also scores
    with) and the head's item probabilities are split by rows; training and full-catalog
    scores match one device."""
    run = _run(MODEL_PARALLEL_SASREC, sequence_folder)
    _assert_matches(run, "sasrec", loss_tolerance=1e-5, weight_tolerance=1e-5)
    assert run["table"] == {"shape": [1000, 16], "shards": [[500, 16]]}, run
    assert run["probability"] == {"shape": [1000], "shards": [[500]]}, run
    assert run["score_difference"] < 1e-4, run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_data_parallel_matches_one_process(census_folder):
    """Two JAX processes on loopback (jax.distributed, Gloo CPU collectives), each with
    2 host devices and half of every 256-row batch, train DCN like one process on the
    whole batches."""
    port = str(_free_port())
    reference = _start(SINGLE_PROCESS, census_folder, devices=1)
    workers = [_start(WORKER, census_folder, str(i), port, devices=2) for i in range(2)]
    try:
        results = [_result(w) for w in workers]
        single = _result(reference)
    finally:
        # A worker that failed leaves its peer waiting for it: stop the rest.
        for process in [reference, *workers]:
            if process.poll() is None:
                process.kill()
    for result in results:
        assert result["processes"] == 2 and result["devices"] == 4
        assert result["local_devices"] == 2
        assert len(result["losses"]) == len(single["losses"]) == 4
        np.testing.assert_allclose(result["losses"], single["losses"], rtol=1e-5)
        for got, want in zip(result["weights"], single["weights"]):
            np.testing.assert_allclose(got, want, atol=1e-5)
    assert results[0]["losses"] == results[1]["losses"]


# ---------------------------------------------------------------- in-process


@pytest.fixture(scope="module")
def small_spec():
    train, _, _ = kr.datasets.census_income()
    train = train.head(1024)
    features = [kr.Categorical(c) for c in ["education", "sex", "major_occ_code"]]
    features += [kr.Numeric("age", transform="log1p"), kr.Numeric("weeks_worked", buckets=6)]
    features += [kr.Crossed("sex_x_occ", ["sex", "major_occ_code"], num_bins=30)]
    return kr.FeatureSpec(features, default_embedding_dim=4).adapt(train)


def _mesh(model_shards: int) -> keras.distribution.DeviceMesh:
    devices = [f"cpu:{i}" for i in range(2 * model_shards)]
    return keras.distribution.DeviceMesh((2, model_shards), ["data", "model"], devices)


def _layouts(layout_map, model) -> dict:
    return {
        v.path: (None if layout_map[v.path] is None else tuple(layout_map[v.path].axes))
        for v in model.weights
    }


def test_rules_from_the_spec_shard_the_tables_the_model_holds(small_spec):
    """The spec's rules (nothing built) and the built model's give every variable the
    same layout: the tables (rows on "model") and nothing else; with fused tables too."""
    from keras_recsys.layers.fused_embedding import FusedEmbedding

    fused_spec = kr.FeatureSpec.from_config({**small_spec.get_config(), "fuse_tables": True})
    builders = {
        "deepfm": lambda spec: kr.models.DeepFM(spec, ["income"]),
        "wide_deep": lambda spec: kr.models.WideAndDeep(spec, ["income"]),
        "mmoe": lambda spec: kr.models.MMoE(spec, ["income", "marital"], num_experts=2),
    }
    # 1 shard: every table divides, so every one gets its rule.
    mesh = _mesh(1)
    cases = [(name, spec) for name in builders for spec in (small_spec, fused_spec)]
    for name, spec in cases:
        model = builders[name](spec)
        from_spec = _layouts(kr_distribution.embedding_layout_map(spec, mesh), model)
        from_model = _layouts(kr_distribution.embedding_layout_map(model, mesh), model)
        assert from_spec == from_model, name
        sharded = {path for path, axes in from_spec.items() if axes is not None}
        tables = {
            layer.embeddings.path
            for layer in model._flatten_layers()
            if isinstance(layer, (keras.layers.Embedding, FusedEmbedding))
        }
        assert spec.fuse_tables == any("fused" in path for path in tables), (name, tables)
        assert sharded == tables and tables, (name, sharded ^ tables)
        assert all(from_spec[path] == ("model", None) for path in tables)
        if name == "wide_deep" and not spec.fuse_tables:
            # The crossed feature has a first-order table only.
            assert any("w_sex_x_occ" in path for path in tables), tables


def test_rules_for_a_sequential_model_cover_its_item_table_and_head():
    """SASRec's item table and its head's item probabilities are split by rows."""
    spec = kr.FeatureSpec([kr.Sequence("history", max_length=5)], 8)
    spec.adapt(pd.DataFrame({"history": [[10, 11, 12], [11, 12, 13]]}))  # 4 items + 2 reserved
    model = kr.models.SASRec(spec, loss="bce", seed=0)
    mesh = _mesh(2)
    from_spec = _layouts(kr_distribution.embedding_layout_map(spec, mesh), model)
    from_model = _layouts(kr_distribution.embedding_layout_map(model, mesh), model)
    assert from_spec == from_model
    sharded = {path: axes for path, axes in from_spec.items() if axes is not None}
    assert sharded == {
        model.backbone.item_embedding.embeddings.path: ("model", None),
        model.head.item_probability.path: ("model",),
    }


def test_tables_that_do_not_divide_raise_or_stay_replicated(small_spec):
    """Over 2 shards, education's table (19 rows on these census rows) cannot be split:
    an error names it and its size, or it stays replicated while sex's (4 rows) is split."""
    rows = {name: small_spec.input_dim(name) for name in ("education", "sex")}
    assert rows["education"] % 2 == 1 and rows["sex"] % 2 == 0, rows
    model = kr.models.DCN(small_spec, ["income"])
    mesh = _mesh(2)
    tables = model.backbone.embedding.tables
    for source in (small_spec, model):
        message = rf"table_education/embeddings \({rows['education']} rows\)"
        with pytest.raises(ValueError, match=message) as error:
            kr_distribution.embedding_layout_map(source, mesh)
        assert "table_sex" not in str(error.value)
        layout_map = kr_distribution.embedding_layout_map(source, mesh, uneven="replicate")
        assert layout_map[tables["education"].embeddings.path] is None
        assert tuple(layout_map[tables["sex"].embeddings.path].axes) == ("model", None)
    with pytest.raises(ValueError, match="not the model axis 'items'"):
        kr_distribution.embedding_layout_map(small_spec, mesh, model_axis="items")
    with pytest.raises(ValueError, match="does not divide the 6 devices"):
        kr_distribution.model_parallel(small_spec, 4, devices=[f"cpu:{i}" for i in range(6)])
