"""SavedModel export for TF Serving, checked the way a serving client sees it.

Layout and versions, warm-up records, equality with `model.predict` in a fresh
TensorFlow-only process, unseen / missing / empty values, the signature as
`saved_model_cli` prints it, sequence features, and models trained on the JAX
(and, slow, PyTorch) backend. Runs on the TensorFlow backend only (the other
backends' export is tested through a child process).
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import keras_recsys as kr
from keras_recsys.export import WARMUP_FILE, check_export, serving_inputs
from keras_recsys.features import OOV_ID, PAD_ID
from keras_recsys.serving_contract import prepare_inputs
from tests.conftest import requires_tensorflow_backend

pytestmark = requires_tensorflow_backend

CATEGORICAL = ["education", "class_worker", "det_hh_fam_stat", "sex", "major_occ_code"]
NUMERIC = ["age", "capital_gains", "weeks_worked"]
TASKS = ["income", "marital"]
NOT_A_MOVE = {"?", "Nonmover", "Not in universe"}


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def train_one_epoch(model, train):
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit(kr.data.from_pandas(train, model, batch_size=256), epochs=1, verbose=0)
    return model


@functools.cache
def load(path):
    """The loaded SavedModel (kept alive: its signatures use its resources)."""
    return tf.saved_model.load(path)


def serve(path, inputs):
    """Runs `serving_default` in this process on raw numpy inputs."""
    function = load(path).signatures["serving_default"]
    specs = function.structured_input_signature[1]
    feeds = {
        name: tf.constant(
            inputs[name].tolist() if spec.dtype == tf.string else inputs[name], spec.dtype
        )
        for name, spec in specs.items()
    }
    return {name: value.numpy() for name, value in function(**feeds).items()}


def model_on(model, raw, **overrides):
    """The model on preprocessed raw inputs, some preprocessed values replaced."""
    features = model.spec.preprocessor(
        {k: tf.constant(v.tolist() if v.dtype == object else v) for k, v in raw.items()}
    )
    features.update({k: tf.constant(v) for k, v in overrides.items()})
    outputs = model.predict_outputs(features).items()
    # (B,) or (B, 1) single-column outputs alike.
    return {name: _np(value).reshape(len(_np(value)), -1)[:, 0] for name, value in outputs}


# --------------------------------------------------------------- census model
@pytest.fixture(scope="module")
def census(census_small):
    """A DCN on census rows (string categoricals, numerics, two tasks), exported
    twice to one base directory: with warm-up rows, then with the defaults."""
    train, test = census_small
    train, test = train.head(2048), test.head(200).reset_index(drop=True)
    features = [kr.Categorical(c) for c in CATEGORICAL]
    features += [kr.Numeric(c, transform="log1p") for c in NUMERIC]
    spec = kr.FeatureSpec(features, default_embedding_dim=4).adapt(train)
    keras.utils.set_random_seed(0)
    model = kr.models.DCN(spec, TASKS, num_cross_layers=1, projection_dim=4, hidden_units=(8,))
    return train_one_epoch(model, train), test


@pytest.fixture(scope="module")
def exported(census, tmp_path_factory):
    model, test = census
    base = str(tmp_path_factory.mktemp("exports") / "census_dcn")
    first = model.export(base, warmup_data=test.head(4), num_warmup=4)
    second = model.export(base)
    return base, first, second


def test_versions_follow_tf_serving_layout(exported):
    """base/1 then base/2, each a SavedModel with variables and warm-up requests,
    and no staging directory left behind."""
    base, first, second = exported
    assert (first, second) == (os.path.join(base, "1"), os.path.join(base, "2"))
    assert sorted(os.listdir(base)) == ["1", "2"]
    for path in (first, second):
        assert os.path.isfile(os.path.join(path, "saved_model.pb"))
        assert os.path.isdir(os.path.join(path, "variables"))
        assert os.path.isfile(os.path.join(path, WARMUP_FILE))


def test_existing_version_is_refused(census, exported):
    """Exporting onto an existing version fails instead of overwriting it."""
    model, _ = census
    base, first, _ = exported
    before = os.path.getmtime(os.path.join(first, "saved_model.pb"))
    with pytest.raises(FileExistsError, match="already exists"):
        model.export(base, version=1)
    assert os.path.getmtime(os.path.join(first, "saved_model.pb")) == before


@pytest.mark.parametrize("version, count", [("1", 4), ("2", 3)])
def test_warmup_records_are_predict_requests_with_every_input(census, exported, version, count):
    """assets.extra/tf_serving_warmup_requests holds PredictionLog records whose
    PredictRequests carry every input, and each request runs on the export."""
    from tensorflow_serving.apis import prediction_log_pb2

    model, _ = census
    base = exported[0]
    path = os.path.join(base, version)
    records = list(tf.data.TFRecordDataset(os.path.join(path, WARMUP_FILE)).as_numpy_iterator())
    assert len(records) == count
    inputs = sorted(f.name for f in model.spec.input_features)
    for record in records:
        log = prediction_log_pb2.PredictionLog.FromString(record)
        request = log.predict_log.request
        assert request.model_spec.name == "census_dcn"
        assert request.model_spec.signature_name == "serving_default"
        assert sorted(request.inputs) == inputs
        outputs = serve(path, {k: tf.make_ndarray(v) for k, v in request.inputs.items()})
        assert sorted(outputs) == sorted(TASKS)
        assert all(np.isfinite(v).all() and v.shape == (1,) for v in outputs.values())


def edge_rows(test: pd.DataFrame) -> pd.DataFrame:
    """Real rows plus an unseen category, an empty category and a missing numeric."""
    rows = test.head(3).copy()
    rows.loc[0, "education"] = "A degree nobody had"
    rows.loc[1, "class_worker"] = ""
    rows.loc[2, "age"] = np.nan
    return pd.concat([test, rows], ignore_index=True)


def test_export_matches_predict_in_a_tensorflow_only_process(census, exported):
    """`check_export`: the export, loaded in a fresh process importing only
    TensorFlow, equals `model.predict` on raw rows (edge values included) to 1e-5."""
    model, test = census
    differences = check_export(model, exported[2], edge_rows(test))
    assert sorted(differences) == sorted(TASKS)
    assert max(differences.values()) <= 1e-5


def test_unseen_missing_and_infinite_values(census, exported):
    """An unseen or empty category is served as the OOV id; a NaN or inf numeric
    as the raw value whose transform is the fitted fill value; all finite."""
    model, test = census
    row = test.head(1)
    raw = serving_inputs(model.spec, row)
    path = exported[2]

    unseen = dict(raw, education=np.asarray(["A degree nobody had"], dtype=object))
    empty = dict(raw, education=np.asarray([""], dtype=object))
    oov = model_on(model, raw, education=np.asarray([OOV_ID], np.int32))
    for inputs in (unseen, empty):
        served = serve(path, inputs)
        for task in TASKS:
            np.testing.assert_allclose(served[task], oov[task], atol=1e-6)
    assert not np.allclose(serve(path, raw)["income"], oov["income"], atol=1e-6)

    fill = model.spec["age"].fill_value  # in log1p space
    same = np.asarray([np.sign(fill) * np.expm1(abs(fill))], np.float32)
    expected = serve(path, dict(raw, age=same))
    for value in (np.nan, np.inf, -np.inf):
        served = serve(path, dict(raw, age=np.asarray([value], np.float32)))
        for task in TASKS:
            assert np.isfinite(served[task]).all()
            np.testing.assert_allclose(served[task], expected[task], atol=1e-5)


def test_saved_model_cli_lists_named_inputs_and_task_outputs(census, exported):
    """`saved_model_cli show --all` shows every feature as a named input and one
    output per task, named after the task (never output_0)."""
    model, _ = census
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run(
        [cli, "show", "--all", "--dir", exported[1]],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    ).stdout
    signature = shown.split("signature_def['serving_default']")[1]
    inputs = set(re.findall(r"inputs\['([^']+)'\] tensor_info", signature))
    outputs = set(re.findall(r"outputs\['([^']+)'\] tensor_info", signature))
    assert inputs == {f.name for f in model.spec.input_features}
    assert outputs == set(TASKS)
    assert "output_0" not in shown
    assert "tensorflow/serving/predict" in signature


# ------------------------------------------------------------- sequence model
def with_histories(df: pd.DataFrame) -> pd.DataFrame:
    """Census rows with three '|'-joined lists built from real columns: the
    person's migration moves (often empty), the parents' birth countries and
    the industry and occupation codes (integer items), and the industry code
    as an integer category."""
    df = df.copy()
    moves = df[["mig_chg_msa", "mig_chg_reg", "mig_move_reg"]].to_numpy().tolist()
    df["moves"] = ["|".join(m for m in row if m not in NOT_A_MOVE) for row in moves]
    parents = df[["country_father", "country_mother"]].to_numpy().tolist()
    df["parents"] = ["|".join(c for c in row if c != "?") for row in parents]
    df["codes"] = df["det_ind_code"].astype(str) + "|" + df["det_occ_code"].astype(str)
    df["det_ind_code"] = df["det_ind_code"].astype(int)
    return df


@pytest.fixture(scope="module")
def sequence_model(census_small, tmp_path_factory):
    """(model, test rows, export path) of `export_sequence_model`, once per module."""
    return export_sequence_model(census_small, tmp_path_factory)


_SEQUENCE_EXPORT: list = []


def export_sequence_model(census_small, tmp_path_factory):
    """Wide&Deep with string and int categoricals, a cross, a numeric, a
    bucketized numeric, a sequence with its own vocabulary, one sharing
    `country_self`'s and one of integer items, exported with real warm-up rows.

    Trained and exported once per session (exporting is slow):
    tests/test_serving_contract.py reads the same export."""
    if not _SEQUENCE_EXPORT:
        _SEQUENCE_EXPORT.append(_train_and_export_sequence_model(census_small, tmp_path_factory))
    return _SEQUENCE_EXPORT[0]


def _train_and_export_sequence_model(census_small, tmp_path_factory):
    train, test = (with_histories(df) for df in census_small)
    train, test = train.head(2048), test.head(200).reset_index(drop=True)
    spec = kr.FeatureSpec(
        [
            kr.Categorical("education"),
            kr.Categorical("sex"),
            kr.Categorical("country_self"),
            kr.Categorical("det_ind_code"),
            kr.Crossed("sex_x_education", ["sex", "education"], num_bins=64),
            kr.Numeric("age"),
            kr.Numeric("weeks_worked", buckets=4),
            kr.Sequence("moves", max_length=3),
            kr.Sequence("parents", max_length=2, shares_vocabulary_with="country_self"),
            kr.Sequence("codes", max_length=2),
        ],
        default_embedding_dim=4,
    ).adapt(train)
    keras.utils.set_random_seed(0)
    model = train_one_epoch(kr.models.WideAndDeep(spec, "income", hidden_units=(8,)), train)
    path = model.export(
        str(tmp_path_factory.mktemp("exports") / "sequences"), warmup_data=test.tail(3)
    )
    return model, test, path


def test_sequence_model_export_matches_predict(sequence_model):
    """Sequences travel as '|'-joined strings and int categories as int64; the
    export equals model.predict on raw rows, empty and unseen items included."""
    model, test, path = sequence_model
    signature = kr.export.describe(path)["inputs"]
    assert signature["moves"] == ("string", [None])
    assert signature["parents"] == ("string", [None])
    assert signature["det_ind_code"] == ("int64", [None])
    assert "sex_x_education" not in signature
    assert (test["moves"] == "").any() and (test["moves"] != "").any()
    rows = test.head(2).copy()
    rows.loc[0, "parents"] = "Atlantis|United-States"
    rows.loc[1, "det_ind_code"] = 999
    differences = check_export(model, path, pd.concat([test, rows], ignore_index=True))
    assert differences["income"] <= 1e-5


def test_empty_sequence_and_unseen_items(sequence_model):
    """An empty list is all padding and an unseen item the OOV id (kept, not
    dropped); both give finite outputs equal to the model on those ids."""
    model, test, path = sequence_model
    raw = serving_inputs(model.spec, test.head(1))

    empty = dict(raw, moves=np.asarray([""], dtype=object))
    expected = model_on(model, raw, moves=np.full((1, 3), PAD_ID, np.int32))
    np.testing.assert_allclose(serve(path, empty)["income"], expected["income"], atol=1e-6)

    unseen = dict(raw, parents=np.asarray(["Atlantis"], dtype=object))
    expected = model_on(model, raw, parents=np.asarray([[PAD_ID, OOV_ID]], np.int32))
    served = serve(path, unseen)["income"]
    assert np.isfinite(served).all()
    np.testing.assert_allclose(served, expected["income"], atol=1e-6)


def test_unparsable_integer_items_become_oov(sequence_model):
    """An item of an integer-id sequence that is not an integer ("abc", or a list
    joined with a foreign separator) is served as the OOV id in its position, like
    an unseen item, instead of failing the whole batch in StringToNumber."""
    model, test, path = sequence_model
    raw = serving_inputs(model.spec, test.head(3))
    known = model.spec["codes"].vocabulary[1]
    sent = np.asarray([f"{known}|abc", "33,7", raw["codes"][2]], dtype=object)
    served = serve(path, dict(raw, codes=sent))["income"]
    ids = model.spec.sequence_ids("codes", [[known]], 2)[0, -1]
    expected = model_on(
        model, raw, codes=np.asarray([[ids, OOV_ID], [PAD_ID, OOV_ID], [0, 0]], np.int32)
    )["income"]
    np.testing.assert_allclose(served[:2], expected[:2], atol=1e-6)
    # The bad rows leave the good one in the batch as it was.
    np.testing.assert_allclose(served[2], serve(path, raw)["income"][2], atol=1e-6)


def test_inputs_of_different_batch_sizes_are_named(sequence_model):
    """Inputs of different lengths fail with an error naming the inputs whose
    size differs, not a ConcatOp error from inside the model."""
    model, test, path = sequence_model
    raw = serving_inputs(model.spec, test.head(3))
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"age has 1 \(the other inputs have 3\)"
    ):
        serve(path, dict(raw, age=raw["age"][:1]))
    short = dict(raw, codes=raw["codes"][:2], moves=raw["moves"][:2])
    with pytest.raises(tf.errors.InvalidArgumentError, match="codes has 2, moves has 2"):
        serve(path, short)


def test_run_saved_model_checks_and_casts_dtypes(sequence_model):
    """The client helper casts int32 ids to the signature's int64 and names the
    input and the dtype it takes when a value cannot be cast without guessing."""
    model, test, path = sequence_model
    raw = serving_inputs(model.spec, test.head(2))
    bad = {
        "det_ind_code": (["33", "43"], TypeError, r"'det_ind_code' \(categorical: int64\)"),
        "age": (["old", "young"], TypeError, r"'age' \(numeric: float32\) takes float32"),
        "codes": ([[33, 7], [43]], TypeError, r"got list \[33, 7\]. Send each .* joined by '\|'"),
    }
    for name, (value, error, message) in bad.items():
        with pytest.raises(error, match=message):
            kr.export.run_saved_model(path, dict(raw, **{name: np.asarray(value, dtype=object)}))
    with pytest.raises(TypeError, match=r"'det_ind_code' .* got float64 value 1.5"):
        kr.export.run_saved_model(path, dict(raw, det_ind_code=np.asarray([1.5, 2.0])))
    with pytest.raises(KeyError, match=r"lacks input\(s\) 'parents' \(sequence: string of"):
        kr.export.run_saved_model(path, {k: v for k, v in raw.items() if k != "parents"})
    with pytest.raises(ValueError, match="'sex' has 1 .*other inputs have 2"):
        kr.export.run_saved_model(path, dict(raw, sex=raw["sex"][:1]))
    # What run_saved_model feeds its child process (which check_export runs).
    cast = dict(raw, det_ind_code=raw["det_ind_code"].astype(np.int32), age=raw["age"].tolist())
    prepared = prepare_inputs(cast, kr.export.expected_inputs(path))
    assert prepared["det_ind_code"].dtype == np.int64 and prepared["age"].dtype == np.float32
    np.testing.assert_allclose(serve(path, prepared)["income"], serve(path, raw)["income"])


# ------------------------------------------------------------ other backends
OTHER_BACKEND_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import keras
    import numpy as np
    import keras_recsys as kr

    base, arrays = sys.argv[1:]
    train, _, test = kr.datasets.census_income()
    train, test = train.head(1024), test.head(100)
    features = [kr.Categorical(c) for c in {categorical!r}]
    features += [kr.Numeric(c, transform="log1p") for c in {numeric!r}]
    spec = kr.FeatureSpec(features, default_embedding_dim=4).adapt(train)
    keras.utils.set_random_seed(0)
    model = kr.models.DeepFM(spec, {tasks!r}, hidden_units=(8,))
    model.compile(optimizer="adam")
    model.fit(kr.data.from_pandas(train, model, batch_size=256), epochs=1, verbose=0)
    path = model.export(base)
    predicted = model.predict(kr.data.from_pandas(test, model, labels=False), verbose=0)
    inputs = kr.export.serving_inputs(model.spec, test)
    np.savez(arrays, **{{"input:" + k: v for k, v in inputs.items()}},
             **{{"output:" + k: v for k, v in predicted.items()}})
    print("RESULT " + json.dumps({{"backend": keras.backend.backend(), "path": path}}))
    """
).format(categorical=CATEGORICAL, numeric=NUMERIC, tasks=TASKS)


