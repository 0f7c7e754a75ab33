"""The serving contract of an export and the client requests built from it.

Checked on the sequence export of tests/test_export.py (its module fixture,
exported once here): the contract lists every input and output with what a
client needs beyond dtypes; the example REST request, converted the way TF
Serving's REST API converts instances, answers like the in-process model;
the gRPC PredictRequest parses and covers the signature. The contracts of a
two-tower and a next-item model are built from the models (no export).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import keras_recsys as kr
from keras_recsys import serving_contract
from keras_recsys.export import serving_inputs
from keras_recsys.features import OOV_ID
from tests.conftest import requires_tensorflow_backend
from tests.test_export import export_sequence_model, load, serve, with_histories

pytestmark = requires_tensorflow_backend


@pytest.fixture(scope="module")
def sequence_model(census_small, tmp_path_factory):
    """tests/test_export.py's sequence model, exported once for this module."""
    return export_sequence_model(census_small, tmp_path_factory)


KINDS = {
    "education": "categorical",
    "sex": "categorical",
    "country_self": "categorical",
    "det_ind_code": "categorical",
    "age": "numeric",
    "weeks_worked": "bucketized",
    "moves": "sequence",
    "parents": "sequence",
    "codes": "sequence",
}


def test_contract_lists_every_input_with_its_kind_separator_and_vocabulary(sequence_model):
    """assets.extra/serving_contract.json, returned by describe(): every served
    input with its kind, dtype, separator, max_length, vocabulary size and OOV
    rule; the output's meaning; the model's name and version."""
    model, _, path = sequence_model
    spec = model.spec
    info = kr.export.describe(path)
    contract = info["contract"]
    with open(os.path.join(path, "assets.extra", "serving_contract.json")) as file:
        assert json.load(file) == contract
    assert contract["model"] == {
        "name": "sequences",
        "version": 1,
        "class": "WideAndDeep",
        "kind": "ranking",
        "keras_recsys_version": kr.__version__,
    }
    inputs = contract["inputs"]
    assert {name: entry["kind"] for name, entry in inputs.items()} == KINDS
    # The dtypes and shapes are the signature's, which the old keys still give.
    assert {n: (e["dtype"], e["shape"]) for n, e in inputs.items()} == info["inputs"]
    assert inputs["det_ind_code"]["dtype"] == "int64"
    assert inputs["education"]["dtype"] == "string"
    for name in ("moves", "parents", "codes"):
        assert inputs[name]["separator"] == "|"
        assert inputs[name]["max_length"] == spec[name].max_length
    assert inputs["codes"]["item_dtype"] == "int64"
    assert inputs["moves"]["item_dtype"] == "string"
    assert inputs["parents"]["shares_vocabulary_with"] == "country_self"
    for name, kind in KINDS.items():
        if kind in ("categorical", "sequence"):
            entry = inputs[name]
            assert entry["vocabulary_size"] == len(spec.vocabulary_owner(name).vocabulary)
            assert entry["num_ids"] == spec.input_dim(name)
            assert entry["oov_id"] == OOV_ID
            assert f"out-of-vocabulary id {OOV_ID}" in entry["oov_rule"]
    assert inputs["parents"]["vocabulary_size"] == len(spec["country_self"].vocabulary)
    assert "not a decimal int64" in inputs["codes"]["oov_rule"]
    assert inputs["weeks_worked"]["num_buckets"] == len(spec["weeks_worked"].boundaries) + 1
    assert "training mean" in inputs["age"]["missing_rule"]
    income = contract["outputs"]["income"]
    assert (income["dtype"], income["shape"]) == info["outputs"]["income"]
    assert income["kind"] == "binary" and income["meaning"].startswith("probability")


def tf_serving_rest_inputs(body: dict, signature: dict) -> dict[str, tf.Tensor]:
    """The tensors TF Serving's REST API makes of a row-format request.

    As tensorflow_serving/util/json_tensor.cc does: every instance names
    every input; a string input takes JSON strings, an int64 input JSON
    integers, a float input any JSON number; the instances are stacked.
    """
    sent = json.loads(json.dumps(body))
    assert sent["signature_name"] == "serving_default"
    tensors = {}
    for name, spec in signature.items():
        values = []
        for i, instance in enumerate(sent["instances"]):
            assert set(instance) == set(signature), f"instance {i}: {sorted(instance)}"
            value = instance[name]
            if spec.dtype == tf.string:
                ok = isinstance(value, str)
            elif spec.dtype == tf.int64:
                ok = isinstance(value, int) and not isinstance(value, bool)
            else:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            assert ok, f"JSON value {value!r} of '{name}' is not of type {spec.dtype.name}"
            values.append(value)
        tensors[name] = tf.constant(values, spec.dtype)
    return tensors


