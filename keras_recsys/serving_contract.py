"""The serving contract: what a client must know to call an export, as JSON.

A SavedModel signature says only names, dtypes and shapes. A client also
needs to know that `history` is one "|"-joined string of item ids, oldest
first, of which the last 50 count; that an unseen `user_id` is not an error
but becomes the out-of-vocabulary id; that `click` is a probability and
`item_ids` the raw ids of the top 10 items. `build_contract` collects this
from the fitted spec and the model, and the export writes it beside the
warm-up requests as `assets.extra/serving_contract.json` (TF Serving ignores
`assets.extra`, so the file never affects loading).

The client side lives here too, with NumPy only (TensorFlow Serving's
protos are imported only by `predict_request`): `prepare_inputs` checks and
casts raw request arrays against the contract, with errors that name the
input and the dtype it takes, `rest_request` writes the JSON body of TF
Serving's REST API and `predict_request` its gRPC `PredictRequest`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from keras_recsys.features.feature import NUM_RESERVED_IDS, OOV_ID, PAD_ID
from keras_recsys.features.raw import sequence_values, show

CONTRACT_FILE = os.path.join("assets.extra", "serving_contract.json")
SIGNATURE_NAME = "serving_default"
# Bumped when a key changes meaning or disappears (new keys do not bump it).
FORMAT_VERSION = 1

# The dtype of each serving input: categorical inputs take their fitted value
# type, numeric inputs float32, sequences one delimited string per example.
_NUMERIC_DTYPE = "float32"
_SEQUENCE_DTYPE = "string"
# Inputs that carry a list per example, joined into one string.
_LIST_KINDS = ("sequence", "timestamps")


# ---------------------------------------------------------------- building
def build_contract(
    model,
    model_name: str | None = None,
    version: int | None = None,
    k: int | None = None,
) -> dict[str, Any]:
    """The serving contract of `model` as exported (a JSON-ready dict).

    Works for pointwise models (`RecModel`: one output per task), next-item
    models (`SequentialRecommender`) and `TwoTower` (top-k `item_ids` and
    `scores`; `k` is the exported k, default 10).

    Args:
        model: a keras_recsys model with a fitted `spec`.
        model_name: the name TF Serving serves it under.
        version: the export's version directory.
        k: how many items a retrieval or next-item export returns.

    Returns:
        {"format_version", "model", "signature_name", "batch", "id_convention",
        "inputs": {name: {...}}, "outputs": {name: {...}}, "other_signatures"}.
    """
    from keras_recsys import __version__

    spec = model.spec
    served = getattr(model, "serving_features", None)
    top_k = hasattr(model, "recommend")
    if top_k:
        kind = "retrieval" if served is not None else "next_item"
        outputs = _top_k_outputs(model, 10 if k is None else int(k))
    elif hasattr(model, "score_candidates"):
        kind = "candidate_ranking"
        outputs = _candidate_outputs(model)
    else:
        kind = "ranking"
        outputs = _pointwise_outputs(model)
    inputs = {
        feature.name: input_contract(spec, feature)
        for feature in spec.input_features
        if served is None or feature.name in served
    }
    contract: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "model": {
            "name": model_name,
            "version": None if version is None else int(version),
            "class": type(model).__name__,
            "kind": kind,
            "keras_recsys_version": __version__,
        },
        "signature_name": SIGNATURE_NAME,
        "batch": (
            "Every input is a 1-D tensor holding one value per example, and all "
            "inputs of one request have the same length (the batch size); "
            "every output's first dimension is that batch size."
        ),
        "id_convention": {
            "padding_id": PAD_ID,
            "oov_id": OOV_ID,
            "first_vocabulary_id": NUM_RESERVED_IDS,
        },
        "inputs": inputs,
        "outputs": outputs,
        "other_signatures": {},
    }
    if top_k and hasattr(model, "candidate_embeddings"):
        contract["other_signatures"]["item_embeddings"] = _item_embeddings_signature(model)
    return contract


def input_contract(spec, feature) -> dict[str, Any]:
    """What one serving input takes and how its values are read."""
    entry: dict[str, Any] = {"kind": feature.kind, "column": feature.column, "shape": [None]}
    if feature.kind == "numeric":
        entry["dtype"] = _NUMERIC_DTYPE
        entry["transform"] = feature.transform
        if feature.is_bucketized:
            entry["kind"] = "bucketized"
            entry["num_buckets"] = len(feature.boundaries) + 1
            entry["boundaries"] = list(feature.boundaries)
            entry["encoding"] = (
                "a number, bucketized by the fitted boundaries (compared "
                + ("after log1p" if feature.transform == "log1p" else "with the raw value")
                + "); the bucket id is embedded like a category"
            )
        else:
            entry["normalization"] = feature.normalization
            entry["encoding"] = "a number" + (
                ", transformed by sign(x)·log1p(|x|)" if feature.transform == "log1p" else ""
            )
        entry["missing_rule"] = (
            f"NaN, inf and -inf are replaced by the training mean {feature.fill_value!r}"
            + (" (of the log1p-transformed value)" if feature.transform == "log1p" else "")
        )
        return entry

    if feature.kind == "timestamps":
        sequence = spec[feature.sequence]
        entry.update(
            dtype=_SEQUENCE_DTYPE,
            sequence=sequence.name,
            separator=sequence.separator,
            max_length=sequence.max_length,
            origin=feature.origin,
            encoding=(
                f"the integer times in seconds (e.g. Unix times) of the items of "
                f"'{sequence.name}', one per item in the same order, joined by "
                f"{sequence.separator!r}; the times of the last {sequence.max_length} "
                "items are read"
            ),
            missing_rule=(
                "none: every item needs its timestamp, and a row with another "
                f"number of timestamps than '{sequence.name}' has items fails the request"
            ),
        )
        return entry

    owner = spec.vocabulary_owner(feature.name)
    value_dtype = spec.dtype_of(feature.name)
    if owner.is_hashed:
        entry["vocabulary_size"] = None
        entry["num_hash_bins"] = owner.num_bins
        values = (
            f"every value hashes into one of {owner.num_bins} buckets (ids "
            f"{NUM_RESERVED_IDS}..{owner.num_bins + NUM_RESERVED_IDS - 1})"
        )
    else:
        entry["vocabulary_size"] = len(owner.vocabulary)
        values = (
            f"the {len(owner.vocabulary)} vocabulary values have ids "
            f"{NUM_RESERVED_IDS}..{len(owner.vocabulary) + NUM_RESERVED_IDS - 1}"
        )
    entry["num_ids"] = owner.input_dim
    if owner.name != feature.name:
        entry["shares_vocabulary_with"] = owner.name
    missing = '""' if value_dtype == "string" else str(np.iinfo(np.int64).min)
    entry["oov_id"] = OOV_ID

    if feature.kind == "sequence":
        entry["dtype"] = _SEQUENCE_DTYPE
        entry["item_dtype"] = value_dtype
        entry["separator"] = feature.separator
        entry["max_length"] = feature.max_length
        entry["encoding"] = (
            f"the example's items joined by {feature.separator!r}, oldest first "
            f"(e.g. {_example_sequence(owner, feature.separator)!r}); only the "
            f"last {feature.max_length} items are read and empty items are "
            'skipped, so "" is an empty history'
        )
        unparsable = (
            ", as does an item that is not a decimal int64 (e.g. text, or a "
            "list joined with another separator, which reads as one item)"
            if value_dtype == "int64"
            else ""
        )
        entry["oov_rule"] = (
            f"{values}; an item not in the vocabulary becomes the "
            f"out-of-vocabulary id {OOV_ID} and keeps its position{unparsable}"
            if not owner.is_hashed
            else f"{values}; only a missing item ({missing}) becomes the "
            f"out-of-vocabulary id {OOV_ID}{unparsable}"
        )
        return entry

    entry["dtype"] = value_dtype
    if getattr(feature, "role", None) is not None:
        entry["role"] = feature.role
    entry["encoding"] = (
        "a string category" if value_dtype == "string" else "an integer category (int64)"
    )
    if owner.is_hashed:
        entry["oov_rule"] = (
            f"{values}; only a missing value ({missing}) becomes the out-of-vocabulary id {OOV_ID}"
        )
    else:
        entry["oov_rule"] = (
            f"{values}; any other value, and the missing value {missing}, becomes "
            f"the out-of-vocabulary id {OOV_ID} (never an error)"
        )
    return entry


def _example_sequence(owner, separator: str) -> str:
    vocabulary = list(owner.vocabulary or [])[:3]
    if not vocabulary:
        vocabulary = ["12", "7", "93"] if owner.dtype == "int64" else ["a", "b", "c"]
    return separator.join(str(v) for v in vocabulary)


def _pointwise_outputs(model) -> dict[str, Any]:
    """One output per served value, read off a call on dummy inputs."""
    from keras import ops

    values = model.predict_outputs(model.dummy_inputs(1))
    tasks = {task.name: task for task in model.tasks}
    outputs = {}
    for name, value in values.items():
        width = int(ops.shape(value)[-1]) if len(ops.shape(value)) == 2 else 1
        entry: dict[str, Any] = {
            "dtype": "float32",
            "shape": [None] if width == 1 else [None, width],
        }
        task = tasks.get(name)
        if task is not None:
            entry.update(kind=task.kind, task=task.name, label=task.label)
            entry["meaning"] = _task_meaning(task)
        elif name == getattr(model, "cvr_output", None):
            # ESMM's unsupervised pCVR, served beside its two tasks.
            entry.update(kind="binary", task=None, label=None)
            entry["meaning"] = (
                "probability of a conversion given a click (pCVR); not trained "
                "on a label of its own: pCTCVR = pCTR × pCVR"
            )
        else:
            entry.update(kind=None, task=None, label=None)
            entry["meaning"] = f"an extra output of {type(model).__name__} (no task of its own)"
        outputs[name] = entry
    return outputs


def _candidate_outputs(model) -> dict[str, Any]:
    """A candidate-ranking model (`HSTURanker`): per task a (B, M) score of each candidate slot."""
    spec = model.spec
    name, limit = model.candidate_feature, model.max_candidates
    slots = (
        f"one column per slot of the '{name}' list (at most {limit} candidates, "
        f"front-padded like every sequence: of m candidates, the j-th is in column "
        f"{limit} - m + j; `item_ids` names each column's candidate)"
    )
    outputs: dict[str, Any] = {}
    for task, positives in model.task_positives.items():
        outputs[task] = {
            "dtype": "float32",
            "shape": [None, limit],
            "kind": "binary",
            "task": task,
            "label": model.action_feature,
            "meaning": (
                f"probability that the user's action on the candidate is one of {positives} "
                f"(task '{task}'); {slots}; 0 in padding columns"
            ),
        }
    owner = spec.vocabulary_owner(name)
    dtype = "string" if owner.dtype == "string" else "int64"
    outputs["item_ids"] = {
        "dtype": dtype,
        "shape": [None, limit],
        "item_feature": name,
        "meaning": (
            f"the candidate of each column, raw as sent; padding columns hold "
            f"{'an empty string' if dtype == 'string' else '-1'}"
        ),
    }
    return outputs


def _task_meaning(task) -> str:
    if task.kind == "binary":
        return f"probability that '{task.label}' is 1 (task '{task.name}', sigmoid of the logit)"
    if task.kind == "multiclass":
        return (
            f"probabilities of the {task.num_classes} classes of '{task.label}', "
            f"one column per class id (task '{task.name}', softmax; rows sum to 1)"
        )
    return f"predicted value of '{task.label}' (task '{task.name}', regression, unscaled)"


def _top_k_outputs(model, k: int) -> dict[str, Any]:
    from keras_recsys.heads.top_k import EXCLUDED_SCORE

    item = model.item_feature
    history = getattr(model, "history_feature", None)
    # Both kinds of models read only known history items: the two-tower
    # pooling masks the OOV id, next-item models drop it (known_items_last).
    excluded = (
        f"items already in '{history}' are never returned, and unseen items of "
        f"'{history}' are ignored"
        if history
        else "no history is excluded"
    )
    missing = '""' if model.spec.dtype_of(item) == "string" else "-1"
    return {
        "item_ids": {
            "dtype": model.spec.dtype_of(item),
            "shape": [None, k],
            "item_feature": item,
            "k": k,
            "meaning": (
                f"raw ids of the {k} best items for each query, best first, as "
                f"the training data had them (the vocabulary of '{item}'); {excluded}"
            ),
        },
        "scores": {
            "dtype": "float32",
            "shape": [None, k],
            "excluded_score": EXCLUDED_SCORE,
            "meaning": (
                "the score of each returned item, higher is better (same order "
                f"as item_ids); a slot scored {EXCLUDED_SCORE:g} holds no real "
                f"recommendation (fewer than k items left; its id is {missing})"
            ),
        },
    }


def _item_embeddings_signature(model) -> dict[str, Any]:
    from keras import ops

    item = model.item_feature
    dim = int(ops.shape(model.candidate_embeddings(ops.convert_to_tensor([NUM_RESERVED_IDS])))[-1])
    return {
        "inputs": {
            "item_id": {
                "dtype": model.spec.dtype_of(item),
                "shape": [None],
                "meaning": f"raw item ids (the vocabulary of '{item}'); unseen ids give the "
                f"out-of-vocabulary id {OOV_ID}'s vector",
            }
        },
        "outputs": {
            "embeddings": {
                "dtype": "float32",
                "shape": [None, dim],
                "meaning": "the vectors serving_default scores queries against, for external "
                "nearest-neighbour indexes",
            }
        },
    }


# ------------------------------------------------------------ file access
def write_contract(saved_model_dir: str, contract: Mapping[str, Any]) -> str:
    """Writes `contract` to `<saved_model_dir>/assets.extra/serving_contract.json`."""
    path = os.path.join(saved_model_dir, CONTRACT_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as file:
        json.dump(contract, file, indent=2, ensure_ascii=False, allow_nan=False)
        file.write("\n")
    return path


def read_contract(saved_model_dir: str) -> dict[str, Any] | None:
    """The contract of an export, or None for exports written before contracts."""
    path = os.path.join(saved_model_dir, CONTRACT_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as file:
        return json.load(file)


# ----------------------------------------------------------- client side
def prepare_inputs(
    inputs: Mapping[str, Any], expected: Mapping[str, Mapping[str, Any]]
) -> dict[str, np.ndarray]:
    """Checks raw request arrays against the contract and casts them to its dtypes.

    What a client helper does before it sends a request, so a mistake fails
    here, naming the input, rather than in the server as an error about an
    input position or a whole batch: integer arrays of any width become
    int64, numbers float32, and strings (str or bytes) stay strings; a
    (B, 1) array becomes (B,). Nothing is converted that could change its
    meaning: text is never parsed as a number, nor a number printed as text.

    Args:
        inputs: {input name: array-like of one value per example}.
        expected: the contract's "inputs" (each entry needs at least
            "dtype"; "kind" and "separator" improve the messages).

    Returns:
        {input name: NumPy array}: int64, float32, or object arrays of str /
        bytes for string inputs.

    Raises:
        KeyError: an input is missing or unknown to the export.
        TypeError: a value does not have the input's dtype.
        ValueError: a wrong shape, or inputs of different batch sizes.
    """
    missing = [name for name in expected if name not in inputs]
    if missing:
        described = ", ".join(f"'{n}' ({_describe_input(expected[n])})" for n in missing)
        raise KeyError(
            f"The request lacks input(s) {described}; the export takes {sorted(expected)}."
        )
    unknown = [name for name in inputs if name not in expected]
    if unknown:
        raise KeyError(
            f"The request has input(s) {sorted(unknown)} that the export does not "
            f"take; it takes {sorted(expected)}."
        )
    prepared = {name: _prepare(name, inputs[name], expected[name]) for name in expected}
    _check_batch_sizes({name: len(value) for name, value in prepared.items()})
    return prepared


def _describe_input(entry: Mapping[str, Any]) -> str:
    kind = entry.get("kind")
    separator = entry.get("separator", "|")
    if kind == "sequence":
        items = f"{entry['item_dtype']} items" if "item_dtype" in entry else "items"
        return f"sequence: string of {items} joined by {separator!r}"
    if kind == "timestamps":
        return f"timestamps: string of integer seconds joined by {separator!r}"
    return f"{kind}: {entry['dtype']}" if kind else entry["dtype"]


def _prepare(name: str, value: Any, entry: Mapping[str, Any]) -> np.ndarray:
    dtype = entry["dtype"]
    if isinstance(value, (str, bytes)) or np.ndim(value) == 0:
        raise ValueError(
            f"Input '{name}' ({_describe_input(entry)}) takes a 1-D array of one "
            f"value per example, got a single value {show(value)}; wrap it in a list."
        )
    array = np.asarray(value)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(
            f"Input '{name}' ({_describe_input(entry)}) takes a 1-D array of one "
            f"value per example (shape (batch,)), got shape {array.shape}."
            + (f" {_join_hint(entry)}" if entry.get("kind") in _LIST_KINDS else "")
        )
    if dtype == "string":
        return _as_strings(name, array, entry)
    if dtype == "int64":
        return _as_int64(name, array, entry)
    if dtype == "float32":
        return _as_float32(name, array, entry)
    raise ValueError(f"Input '{name}': the contract gives an unknown dtype {dtype!r}.")


def _join_hint(entry: Mapping[str, Any]) -> str:
    return (
        f"Send each example's items as one string joined by "
        f"{entry.get('separator', '|')!r}, oldest first."
    )


def _type_error(name: str, entry: Mapping[str, Any], got: str, hint: str = "") -> TypeError:
    return TypeError(
        f"Input '{name}' ({_describe_input(entry)}) takes {entry['dtype']} values; "
        f"got {got}.{(' ' + hint) if hint else ''}"
    )


def _as_strings(name: str, array: np.ndarray, entry: Mapping[str, Any]) -> np.ndarray:
    if array.dtype.kind in "US":
        return _checked_cells(name, array.astype(object), entry)
    if array.dtype.kind == "O":
        bad = [v for v in array if not isinstance(v, (str, bytes))]
        if not bad:
            return _checked_cells(name, array, entry)
        got = f"{type(bad[0]).__name__} {show(bad[0])}"
    else:
        got = f"an array of {array.dtype}"
    if entry.get("kind") in _LIST_KINDS:
        hint = _join_hint(entry)
    else:
        hint = "Send the values as strings, as in the training data."
    raise _type_error(name, entry, got, hint)


def _checked_cells(name: str, array: np.ndarray, entry: Mapping[str, Any]) -> np.ndarray:
    """A sequence input's strings, after the checks training data gets (`sequence_values`).

    A list written out as text ("['Drama']", "[1, 2]") or items joined with
    another separator than the contract's would each reach the model as one
    unknown item; the same column-wide rules as in training name the input
    and the separator instead.
    """
    if entry.get("kind") != "sequence":
        return array
    cells = pd.Series([v.decode() if isinstance(v, bytes) else v for v in array], dtype=object)
    feature = SimpleNamespace(name=name, column=name, separator=entry.get("separator", "|"))
    sequence_values(cells, feature)
    return array


def _as_int64(name: str, array: np.ndarray, entry: Mapping[str, Any]) -> np.ndarray:
    if array.dtype.kind == "i":
        return array.astype(np.int64)
    if array.dtype.kind == "u":
        if array.size and array.max() > np.iinfo(np.int64).max:
            raise _type_error(name, entry, f"{show(array.max())}, beyond the int64 range")
        return array.astype(np.int64)
    if array.dtype.kind == "f":
        whole = np.isfinite(array) & (np.mod(array, 1) == 0) & (np.abs(array) < 2**53)
        if whole.all():
            # Integral floats (an int column that pandas turned to float)
            # convert exactly; anything else would be a silent truncation.
            return array.astype(np.int64)
        raise _type_error(
            name,
            entry,
            f"{array.dtype} value {show(array[~whole][0])}",
            "Ids are whole numbers; send a value outside the vocabulary (e.g. -1) "
            "for a missing id.",
        )
    if array.dtype.kind == "O" and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in array
    ):
        return _as_int64(name, np.asarray(array.tolist()), entry)
    example = array[0] if array.size else None
    raise _type_error(
        name, entry, f"{array.dtype} values (e.g. {show(example)})", "Text is not parsed as an id."
    )


def _as_float32(name: str, array: np.ndarray, entry: Mapping[str, Any]) -> np.ndarray:
    if array.dtype.kind in "biuf":
        return array.astype(np.float32)
    if array.dtype.kind == "O":
        if all(
            v is None or (isinstance(v, (int, float, np.number)) and not isinstance(v, bool))
            for v in array
        ):
            # None is a missing value: NaN, which the export imputes.
            return np.asarray([np.nan if v is None else v for v in array], np.float32)
    example = next((v for v in array if not isinstance(v, (int, float, np.number))), None)
    raise _type_error(
        name,
        entry,
        f"{array.dtype} values (e.g. {show(example)})",
        "Text is not parsed as a number.",
    )


def _check_batch_sizes(sizes: Mapping[str, int]) -> None:
    if len(set(sizes.values())) <= 1:
        return
    common, _ = Counter(sizes.values()).most_common(1)[0]
    differ = ", ".join(f"'{n}' has {s}" for n, s in sizes.items() if s != common)
    raise ValueError(
        "Every input of a request needs one value per example, but the inputs "
        f"differ in batch size: {differ} (the other inputs have {common})."
    )


def rest_request(
    inputs: Mapping[str, np.ndarray], signature_name: str = SIGNATURE_NAME
) -> dict[str, Any]:
    """The JSON body of TF Serving's REST `:predict` in the row format.

    `{"signature_name": ..., "instances": [{input: value, ...}, ...]}`, one
    instance per example, values as JSON strings and numbers (bytes are
    decoded as UTF-8). A missing numeric value stays NaN: `json.dumps`
    writes it as `NaN`, which TF Serving's REST parser accepts
    (RapidJSON's kParseNanAndInfFlag) although strict JSON has no spelling
    for it.
    """
    sizes = {name: len(np.asarray(values)) for name, values in inputs.items()}
    _check_batch_sizes(sizes)
    rows = next(iter(sizes.values()), 0)
    columns = {name: np.asarray(values, dtype=object) for name, values in inputs.items()}
    instances = [
        {name: _json_value(values[i]) for name, values in columns.items()} for i in range(rows)
    ]
    return {"signature_name": signature_name, "instances": instances}


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def predict_request(
    contract: Mapping[str, Any],
    inputs: Mapping[str, Any],
    model_name: str | None = None,
    signature_name: str | None = None,
):
    """A `tensorflow_serving.apis.predict_pb2.PredictRequest` for TF Serving's gRPC API.

    The inputs are checked and cast against the contract first
    (`prepare_inputs`), so every tensor has the signature's dtype.

    Args:
        contract: the export's contract (`describe(path)["contract"]`).
        inputs: {input name: array of one value per example}.
        model_name: the served model's name (default: the contract's).
        signature_name: default: the contract's, "serving_default".
    """
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2

    prepared = prepare_inputs(inputs, contract["inputs"])
    name = model_name or contract["model"].get("name") or ""
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(
            name=name, signature_name=signature_name or contract["signature_name"]
        )
    )
    for input_name, values in prepared.items():
        dtype = tf.dtypes.as_dtype(contract["inputs"][input_name]["dtype"])
        request.inputs[input_name].CopyFrom(tf.make_tensor_proto(values, dtype=dtype))
    return request