@pytest.mark.parametrize("backend", ["jax", pytest.param("torch", marks=pytest.mark.slow)])
def test_model_trained_on_another_backend_exports(backend, tmp_path):
    """A DeepFM trained under JAX (or PyTorch) exports through a TensorFlow child
    process, and the export, run on the same raw rows, equals the model's own
    predictions to 1e-5."""
    base, arrays = str(tmp_path / "deepfm"), str(tmp_path / "arrays.npz")
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [sys.executable, "-c", OTHER_BACKEND_SCRIPT, base, arrays],
        capture_output=True,
        text=True,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT ") :])
    assert result["backend"] == backend
    assert result["path"] == os.path.join(base, "1")
    with np.load(arrays, allow_pickle=True) as loaded:
        inputs = {k[6:]: loaded[k] for k in loaded.files if k.startswith("input:")}
        expected = {k[7:]: loaded[k] for k in loaded.files if k.startswith("output:")}
    served = serve(result["path"], inputs)
    assert sorted(served) == sorted(expected) == sorted(TASKS)
    for task in TASKS:
        np.testing.assert_allclose(served[task], expected[task].reshape(-1), atol=1e-5)


# ------------------------------------------------------------ atomic export
def _served_versions(base: str) -> list[str]:
    """The children of `base` TF Serving would load: names that parse as an
    integer (its FileSystemStoragePathSource uses `safe_strto64`, which
    allows surrounding spaces and a sign)."""
    served = []
    for name in os.listdir(base):
        try:
            int(name.strip())
        except ValueError:
            continue
        served.append(name)
    return served


