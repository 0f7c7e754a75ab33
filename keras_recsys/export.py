"""SavedModel export for TF Serving: raw features in, one output per task.

The exported graph joins the two stages of keras_recsys: the fitted
TensorFlow preprocessing and the model. Its `serving_default` signature
takes one batch-major tensor per input feature, named after the feature:

* categorical: `string` or `int64` (as fitted), shape (B,); unseen values
  and the empty string map to the out-of-vocabulary id;
* numeric: `float32`, shape (B,); NaN or inf is imputed with the training
  mean;
* sequence: `string`, shape (B,), the items of each example joined by the
  feature's separator (default "|"), oldest first, e.g. "12|7|93".

It returns one tensor per model output, named after the task: shape (B,)
for binary and regression tasks, (B, num_classes) for multiclass tasks.
Retrieval and next-item models (`TopKRecommender`) return `item_ids` (B, k),
the recommended items' raw ids as the data had them, and their `scores`
(B, k), with the query's history excluded; a two-tower model takes only its
query features. They also get an `item_embeddings` signature: raw `item_id`
(B,) in, the (B, d) vectors the model scores queries against out, for
external indexes.
The directory layout is TF Serving's `<base_dir>/<version>/saved_model.pb`
with warm-up requests in `assets.extra/tf_serving_warmup_requests`.
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

from keras_recsys.features.feature import Sequence
from keras_recsys.features.raw import RaggedValues

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
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
            inputs[feature.name] = _join_sequences(feature, value)
        elif value.dtype == object:
            inputs[feature.name] = value.astype(str).astype(object)
        else:
            inputs[feature.name] = value
    return inputs


def _join_sequences(feature: Sequence, ragged: RaggedValues) -> np.ndarray:
    texts = []
    for row in ragged.rows():
        items = [str(v) for v in row]
        if any(feature.separator in item for item in items):
            raise ValueError(
                f"Sequence feature '{feature.name}': an item contains the "
                f"separator '{feature.separator}'; choose another `separator`."
            )
        texts.append(feature.separator.join(items))
    return np.asarray(texts, dtype=object)


def default_warmup_frame(spec, rows: int = 3) -> pd.DataFrame:
    """Plausible requests built from the fitted spec alone.

    Row i uses the i-th most frequent value of every categorical feature,
    the training mean of every numeric feature and the most frequent items
    of every sequence; used when no warm-up data is given.
    """
    columns: dict[str, list] = {}
    for feature in spec.input_features:
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
    model, path: str, warmup_frame: pd.DataFrame, model_name: str, options: dict
):
    import keras
    import tensorflow as tf

    from keras_recsys.features.preprocessor import Preprocessor

    preprocessor = Preprocessor(model.spec, inputs=getattr(model, "serving_features", None))
    signature = preprocessor.input_signature()

    def serve(features):
        outputs = model.predict_outputs(preprocessor(features), **options)
        served = {}
        for name, value in outputs.items():
            if name == "item_ids":
                # Internal ids back to the items as the data had them.
                value = preprocessor.values_of(model.item_feature, value)
            elif value.shape.rank == 2 and value.shape[-1] == 1:
                value = tf.squeeze(value, axis=-1)
            served[name] = value
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
    The version directory appears atomically (written beside it, then
    renamed), so a TF Serving instance watching `base_dir` never sees a
    half-written version.

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
    staging = tempfile.mkdtemp(prefix=f".{version}-", dir=base_dir)
    try:
        target = os.path.join(staging, "model")
        if keras.backend.backend() == "tensorflow":
            _export_in_process(model, target, frame, model_name, options)
        else:
            _export_in_child(model, target, frame, model_name, options)
        os.rename(target, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _export_in_child(model, path: str, frame: pd.DataFrame, model_name: str, options: dict) -> None:
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
        expected["item_ids"] = model.spec.vocabulary_values(
            model.item_feature, expected["item_ids"]
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
                    f"The export's top-k item ids differ from the model's in "
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
    """The k a retrieval export was written with (from its output signature)."""
    shapes = describe(path)["outputs"]
    return int(shapes["item_ids"][1][1])


def run_saved_model(path: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Runs `serving_default` in a child process that imports only TensorFlow."""
    with tempfile.TemporaryDirectory() as tmp:
        inputs_file = os.path.join(tmp, "inputs.npz")
        outputs_file = os.path.join(tmp, "outputs.npz")
        np.savez(inputs_file, **{k: np.asarray(v) for k, v in inputs.items()})
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
    model_file, path, frame_file, model_name, options = argv
    import keras

    import keras_recsys  # noqa: F401  (registers the serializable classes)

    model = keras.models.load_model(model_file, compile=False)
    _export_in_process(model, path, pd.read_pickle(frame_file), model_name, json.loads(options))


def describe(path: str) -> dict[str, Any]:
    """Input and output names, dtypes and shapes of `serving_default`."""
    import tensorflow as tf

    function = tf.saved_model.load(path).signatures["serving_default"]
    inputs = function.structured_input_signature[1]
    return {
        "inputs": {k: (v.dtype.name, v.shape.as_list()) for k, v in inputs.items()},
        "outputs": {
            k: (v.dtype.name, v.shape.as_list()) for k, v in function.structured_outputs.items()
        },
    }


if __name__ == "__main__":
    _main(sys.argv[1:])
