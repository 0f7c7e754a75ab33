"""S3-Rec pre-training: objectives against NumPy, data sampling, real Beauty, transfer, config."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

import keras_recsys as kr
from keras_recsys.models.sequence import (
    S3RecPretrainer,
    S3RecPretrainingData,
    s3rec_pretraining_batch,
    s3rec_pretraining_sequences,
)
from tests.conftest import BACKEND, shared_data_path

TINY_LENGTH = 6


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


@pytest.fixture(scope="module")
def tiny():
    """A spec over 14 items (V = 16), 5 attributes, and front-padded training rows."""
    rng = np.random.default_rng(3)
    histories = [list(rng.choice(np.arange(100, 114), size=n, replace=False)) for n in (6, 5, 4, 2)]
    histories += [list(range(100, 114))]  # every item appears
    spec = kr.FeatureSpec([kr.Sequence("history", max_length=TINY_LENGTH)], 8)
    spec.adapt(pd.DataFrame({"history": histories}))
    attributes = (rng.random((spec.input_dim("history"), 5)) < 0.4).astype("float32")
    attributes[:2] = 0.0
    ids = spec.sequence_ids("history", histories[:4])
    return spec, attributes, ids


def _randomize(model, seed=0):
    """Weights away from the initialization, so every logit and score matters."""
    rng = np.random.default_rng(seed)
    model.set_weights(
        [
            w if v.path.endswith("item_attributes") else rng.normal(0, 0.4, w.shape)
            for v, w in zip(model.weights, model.get_weights())
        ]
    )


def _reference_losses(model, batch, attributes):
    """The four objectives in NumPy from the model's weights and its backbone's `body`."""
    items = batch["items"]
    valid = items >= 2
    masked = batch["item_masked"] & valid
    segment = batch["segment"] & valid
    table = _np(model.backbone.item_embedding.embeddings).astype("float64")
    mask_vector = _np(model.mask_vector).astype("float64")

    def encode(ids, hidden):
        embedded = np.where(hidden[..., None], mask_vector, table[ids])
        embedded = keras.ops.convert_to_tensor(embedded.astype("float32"))
        out = model.backbone.body(embedded, keras.ops.convert_to_tensor(valid), training=False)
        return _np(out).astype("float64")

    def project(key, x):
        kernel, bias = (_np(w).astype("float64") for w in model.projection(key).weights)
        return x @ kernel + bias

    h = encode(items, masked)
    size = len(items)
    attribute_table = _np(model.attribute_embedding.embeddings).astype("float64")
    targets = attributes[items]

    def attribute_loss(key, where):
        logits = project(key, h) @ attribute_table.T
        bce = -(targets * _log_sigmoid(logits) + (1 - targets) * _log_sigmoid(-logits))
        return bce.sum(-1)[where].sum() / size

    def sigmoid(x):
        return 1.0 / (1.0 + np.exp(-x))

    query = project("mip", h)
    f_pos = sigmoid((query * table[items]).sum(-1))
    f_neg = sigmoid((query * table[batch["negatives"]]).sum(-1))
    mip = -_log_sigmoid(f_pos - f_neg)[masked].sum() / size

    context = project("sp", encode(items, segment)[:, -1])
    positive = encode(items, valid & ~segment)[:, -1]
    negative_ids = np.where(segment, batch["segment_negatives"], items)
    negative = encode(negative_ids, valid & ~segment)[:, -1]
    pairwise = -_log_sigmoid(
        sigmoid((context * positive).sum(-1)) - sigmoid((context * negative).sum(-1))
    )
    sp = pairwise[segment.any(axis=1)].sum() / size
    return {
        "aap": attribute_loss("aap", valid & ~masked),
        "mip": mip,
        "map": attribute_loss("map", masked),
        "sp": sp,
    }


@pytest.mark.multibackend
def test_each_objective_matches_numpy(tiny):
    spec, attributes, ids = tiny
    keras.utils.set_random_seed(0)
    model = S3RecPretrainer(
        spec, item_attributes=attributes, num_blocks=1, num_heads=2, dropout=0.1
    )
    _randomize(model)
    data = model.pretraining_data(ids, batch_size=64, seed=1)
    (batch,) = data[0]
    assert batch["item_masked"].sum() > batch["item_masked"][:, -1].sum()  # not only the last
    assert batch["segment"].any()
    got = {key: float(_np(value)) for key, value in model(batch, training=False).items()}
    want = _reference_losses(model, batch, attributes)
    assert set(got) == {"aap", "mip", "map", "sp"}
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=2e-5, err_msg=key)
    # The loss `fit` minimizes is the weighted sum.
    total = float(_np(model.compute_loss(y_pred=model(batch, training=False))))
    weights = {"aap": 0.2, "mip": 1.0, "map": 1.0, "sp": 0.5}
    np.testing.assert_allclose(total, sum(weights[k] * want[k] for k in want), rtol=2e-5)


def test_a_zero_weight_turns_its_objective_off(tiny):
    spec, attributes, ids = tiny
    model = S3RecPretrainer(spec, aap_weight=0.0, map_weight=0.0, sp_weight=0.0, num_blocks=1)
    assert model.objectives == ["mip"] and model.num_attributes == 0
    assert not any("attribute" in w.path or "sp_projection" in w.path for w in model.weights)
    (batch,) = model.pretraining_data(ids, seed=0)[0]
    assert set(model(batch)) == {"mip"}
    with pytest.raises(ValueError, match="AAP and MAP predict item attributes"):
        S3RecPretrainer(spec)
    with pytest.raises(ValueError, match="Every objective weight is 0"):
        S3RecPretrainer(spec, aap_weight=0, mip_weight=0, map_weight=0, sp_weight=0)
    with pytest.raises(ValueError, match=r"item_attributes must be \(16, A\)"):
        S3RecPretrainer(spec, item_attributes=attributes[:-1])
    with pytest.raises(ValueError, match="missing"):
        model({"items": ids})


def test_prefixes_and_batch_sampling_follow_the_reference():
    rows = s3rec_pretraining_sequences(np.array([[0, 0, 5, 6, 7], [0, 0, 0, 0, 9]]), max_length=4)
    np.testing.assert_array_equal(rows, [[0, 0, 0, 5], [0, 0, 5, 6], [0, 5, 6, 7], [0, 0, 0, 9]])

    rng = np.random.default_rng(0)
    num_items, length = 40, 12
    ids = np.zeros((3000, length), np.int32)
    lengths = rng.integers(1, length + 1, size=len(ids))
    for row, n in zip(ids, lengths):
        row[length - n :] = rng.choice(np.arange(2, num_items), size=n, replace=False)
    pool = np.arange(1000, 1500)  # ids no sequence holds: negatives segments are cut from here
    batch = s3rec_pretraining_batch(ids, num_items, 0.2, pool, rng=1)
    valid = ids >= 2
    masked = batch["item_masked"]
    assert not (masked & ~valid).any() and masked[:, -1].all()  # the last item always
    rate = masked[:, :-1][valid[:, :-1]].mean()
    assert abs(rate - 0.2) < 0.01, rate
    negatives = batch["negatives"]
    assert ((negatives >= 2) & (negatives < num_items))[masked].all()
    assert (negatives[~masked] == 0).all()
    for row, negative, where in zip(ids, negatives, masked):
        assert not set(negative[where]) & set(row)  # never an item of the sequence
    segment = batch["segment"]
    sizes = segment.sum(axis=1)
    assert (sizes[lengths < 2] == 0).all()
    assert ((sizes >= 1) & (sizes <= lengths // 2))[lengths >= 2].all()
    # Every length 1..n/2 occurs, and segments start anywhere in the sequence.
    assert set(sizes[lengths == 12]) == set(range(1, 7))
    for where, negative in zip(segment[lengths >= 2], batch["segment_negatives"][lengths >= 2]):
        columns = np.flatnonzero(where)
        assert (np.diff(columns) == 1).all()  # contiguous
        run = negative[columns]
        assert (np.diff(run) == 1).all() and run[0] >= 1000  # a contiguous run of the pool
        assert (negative[~where] == 0).all()
    with pytest.raises(ValueError, match="front-padded"):
        s3rec_pretraining_batch(np.array([[3, 0, 4]]), num_items, 0.2)


def test_pretraining_data_redraws_every_epoch_and_is_reproducible(tiny):
    spec, _, ids = tiny
    data = S3RecPretrainingData(ids, 16, TINY_LENGTH, batch_size=4, seed=5)
    again = S3RecPretrainingData(ids, 16, TINY_LENGTH, batch_size=4, seed=5)
    assert len(data.sequences) == (ids >= 2).sum() and len(data) == int(np.ceil(17 / 4))
    first = data[0][0]
    for key, value in again[0][0].items():
        np.testing.assert_array_equal(value, first[key])
    data.on_epoch_end()
    assert not np.array_equal(data[0][0]["items"], first["items"])
    whole = S3RecPretrainingData(ids, 16, TINY_LENGTH, prefixes=False, shuffle=False)
    np.testing.assert_array_equal(whole.sequences, ids)


@pytest.fixture(scope="module")
def beauty():
    """The first 300 Beauty users (leave-one-out training part), a spec, the attribute matrix."""
    dataset = kr.datasets.amazon_beauty(shared_data_path("amazon_s3rec", "Beauty.txt"))
    if dataset.item_attributes is None:
        pytest.skip("Beauty_item2attributes.json is not next to Beauty.txt on this machine")
    small = kr.datasets.SequenceDataset(
        dataset.sequences.head(300), dataset.item_attributes, "beauty-300", dataset.attributes_path
    )
    train, _, _ = small.leave_one_out()
    spec = kr.FeatureSpec([kr.Sequence("history", max_length=20)], 16)
    spec.adapt(pd.DataFrame({"history": small.sequences["item_id"]}))
    return small, spec, spec.sequence_ids("history", train["item_id"])


def test_attribute_matrix_lines_up_with_the_spec(beauty):
    dataset, spec, _ = beauty
    matrix = dataset.item_attribute_matrix(spec)
    columns = sorted({a for values in dataset.item_attributes.values() for a in values})
    assert len(columns) == 637
    assert matrix.shape == (spec.input_dim("history"), len(columns))
    assert not matrix[:2].any()
    raw = spec.vocabulary_values("history", np.arange(2, spec.input_dim("history")))
    for internal, item in list(enumerate(raw, start=2))[:: max(1, len(raw) // 50)]:
        assert {columns[j] for j in np.flatnonzero(matrix[internal])} == set(
            dataset.item_attributes[item]
        )
    # An item the attribute file does not know: the error names it and the file.
    spec_extra = kr.FeatureSpec([kr.Sequence("history", max_length=20)], 16)
    spec_extra.adapt(pd.DataFrame({"history": [[123456789] + dataset.sequences["item_id"][0]]}))
    with pytest.raises(ValueError, match=r"Beauty_item2attributes\.json.*123456789"):
        dataset.item_attribute_matrix(spec_extra)
    lenient = dataset.item_attribute_matrix(spec_extra, allow_missing=True)
    assert not lenient[spec_extra.lookup("history", [123456789])[0]].any()


@pytest.mark.multibackend
def test_pretraining_lowers_the_loss_on_beauty(beauty):
    dataset, spec, ids = beauty
    keras.utils.set_random_seed(0)
    model = S3RecPretrainer(spec, item_attributes=dataset.item_attribute_matrix(spec), dropout=0.1)
    data = model.pretraining_data(ids, batch_size=128, seed=0)
    (held_out,) = data[len(data) - 1]  # a fixed batch, the same before and after

    def losses():
        return {k: float(_np(v)) for k, v in model(held_out, training=False).items()}

    before = losses()
    # No XLA on TensorFlow: its compile time would dwarf a few CPU steps.
    jit = False if BACKEND == "tensorflow" else "auto"
    model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=jit)
    history = model.fit(data, epochs=1, verbose=0).history
    assert set(history) == {"loss", "aap_loss", "mip_loss", "map_loss", "sp_loss"}
    after = losses()
    for key in ("aap", "mip", "map"):
        assert after[key] < before[key], (key, before, after)
    assert np.isfinite(after["sp"]), after


def _within_backbone(variable):
    """A backbone weight's path below the model and the backbone (their names differ)."""
    path = variable.path.split("/", 1)[1]
    return path.split("backbone/", 1)[-1]