def test_example_rest_request_answers_like_the_model(sequence_model):
    """describe()'s example request holds the warm-up rows (real test rows) and,
    fed as TF Serving feeds REST instances, answers like the in-process model."""
    model, test, path = sequence_model
    body = kr.export.describe(path)["example_request"]
    instances = body["instances"]
    rows = test.tail(3)
    assert [i["education"] for i in instances] == rows["education"].tolist()
    assert [i["codes"] for i in instances] == rows["codes"].tolist()
    function = load(path).signatures["serving_default"]
    served = function(**tf_serving_rest_inputs(body, function.structured_input_signature[1]))
    frame = pd.DataFrame(instances)
    expected = model.predict_outputs(kr.data.to_numpy(frame, model))
    np.testing.assert_allclose(
        served["income"].numpy(), np.reshape(expected["income"], -1), atol=1e-5
    )


def test_predict_request_parses_and_covers_the_signature(sequence_model):
    """The gRPC PredictRequest round-trips through its wire format, carries every
    signature input in the signature's dtype (int32 ids and Python floats cast),
    and the server's answer to it is the model's."""
    from tensorflow_serving.apis import predict_pb2

    model, test, path = sequence_model
    signature = load(path).signatures["serving_default"].structured_input_signature[1]
    raw = serving_inputs(model.spec, test.head(4))
    sent = dict(raw, det_ind_code=raw["det_ind_code"].astype(np.int32), age=raw["age"].tolist())
    request = kr.export.predict_request(path, sent)
    parsed = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    assert parsed.model_spec.name == "sequences"
    assert parsed.model_spec.signature_name == "serving_default"
    assert set(parsed.inputs) == set(signature)
    for name, spec in signature.items():
        assert parsed.inputs[name].dtype == spec.dtype.as_datatype_enum, name
        assert [d.size for d in parsed.inputs[name].tensor_shape.dim] == [4], name
    served = serve(path, {k: tf.make_ndarray(v) for k, v in parsed.inputs.items()})
    np.testing.assert_allclose(served["income"], serve(path, raw)["income"], atol=1e-6)
    # Without inputs: the warm-up rows, named as exported.
    warmup = kr.export.predict_request(path)
    assert set(warmup.inputs) == set(signature)
    assert [d.size for d in warmup.inputs["codes"].tensor_shape.dim] == [3]


def test_retrieval_and_next_item_contracts(census_small):
    """A two-tower contract lists only the query inputs, top-k `item_ids` in the
    item vocabulary's dtype, `scores` and the item_embeddings signature; a
    next-item model's its history; a request sending the candidate is refused."""
    train = with_histories(census_small[0].head(1024))
    spec = kr.FeatureSpec(
        [
            kr.Categorical("education"),
            kr.Numeric("age"),
            kr.Categorical("det_ind_code"),
            kr.Categorical("major_ind_code"),
            kr.Sequence("codes", max_length=2, shares_vocabulary_with="det_ind_code"),
        ],
        default_embedding_dim=4,
    ).adapt(train)
    two_tower = kr.models.TwoTower(
        spec, candidate_features=["det_ind_code", "major_ind_code"], tower_units=[8], output_dim=6
    )
    contract = serving_contract.build_contract(two_tower, "tt", 2, k=5)
    json.dumps(contract, allow_nan=False)  # JSON as written
    assert contract["model"]["kind"] == "retrieval"
    assert set(contract["inputs"]) == {"education", "age", "codes"}
    assert contract["inputs"]["codes"]["shares_vocabulary_with"] == "det_ind_code"
    item_ids, scores = contract["outputs"]["item_ids"], contract["outputs"]["scores"]
    assert (item_ids["dtype"], item_ids["shape"], item_ids["k"]) == ("int64", [None, 5], 5)
    assert "'codes' are never returned" in item_ids["meaning"]
    assert (scores["dtype"], scores["shape"]) == ("float32", [None, 5])
    embeddings = contract["other_signatures"]["item_embeddings"]
    assert embeddings["inputs"]["item_id"]["dtype"] == "int64"
    assert embeddings["outputs"]["embeddings"]["shape"] == [None, 6]
    query = serving_inputs(spec, train.head(2), two_tower.serving_features)
    assert set(serving_contract.prepare_inputs(query, contract["inputs"])) == set(query)
    with pytest.raises(KeyError, match=r"\['det_ind_code'\] that the export does not take"):
        serving_contract.prepare_inputs(
            dict(query, det_ind_code=np.array([33, 43])), contract["inputs"]
        )

    history = kr.FeatureSpec([kr.Sequence("codes", max_length=3)], 8).adapt(train)
    sasrec = kr.models.SASRec(history, num_blocks=1, dropout=0.0)
    contract = serving_contract.build_contract(sasrec, "next", 1)
    assert contract["model"]["kind"] == "next_item"
    assert list(contract["inputs"]) == ["codes"]
    assert contract["inputs"]["codes"]["item_dtype"] == "int64"
    assert contract["outputs"]["item_ids"]["shape"] == [None, 10]
    assert contract["other_signatures"]["item_embeddings"]["outputs"]["embeddings"]["shape"] == [
        None,
        8,
    ]
