"""SavedModel export for TF Serving: raw features in, one output per task.

The exported graph joins the two stages of keras_recsys: the fitted
TensorFlow preprocessing and the model. Its `serving_default` signature
takes one batch-major tensor per input feature, named after the feature,
all of shape (B,) with one value per example (every input of a request has
the same B; a request whose inputs differ fails with an error naming them).
The dtypes are fixed by the signature, so a client must send exactly:

* categorical: `string` or `int64`, as fitted (an int32 id is refused by
  the signature: cast it, as `run_saved_model` and
  `serving_contract.prepare_inputs` do); unseen values and the missing
  value (`""`, or the smallest int64) map to the out-of-vocabulary id;
* numeric (also bucketized): `float32`; NaN or inf is imputed with the
  training mean;
* sequence: `string`, the items of each example joined by the feature's
  separator (default "|"), oldest first, e.g. "12|7|93"; unseen items, and
  items of an integer vocabulary that are not integers (text, or a list
  joined with another separator), become the out-of-vocabulary id.

It returns one tensor per model output, named after the task: shape (B,)
for binary and regression tasks, (B, num_classes) for multiclass tasks.
Retrieval and next-item models (`TopKRecommender`) return `item_ids` (B, k),
the recommended items' raw ids as the data had them, and their `scores`
(B, k), with the query's history excluded; a two-tower model takes only its
query features. They also get an `item_embeddings` signature: raw `item_id`
(B,) in, the (B, d) vectors the model scores queries against out, for
external indexes.
The directory layout is TF Serving's `<base_dir>/<version>/saved_model.pb`
with warm-up requests in `assets.extra/tf_serving_warmup_requests` and the
serving contract, what a client needs beyond dtypes and shapes (feature
kinds, separators, vocabulary sizes, OOV rules, what each output means), in
`assets.extra/serving_contract.json` (`keras_recsys.serving_contract`;
`describe` returns it with an example request).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

import numpy as np
import pandas as pd

from keras_recsys import serving_contract
from keras_recsys.features.feature import NUM_RESERVED_IDS
from keras_recsys.features.raw import RaggedValues

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
# An export is written under `<base_dir>/.staging-<version>-<random>/` and
# renamed to `<base_dir>/<version>` once complete.
STAGING_PREFIX = ".staging-"
_CHECK_SCRIPT = os.path.join(os.path.dirname(__file__), "serving_check.py")


def next_version(base_dir: str) -> int:
    """1 + the largest integer version directory under `base_dir` (or 1)."""
    if not os.path.isdir(base_dir):
        return 1
    versions = [int(d) for d in os.listdir(base_dir) if d.isdigit()]
    return max(versions, default=0) + 1


def serving_inputs(spec, df: pd.DataFrame, features=None) -> dict[str, np.ndarray]:
    """The raw request tensors a client sends for the rows of `df`.

    This is the documented serving encoding (see the module docstring); it
    is what the warm-up records hold and what the export tests feed.
    `features`: the served inputs when they are a subset of the spec's (the
    query features of a two-tower model).
    """
    raw = spec.raw_from_frame(df)
    inputs: dict[str, np.ndarray] = {}
    for feature in spec.input_features:
        if features is not None and feature.name not in features:
            continue
        value = raw[feature.name]
        if isinstance(value, RaggedValues):
            inputs[feature.name] = _join_sequences(feature, value, _separator(spec, feature))
        elif value.dtype == object:
            inputs[feature.name] = value.astype(str).astype(object)
        else:
            inputs[feature.name] = value
    return inputs


def _separator(spec, feature) -> str:
    """The delimiter of a list input: a sequence's own, its timestamps' too."""
    if feature.kind == "timestamps":
        return spec[feature.sequence].separator
    return feature.separator


def _join_sequences(feature, ragged: RaggedValues, separator: str) -> np.ndarray:
    texts = []
    for row in ragged.rows():
        items = [str(v) for v in row]
        if any(separator in item for item in items):
            raise ValueError(
                f"Sequence feature '{feature.name}': an item contains the "
                f"separator '{separator}'; choose another `separator`."
            )
        texts.append(separator.join(items))
    return np.asarray(texts, dtype=object)


def default_warmup_frame(spec, rows: int = 3) -> pd.DataFrame:
    """Plausible requests built from the fitted spec alone.

    Row i uses the i-th most frequent value of every categorical feature,
    the training mean of every numeric feature and the most frequent items
    of every sequence (timed, if the spec has their timestamps, at the
    earliest time of the adapt data); used when no warm-up data is given.
    """
    columns: dict[str, list] = {}
    timestamps = [f for f in spec.input_features if f.kind == "timestamps"]
    for feature in spec.input_features:
        if feature.kind == "timestamps":
            continue
        owner = spec.vocabulary_owner(feature.name)
        if feature.kind == "numeric":
            columns[feature.column] = [feature.mean] * rows
            continue
        vocab = owner.vocabulary or []
        if not vocab:
            vocab = ["0"] if owner.dtype == "string" else [0]
        picks = [vocab[i % len(vocab)] for i in range(rows)]
        if feature.kind == "sequence":
            columns[feature.column] = [vocab[: min(len(vocab), i + 1)] for i in range(rows)]
        else:
            columns[feature.column] = picks
    for feature in timestamps:
        items = columns[spec[feature.sequence].column]
        columns[feature.column] = [[feature.origin] * len(row) for row in items]
    return pd.DataFrame(columns)


def _write_warmup(path: str, spec, frame: pd.DataFrame, model_name: str, features=None) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    inputs = serving_inputs(spec, frame, features)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(len(frame)):
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name="serving_default")
            )
            for name, values in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(values[i : i + 1]))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())


def _export_in_process(
    model,
    path: str,
    warmup_frame: pd.DataFrame,
    model_name: str,
    options: dict,
    version: int | None = None,
):
    import keras
    import tensorflow as tf

    from keras_recsys.features.preprocessor import Preprocessor

    preprocessor = Preprocessor(model.spec, inputs=getattr(model, "serving_features", None))
    signature = preprocessor.input_signature()

    traced: dict[str, tuple[str, list]] = {}

    def serve(features):
        features = _same_batch_size(features)
        if getattr(model, "max_candidates", None) is not None:
            features = _at_most_candidates(model, features)
        outputs = model.predict_outputs(preprocessor(features), **options)
        served = {}
        for name, value in outputs.items():
            if name == "item_ids":
                # Internal ids back to the items as the data had them.
                value = preprocessor.values_of(model.item_feature, value)
            elif value.shape.rank == 2 and value.shape[-1] == 1:
                value = tf.squeeze(value, axis=-1)
            served[name] = value
            traced[name] = (value.dtype.name, value.shape.as_list())
        return served

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(preprocessor)
    archive.add_endpoint("serving_default", serve, input_signature=[signature])
    if hasattr(model, "candidate_embeddings"):
        # For external indexes: raw item ids to the vectors the model scores against.
        item = model.item_feature
        dtype = tf.string if model.spec.dtype_of(item) == "string" else tf.int64
        item_signature = {"item_id": tf.TensorSpec([None], dtype, "item_id")}

        def embed(features):
            ids = preprocessor.lookup(item, features["item_id"])
            return {"embeddings": model.candidate_embeddings(ids)}

        archive.add_endpoint("item_embeddings", embed, input_signature=[item_signature])
    archive.write_out(path, verbose=False)
    _write_warmup(
        os.path.join(path, WARMUP_FILE),
        model.spec,
        warmup_frame,
        model_name,
        getattr(model, "serving_features", None),
    )
    contract = serving_contract.build_contract(model, model_name, version, options.get("k"))
    _check_contract_outputs(contract, traced, signature)
    serving_contract.write_contract(path, contract)


def _check_contract_outputs(contract: dict, traced: dict, signature: dict) -> None:
    """The contract must describe exactly the traced signature (a toolkit bug otherwise)."""
    described = {n: (o["dtype"], o["shape"]) for n, o in contract["outputs"].items()}
    traced = {n: (dtype, [None, *shape[1:]]) for n, (dtype, shape) in traced.items()}
    inputs = {n: i["dtype"] for n, i in contract["inputs"].items()}
    signed = {n: s.dtype.name for n, s in signature.items()}
    if described != traced or inputs != signed:
        raise RuntimeError(
            "The serving contract disagrees with the exported signature: outputs "
            f"{described} vs {traced}, inputs {inputs} vs {signed}."
        )


def _at_most_candidates(model, features: dict) -> dict:
    """`features`, after a check that no candidate list is longer than the model ranks.

    A sequence keeps its latest items; for a candidate list that would drop
    candidates without a word, so a longer list is an error naming the input.
    """
    import tensorflow as tf

    name, limit = model.candidate_feature, model.max_candidates
    separator = model.spec[name].separator
    items = tf.strings.split(features[name], sep=separator)
    counts = tf.reduce_sum(tf.cast(tf.not_equal(items, ""), tf.int32), axis=1)
    check = tf.debugging.Assert(
        tf.reduce_all(counts <= limit),
        [
            f"serving_default: input '{name}' holds more than {limit} candidates in a row "
            f"(the model ranks at most {limit}; split the list); the longest has",
            tf.reduce_max(counts),
        ],
    )
    with tf.control_dependencies([check]):
        return {key: tf.identity(value) for key, value in features.items()}


def _same_batch_size(features: dict) -> dict:
    """`features`, after a check that every input has the same batch size.

    Without it, inputs of different lengths fail deep in the model (e.g.
    "ConcatOp : Dimension 0 in both shapes must be equal") without saying
    which input is wrong; the check names the inputs whose size differs
    from the most common one.
    """
    import tensorflow as tf

    names = sorted(features)
    if len(names) < 2:
        return features
    sizes = tf.stack([tf.shape(features[name], out_type=tf.int64)[0] for name in names])
    values, _, counts = tf.unique_with_counts(sizes)
    common = tf.gather(values, tf.argmax(counts))
    differ = tf.not_equal(sizes, common)
    listed = tf.strings.reduce_join(
        tf.boolean_mask(
            tf.constant([f"{name} has " for name in names]) + tf.strings.as_string(sizes),
            differ,
        ),
        separator=", ",
    )
    message = tf.strings.join(
        [
            "serving_default: every input needs one value per example, but the "
            "inputs differ in batch size: ",
            listed,
            " (the other inputs have ",
            tf.strings.as_string(common),
            ")",
        ]
    )
    check = tf.debugging.Assert(tf.logical_not(tf.reduce_any(differ)), [message])
    # The check must run before anything reads the inputs, or the mismatch
    # fails first in an op that does not name them.
    with tf.control_dependencies([check]):
        return {name: tf.identity(value) for name, value in features.items()}


def export_model(
    model,
    base_dir: str,
    version: int | None = None,
    warmup_data: pd.DataFrame | None = None,
    num_warmup: int = 3,
    model_name: str | None = None,
    k: int | None = None,
) -> str:
    """Writes `model` as a TF Serving SavedModel under `base_dir/<version>/`.

    On the TensorFlow backend the export runs in this process; on JAX or
    PyTorch the model is saved to a `.keras` file and rebuilt under the
    TensorFlow backend in a child process, which writes the SavedModel.
    The version directory appears atomically: the export is written to a
    sibling `<base_dir>/.staging-<version>-<random>/` (a name TF Serving
    does not load), flushed to disk and renamed to `<base_dir>/<version>`,
    so a TF Serving instance watching `base_dir` never sees a half-written
    version. A failed export removes its staging directory; a process
    killed mid-export leaves one behind (never an integer-named directory),
    which is safe to delete once no export is running.

    Args:
        model: a keras_recsys model.
        base_dir: the model's base directory (TF Serving's `base_path`).
        version: integer version; default: one above the largest present.
        warmup_data: DataFrame of raw rows for the warm-up requests; default:
            requests built from the fitted spec (`default_warmup_frame`).
        num_warmup: number of warm-up requests.
        model_name: model name in the warm-up requests; default: the base
            directory's name.
        k: for retrieval and next-item models, how many items
            `serving_default` returns (default 10).

    Returns:
        The version directory's path.

    Raises:
        FileExistsError: `base_dir/<version>` already exists (it is never
            overwritten).

    Example:

    >>> path = export_model(model, "/models/ctr")  # "/models/ctr/1", then "/models/ctr/2"
    """
    import keras

    base_dir = os.path.abspath(base_dir)
    version = next_version(base_dir) if version is None else int(version)
    final = os.path.join(base_dir, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"Export version directory '{final}' already exists.")
    model_name = model_name or os.path.basename(base_dir)
    options = {}
    if hasattr(model, "recommend"):
        options["k"] = 10 if k is None else int(k)
    elif k is not None:
        raise ValueError(f"k is for retrieval and next-item models, not {type(model).__name__}.")
    if warmup_data is not None:
        frame = warmup_data.head(num_warmup)
    else:
        frame = default_warmup_frame(model.spec, num_warmup)
    os.makedirs(base_dir, exist_ok=True)
    # Staged beside the version, on the same file system (so the rename is
    # atomic), under a name TF Serving skips: it serves only the children of
    # the base path whose names parse as an integer (`safe_strto64` in its
    # FileSystemStoragePathSource), and next_version ignores it too. A
    # process killed before the rename leaves only this dot-directory.
    staging = tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{version}-", dir=base_dir)
    try:
        target = os.path.join(staging, "model")
        if keras.backend.backend() == "tensorflow":
            _export_in_process(model, target, frame, model_name, options, version)
        else:
            _export_in_child(model, target, frame, model_name, options, version)
        # On disk before it gets its served name: after a machine crash the
        # version directory is whole or absent, never empty files.
        _fsync_tree(target)
        try:
            os.rename(target, final)
        except OSError as error:
            if os.path.isdir(final):  # another export took the version meanwhile
                raise FileExistsError(
                    f"Export version directory '{final}' already exists."
                ) from error
            raise
        _fsync_directory(base_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _fsync_directory(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_tree(path: str) -> None:
    """Flushes every file and directory under `path` to disk."""
    for directory, _, files in os.walk(path, topdown=False):
        for name in files:
            with open(os.path.join(directory, name), "rb") as f:
                os.fsync(f.fileno())
        _fsync_directory(directory)


def _export_in_child(
    model, path: str, frame: pd.DataFrame, model_name: str, options: dict, version: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model_file = os.path.join(tmp, "model.keras")
        frame_file = os.path.join(tmp, "warmup.pkl")
        model.save(model_file)
        frame.to_pickle(frame_file)
        env = dict(os.environ, KERAS_BACKEND="tensorflow")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        command = [
            sys.executable,
            "-m",
            "keras_recsys.export",
            model_file,
            path,
            frame_file,
            model_name,
            json.dumps(options),
            str(version),
        ]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(
                "Exporting under the TensorFlow backend failed:\n" + done.stderr[-4000:]
            )


def check_export(model, path: str, df: pd.DataFrame, atol: float = 1e-5) -> dict[str, float]:
    """Compares the export, run in a fresh TensorFlow-only process, with the
    model's own served outputs (`predict_outputs`) on the same rows.

    Retrieval outputs compare exactly on `item_ids` (raw ids) and within
    `atol` on `scores`.

    Returns:
        {output_name: max absolute difference} (0 or 1 for item ids: any mismatch).

    Raises:
        AssertionError: an output is missing or differs by more than `atol`.
    """
    from keras import ops

    from keras_recsys.data import to_numpy

    options = {"k": _served_k(path)} if hasattr(model, "recommend") else {}
    outputs = model.predict_outputs(to_numpy(df, model), **options)
    expected = {name: ops.convert_to_numpy(value) for name, value in outputs.items()}
    if "item_ids" in expected:
        values = model.spec.vocabulary_values(model.item_feature, expected["item_ids"])
        # The serving graph writes padding (id 0) and unknown ids (1) as "" or -1.
        missing = "" if model.spec.dtype_of(model.item_feature) == "string" else -1
        expected["item_ids"] = np.where(
            np.asarray(expected["item_ids"]) < NUM_RESERVED_IDS, missing, values
        )
    served = run_saved_model(
        path, serving_inputs(model.spec, df, getattr(model, "serving_features", None))
    )
    differences = {}
    for name, value in expected.items():
        if name not in served:
            raise AssertionError(f"The export has no output '{name}': {sorted(served)}.")
        if name == "item_ids":
            got = served[name].astype(object)
            got = np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else v)(got)
            same = got.astype(str) == value.astype(str)
            differences[name] = float(not same.all())
            if not same.all():
                raise AssertionError(
                    f"The export's item ids differ from the model's in "
                    f"{int((~same).any(axis=1).sum())} of {len(same)} rows."
                )
            continue
        want = np.asarray(value).reshape(served[name].shape)
        differences[name] = float(np.max(np.abs(want - served[name])))
        if differences[name] > atol:
            raise AssertionError(
                f"Output '{name}' of the export differs from the model by "
                f"{differences[name]:.3g} (> {atol})."
            )
    return differences


def _served_k(path: str) -> int:
    """The k a retrieval export was written with (from its contract or signature)."""
    contract = serving_contract.read_contract(path)
    if contract is not None:
        return int(contract["outputs"]["item_ids"]["shape"][1])
    return int(_signature(path)["outputs"]["item_ids"][1][1])


def expected_inputs(path: str) -> dict[str, dict[str, Any]]:
    """What `serving_default` takes: the contract's inputs, or (older exports
    without a contract) the signature's dtypes."""
    contract = serving_contract.read_contract(path)
    if contract is not None:
        return contract["inputs"]
    return {
        name: {"dtype": dtype, "shape": shape}
        for name, (dtype, shape) in _signature(path)["inputs"].items()
    }