def test_failed_export_leaves_no_version_directory(census, tmp_path, monkeypatch):
    """An error in the last step of an export (the SavedModel and its warm-up
    records already written) leaves no version directory and no staging one;
    the version number stays free for the next export."""
    from keras_recsys import export as export_module

    model, _ = census
    base = str(tmp_path / "census_dcn")
    seen = {}

    def fail(path, contract):
        seen["staged"] = os.path.isfile(os.path.join(path, "saved_model.pb"))
        seen["served"] = _served_versions(base)
        raise OSError("disk full (injected)")

    monkeypatch.setattr(export_module.serving_contract, "write_contract", fail)
    with pytest.raises(OSError, match="injected"):
        model.export(base)
    assert seen == {"staged": True, "served": []}  # written, but not under a served name
    assert os.listdir(base) == []
    monkeypatch.undo()
    assert model.export(base) == os.path.join(base, "1")
    assert os.listdir(base) == ["1"]


KILLED_EXPORT_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import keras
    import keras_recsys
    from keras_recsys import export

    model_file, base, marker = sys.argv[1:]
    write_warmup = export._write_warmup

    def write_then_stall(path, *args, **kwargs):
        write_warmup(path, *args, **kwargs)
        open(marker, "w").close()
        time.sleep(300)  # the SavedModel is half-written: killed here

    export._write_warmup = write_then_stall
    export.export_model(keras.models.load_model(model_file), base)
    """
)


def test_killed_export_leaves_no_version_directory(census, tmp_path):
    """A process SIGKILLed in the middle of an export (SavedModel and warm-up
    written, serving contract not yet) leaves only its staging directory,
    which no server loads; the next export still gets version 1."""
    model, _ = census
    base, marker = str(tmp_path / "census_dcn"), str(tmp_path / "marker")
    model_file = str(tmp_path / "model.keras")
    model.save(model_file)
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_EXPORT_SCRIPT, model_file, base, marker],
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not os.path.exists(marker):
            assert process.poll() is None, process.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the export never reached its kill point"
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    left = os.listdir(base)
    assert _served_versions(base) == [] and len(left) == 1
    staged = os.path.join(base, left[0])
    assert left[0].startswith(".")
    assert os.path.isfile(os.path.join(staged, "model", "saved_model.pb"))
    assert not os.path.exists(
        os.path.join(staged, "model", "assets.extra", "serving_contract.json")
    )
    assert kr.export.next_version(base) == 1
    assert model.export(base) == os.path.join(base, "1")
    assert _served_versions(base) == ["1"]


def test_version_taken_during_export_is_not_overwritten(census, tmp_path, monkeypatch):
    """Another exporter creating the same version while this one writes: the
    rename fails with FileExistsError, the other's files stay, and this
    export's staging directory is removed."""
    from keras_recsys import export as export_module

    model, _ = census
    base = str(tmp_path / "census_dcn")

    def write_and_race(model, path, *args, **kwargs):
        os.makedirs(path)
        with open(os.path.join(path, "saved_model.pb"), "w") as f:
            f.write("ours")
        os.makedirs(os.path.join(base, "1"))
        with open(os.path.join(base, "1", "saved_model.pb"), "w") as f:
            f.write("theirs")

    monkeypatch.setattr(export_module, "_export_in_process", write_and_race)
    with pytest.raises(FileExistsError, match="already exists"):
        model.export(base, version=1)
    assert os.listdir(base) == ["1"]
    with open(os.path.join(base, "1", "saved_model.pb")) as f:
        assert f.read() == "theirs"