def test_transfer_copies_the_encoder_into_sasrec_exactly(beauty, tmp_path):
    dataset, spec, ids = beauty
    attributes = dataset.item_attribute_matrix(spec)
    pretrainer = S3RecPretrainer(spec, item_attributes=attributes, num_blocks=2, num_heads=2)
    _randomize(pretrainer, seed=1)
    sasrec = kr.models.SASRec(spec, num_blocks=2, num_heads=2, dropout=0.5, loss="bce")
    assert pretrainer.transfer_to(sasrec) is sasrec
    source, target = pretrainer.backbone.weights, sasrec.backbone.weights
    assert [_within_backbone(w) for w in source] == [_within_backbone(w) for w in target]
    for a, b in zip(source, target):
        np.testing.assert_array_equal(_np(a), _np(b), err_msg=a.path)
    # The copy stays causal: changing the latest item leaves SASRec's earlier
    # positions alone, while the pre-training encoder reads both sides.
    assert sasrec.backbone.causal and not pretrainer.backbone.causal
    histories = ids[(ids >= 2).sum(axis=1) >= 2][:8]
    changed = histories.copy()
    changed[:, -1] = np.where(histories[:, -1] == 2, 3, 2)

    def earlier(backbone, x):
        return _np(backbone(x, training=False)["sequence"])[:, :-1]

    np.testing.assert_allclose(
        earlier(sasrec.backbone, histories), earlier(sasrec.backbone, changed), atol=1e-6
    )
    assert not np.allclose(
        earlier(pretrainer.backbone, histories), earlier(pretrainer.backbone, changed), atol=1e-3
    )
    with pytest.raises(ValueError, match="num_heads"):
        pretrainer.transfer_to(kr.models.SASRec(spec, num_blocks=2, num_heads=1))
    with pytest.raises(TypeError, match="SASRec"):
        pretrainer.transfer_to(kr.models.GRU4Rec(spec))


def test_get_config_round_trip(beauty, tmp_path):
    dataset, spec, ids = beauty
    attributes = dataset.item_attribute_matrix(spec)
    model = S3RecPretrainer(
        spec, item_attributes=attributes, num_blocks=1, num_heads=2, sp_weight=0.25, dropout=0.3
    )
    _randomize(model, seed=2)
    config = model.get_config()
    clone = S3RecPretrainer.from_config(config)
    assert clone.get_config() == config and clone.num_attributes == 637
    assert config["sp_weight"] == 0.25 and config["num_attributes"] == 637
    clone.set_weights(model.get_weights())
    (batch,) = model.pretraining_data(ids[:40], batch_size=40, seed=0)[0]
    want = {k: float(_np(v)) for k, v in model(batch).items()}
    for key, value in clone(batch).items():
        np.testing.assert_allclose(float(_np(value)), want[key], rtol=1e-6)
    # A saved model brings its attribute matrix back (a weight, not config).
    path = str(tmp_path / "s3rec.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(_np(loaded.item_attributes), attributes)
    for key, value in loaded(batch).items():
        np.testing.assert_allclose(float(_np(value)), want[key], rtol=1e-6)