def run_saved_model(path: str, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    """Runs `serving_default` in a child process that imports only TensorFlow.

    The inputs are first checked and cast against the export's contract
    (`serving_contract.prepare_inputs`): int32 ids become int64, numbers
    float32, and a missing input, an unknown one, a wrong dtype (e.g. text
    for an int64 input) or inputs of different lengths fail here with an
    error that names the input and the dtype it takes.
    """
    prepared = serving_contract.prepare_inputs(inputs, expected_inputs(path))
    with tempfile.TemporaryDirectory() as tmp:
        inputs_file = os.path.join(tmp, "inputs.npz")
        outputs_file = os.path.join(tmp, "outputs.npz")
        np.savez(inputs_file, **prepared)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        env.pop("PYTHONPATH", None)
        done = subprocess.run(
            [sys.executable, _CHECK_SCRIPT, path, inputs_file, outputs_file],
            env=env,
            capture_output=True,
            text=True,
            cwd=tmp,
        )
        if done.returncode != 0:
            raise RuntimeError("Running the SavedModel failed:\n" + done.stderr[-4000:])
        with np.load(outputs_file) as loaded:
            return {k: loaded[k] for k in loaded.files}


def _main(argv: list[str]) -> None:
    model_file, path, frame_file, model_name, options, version = argv
    import keras

    import keras_recsys  # noqa: F401  (registers the serializable classes)

    model = keras.models.load_model(model_file, compile=False)
    _export_in_process(
        model, path, pd.read_pickle(frame_file), model_name, json.loads(options), int(version)
    )


def _signature(path: str) -> dict[str, Any]:
    import tensorflow as tf

    function = tf.saved_model.load(path).signatures[serving_contract.SIGNATURE_NAME]
    inputs = function.structured_input_signature[1]
    return {
        "inputs": {k: (v.dtype.name, v.shape.as_list()) for k, v in inputs.items()},
        "outputs": {
            k: (v.dtype.name, v.shape.as_list()) for k, v in function.structured_outputs.items()
        },
    }


def describe(path: str) -> dict[str, Any]:
    """What a client needs to call the export at `path` (a version directory).

    Returns:
        A dict with
        "inputs" / "outputs": {name: (dtype, shape)} of `serving_default`
            (shape as a list, None for the batch dimension);
        "contract": the serving contract (`serving_contract.build_contract`:
            each input's kind, dtype, separator, max_length, vocabulary size
            and OOV rule; each output's meaning; the model's name and
            version), or None for an export written before contracts;
        "example_request": the JSON body of a TF Serving REST `:predict`
            call built from the export's warm-up rows,
            `{"signature_name": "serving_default", "instances": [...]}`, or
            None when the export has no warm-up records.
    """
    described = _signature(path)
    described["contract"] = serving_contract.read_contract(path)
    rows = warmup_inputs(path)
    described["example_request"] = serving_contract.rest_request(rows) if rows is not None else None
    return described


def warmup_inputs(path: str) -> dict[str, np.ndarray] | None:
    """The export's warm-up requests as one batch of raw inputs (None without them)."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    file = os.path.join(path, WARMUP_FILE)
    if not os.path.isfile(file):
        return None
    columns: dict[str, list[np.ndarray]] = {}
    for record in tf.data.TFRecordDataset(file).as_numpy_iterator():
        request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        for name, proto in request.inputs.items():
            columns.setdefault(name, []).append(tf.make_ndarray(proto).reshape(-1))
    if not columns:
        return None
    return {name: np.concatenate(columns[name]) for name in sorted(columns)}


def predict_request(path: str, inputs: dict[str, Any] | None = None, model_name: str | None = None):
    """A gRPC `PredictRequest` (tensorflow_serving.apis.predict_pb2) for the export at `path`.

    Args:
        path: the export's version directory.
        inputs: {input name: array of one value per example}, checked and
            cast against the contract; default: the warm-up rows.
        model_name: the name TF Serving serves the model under; default:
            the one recorded at export.
    """
    contract = serving_contract.read_contract(path)
    if contract is None:
        raise FileNotFoundError(
            f"'{path}' has no {serving_contract.CONTRACT_FILE}: it was exported "
            "before serving contracts; export it again."
        )
    if inputs is None:
        inputs = warmup_inputs(path)
        if inputs is None:
            raise ValueError(f"'{path}' has no warm-up requests: pass `inputs`.")
    return serving_contract.predict_request(contract, inputs, model_name=model_name)


if __name__ == "__main__":
    _main(sys.argv[1:])
