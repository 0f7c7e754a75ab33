"""Two-tower retrieval: the in-batch softmax against numpy, training on MovieLens, top-k, export."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

import keras_recsys as kr
from keras_recsys.heads.retrieval import InBatchSoftmax
from keras_recsys.heads.top_k import top_k_items
from keras_recsys.models.retrieval import TwoTower
from tests.conftest import BACKEND


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _softmax_ce(logits, labels):
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -(labels * log_p).sum(axis=1)


@pytest.mark.multibackend
def test_in_batch_softmax_matches_numpy():
    rng = np.random.default_rng(0)
    q, c = rng.normal(size=(6, 4)).astype("float32"), rng.normal(size=(6, 4)).astype("float32")
    ids = np.array([2, 3, 2, 5, 6, 7])  # row 0 and row 2 hold the same item
    counts = np.array([0, 0, 10, 3, 0, 1, 4, 2], "float64")
    head = InBatchSoftmax(8, temperature=0.5)
    head.build()
    head.set_candidate_frequencies(counts)
    got = float(_np(head.compute_loss(q, c, ids)))
    prob = counts / counts.sum()
    logits = q @ c.T / 0.5 - np.log(prob[ids])[None, :]
    hit = (ids[:, None] == ids[None, :]) & ~np.eye(6, dtype=bool)
    logits[hit] = -1e9
    want = _softmax_ce(logits, np.eye(6)).mean()
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # Without the corrections, the plain in-batch softmax.
    plain = InBatchSoftmax(8, temperature=0.5, logq_correction=False, remove_accidental_hits=False)
    plain.build()
    want = _softmax_ce(q @ c.T / 0.5, np.eye(6)).mean()
    np.testing.assert_allclose(float(_np(plain.compute_loss(q, c, ids))), want, rtol=1e-5)
    # Hard negatives: the positive and the 2 highest other logits of each row.
    mined = InBatchSoftmax(8, temperature=0.5, logq_correction=False, num_hard_negatives=2)
    mined.build()
    logits = q @ c.T / 0.5
    logits[hit] = -1e9
    kept = []
    for i in range(6):
        others = np.sort(np.delete(logits[i], i))[::-1][:2]
        kept.append(np.concatenate([[logits[i, i]], others]))
    kept = np.array(kept)
    want = _softmax_ce(kept, np.tile([1.0, 0.0, 0.0], (6, 1))).mean()
    np.testing.assert_allclose(float(_np(mined.compute_loss(q, c, ids))), want, rtol=1e-5)


@pytest.mark.multibackend
def test_top_k_excludes_history_and_reserved_ids():
    scores = np.array([[9.0, 8.0, 1.0, 5.0, 4.0, 3.0], [9.0, 8.0, 6.0, 5.0, 4.0, 3.0]], "float32")
    history = np.array([[0, 3], [2, 4]])
    out = top_k_items(keras.ops.convert_to_tensor(scores), 2, history)
    np.testing.assert_array_equal(_np(out["item_ids"]), [[4, 5], [3, 5]])
    np.testing.assert_allclose(_np(out["scores"]), [[4.0, 3.0], [5.0, 3.0]])
    with pytest.raises(ValueError, match="k=5 is larger than the number of items"):
        top_k_items(keras.ops.convert_to_tensor(scores), 5)


@pytest.fixture(scope="module")
def movielens_pairs(movielens_sequences):
    data = movielens_sequences
    train, _, test = kr.datasets.leave_one_out(data.sequences[["user_id", "item_id"]])
    pairs = kr.datasets.next_item_pairs(train, max_history=20, columns=["user_id"])
    queries = pd.DataFrame(
        {
            "user_id": test["user_id"],
            "history": [h[-20:] for h in test["history"]],
            "item_id": test["target"],
        }
    )
    return pairs, queries


def _two_tower(pairs):
    spec = kr.FeatureSpec(
        [
            kr.Categorical("user_id"),
            kr.Categorical("item_id"),
            kr.Sequence("history", shares_vocabulary_with="item_id", max_length=20),
        ],
        default_embedding_dim=16,
    )
    spec.adapt(pairs)
    keras.utils.set_random_seed(0)
    model = TwoTower(spec, candidate_features=["item_id"], tower_units=[32], output_dim=16)
    model.set_candidate_frequencies(
        np.bincount(spec.lookup("item_id", pairs["item_id"]), minlength=model.num_items)
    )
    return model


@pytest.mark.multibackend
def test_two_tower_learns_on_movielens_and_beats_popularity(movielens_pairs):
    pairs, queries = movielens_pairs
    model = _two_tower(pairs)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    history = model.fit(
        kr.data.from_pandas(pairs, model, batch_size=1024, shuffle=True, seed=0),
        epochs=2,
        verbose=0,
    ).history
    assert history["loss"][-1] < history["loss"][0]
    x = kr.data.to_numpy(queries, model)
    top = _np(model.recommend(x, k=10)["item_ids"])
    targets = model.spec.lookup("item_id", queries["item_id"])
    recall = np.mean([t in row for t, row in zip(targets, top)])
    # Popularity (most frequent training items not in the history), same queries.
    counts = np.bincount(model.spec.lookup("item_id", pairs["item_id"]), minlength=model.num_items)
    popular = top_k_items(
        keras.ops.convert_to_tensor(np.tile(counts.astype("float32"), (len(x["history"]), 1))),
        10,
        x["history"],
    )
    pop_recall = np.mean([t in row for t, row in zip(targets, _np(popular["item_ids"]))])
    assert recall > pop_recall, (recall, pop_recall)
    # The history never comes back.
    for row, seen in zip(top, x["history"]):
        assert not set(row) & set(seen[seen > 1])


def test_two_tower_export_answers_like_the_model(movielens_pairs, tmp_path):
    pairs, queries = movielens_pairs
    model = _two_tower(pairs)
    model.compile(optimizer="adam")
    model.fit(kr.data.from_pandas(pairs.head(4096), model, batch_size=512), epochs=1, verbose=0)
    path = model.export(str(tmp_path / "two_tower"), k=5)
    rows = queries.head(16).copy()
    rows.loc[rows.index[0], "history"] = []  # an empty history still answers
    rows.loc[rows.index[1], "history"] = [99999, 99998]  # unseen items are ignored
    differences = kr.export.check_export(model, path, rows)
    assert differences["item_ids"] == 0.0 and differences["scores"] < 1e-5
    info = kr.export.describe(path)
    assert set(info["inputs"]) == {"user_id", "history"}  # query features only
    assert info["outputs"]["item_ids"][1] == [None, 5]


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the other backends export via TensorFlow")
def test_two_tower_checks_its_features(movielens_pairs):
    pairs, _ = movielens_pairs
    spec = _two_tower(pairs).spec
    with pytest.raises(ValueError, match="Candidate feature 'history' is a sequence"):
        TwoTower(spec, candidate_features=["history"])
    with pytest.raises(ValueError, match="not in the spec"):
        TwoTower(spec, candidate_features=["movie"])


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the serving preprocessing is TensorFlow")
def test_a_query_feature_missing_at_serving_is_named(movielens_pairs):
    from keras_recsys.features.preprocessor import Preprocessor

    pairs, _ = movielens_pairs
    model = _two_tower(pairs)
    served = Preprocessor(model.spec, inputs=model.serving_features)
    assert set(served.input_signature()) == {"user_id", "history"}
    with pytest.raises(KeyError, match="Feature 'history' is missing from the input"):
        served({"user_id": np.array([1, 2])})
