"""HSTURanker on MovieLens-100K: interleaved items and ratings, M-FALCON scoring, export."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import keras_recsys as kr
from tests.conftest import BACKEND

MAX_LENGTH, MAX_CANDIDATES = 12, 6
TASKS = {"liked": [4, 5], "loved": [5]}


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.fixture(scope="module")
def movielens(movielens_sequences):
    data = movielens_sequences
    train, _, test = data.leave_one_out()
    spec = kr.FeatureSpec(
        [
            kr.Sequence("history", max_length=MAX_LENGTH),
            kr.Sequence("history_actions", max_length=MAX_LENGTH),
            kr.Sequence("candidates", max_length=MAX_CANDIDATES, shares_vocabulary_with="history"),
        ],
        16,
    )
    sequences = data.sequences
    spec.adapt(
        pd.DataFrame(
            {
                "history": sequences["item_id"],
                "history_actions": sequences["rating"],
                "candidates": [[]] * len(sequences),
            }
        )
    )
    return spec, train, test


def _inputs(spec, histories, ratings, candidates=None):
    x = {
        "history": spec.sequence_ids("history", histories),
        "history_actions": spec.sequence_ids("history_actions", ratings),
    }
    if candidates is not None:
        x["candidates"] = spec.sequence_ids("candidates", candidates)
    return x


# TensorFlow only: on JAX and PyTorch the same equality is checked on the layers
# (tests/layers/test_m_falcon.py, test_hstu.py) and score_candidates runs in the
# learning test below.
def test_m_falcon_scores_equal_one_pass_per_candidate(movielens):
    spec, _, test = movielens
    keras.utils.set_random_seed(0)
    model = kr.models.HSTURanker(spec, TASKS, num_blocks=2, num_heads=2, micro_batch=2)
    # Histories one item short of the maximum, so that one more item fits a single pass.
    rows = test.head(3)
    histories = [h[-(MAX_LENGTH - 1) :] for h in rows["history"]]
    ratings = [r[-(MAX_LENGTH - 1) :] for r in rows["rating"]]
    candidates = [[t, 50, 100, 181, 1] for t in rows["target"]]
    scores = model.score_candidates(_inputs(spec, histories, ratings, candidates))
    for j in range(5):
        alone = _inputs(
            spec,
            [h + [c[j]] for h, c in zip(histories, candidates)],
            [r + [3] for r in ratings],  # the candidate's own action is never seen
        )
        logits = _np(model(alone)["logits"])[:, -1]
        for k, task in enumerate(TASKS):
            np.testing.assert_allclose(
                _np(scores[task])[:, MAX_CANDIDATES - 5 + j],
                1 / (1 + np.exp(-logits[:, k])),
                atol=1e-5,
            )
    assert (_np(scores["liked"])[:, 0] == 0).all()  # a padding slot scores 0


def test_loss_is_the_binary_cross_entropy_of_every_labelled_item(movielens):
    spec, _, _ = movielens
    model = kr.models.HSTURanker(spec, TASKS, num_blocks=1)
    x = _inputs(spec, [[50, 100, 181], [1, 2]], [[5, 3, 4], [9, 1]])  # rating 9 is unknown
    outputs = model(x)
    loss = float(_np(model.compute_loss(x, None, outputs)))
    logits, mask = _np(outputs["logits"]), _np(outputs["mask"])
    ratings = np.where(mask, spec.vocabulary_values("history_actions", x["history_actions"]), None)
    total, count = 0.0, 0
    for (b, i), rating in np.ndenumerate(ratings):
        if rating is None:  # padding or an unknown rating: no label
            continue
        for k, positives in enumerate(TASKS.values()):
            p = 1 / (1 + np.exp(-logits[b, i, k]))
            y = float(rating in positives)
            total += -(y * np.log(p) + (1 - y) * np.log(1 - p))
            count += 1
    assert count == 2 * 4  # 3 + 1 labelled items, 2 tasks
    np.testing.assert_allclose(loss, total / count, rtol=1e-5)


@pytest.mark.multibackend
def test_hstu_ranker_learns_ratings_on_movielens(movielens):
    spec, train, test = movielens
    keras.utils.set_random_seed(0)
    model = kr.models.HSTURanker(spec, TASKS, dropout=0.1)
    model.compile(optimizer=keras.optimizers.AdamW(3e-3, beta_2=0.98))
    x = _inputs(spec, train["item_id"], train["rating"])
    losses = model.fit(x, None, batch_size=64, epochs=3, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.9 * losses[0], losses
    scores = model.score_candidates(
        _inputs(spec, test["history"], test["rating"], [[t] for t in test["target"]])
    )
    ratings = np.asarray(test["target_rating"])
    auc = roc_auc_score(ratings >= 4, _np(scores["liked"])[:, -1])
    assert auc > 0.62, auc


def test_the_spec_must_pair_history_actions_and_candidates(movielens):
    spec, _, _ = movielens
    config = spec.get_config()
    for feature in config["features"]:
        if feature["config"]["name"] == "history_actions":
            feature["config"]["max_length"] = MAX_LENGTH + 1
    with pytest.raises(ValueError, match="same max_length"):
        kr.models.HSTURanker(kr.FeatureSpec.from_config(config), TASKS)
    with pytest.raises(ValueError, match="'nope' must be a Sequence"):
        kr.models.HSTURanker(spec, TASKS, candidates="nope")
    with pytest.raises(ValueError, match="at least one task"):
        kr.models.HSTURanker(spec, {})


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "tensorflow", reason="exports on the TensorFlow backend")
def test_export_scores_raw_candidate_lists_like_the_model(movielens, tmp_path):
    import tensorflow as tf

    spec, train, test = movielens
    model = kr.models.HSTURanker(spec, TASKS, num_blocks=1)
    model.compile()
    model.fit(_inputs(spec, train["item_id"][:128], train["rating"][:128]), None, verbose=0)
    frame = pd.DataFrame(
        {
            "history": [h[-MAX_LENGTH:] for h in test["history"][:4]],
            "history_actions": [r[-MAX_LENGTH:] for r in test["rating"][:4]],
            "candidates": [[t, 50, 100] for t in test["target"][:3]] + [[]],
        }
    )
    path = model.export(str(tmp_path / "ranker"), warmup_data=frame)
    differences = kr.export.check_export(model, path, frame)
    assert max(differences.values()) <= 1e-5, differences
    contract = kr.export.describe(path)["contract"]
    assert contract["model"]["kind"] == "candidate_ranking"
    assert contract["outputs"]["liked"]["shape"] == [None, MAX_CANDIDATES]
    serve = tf.saved_model.load(path).signatures["serving_default"]
    too_many = "|".join(str(i) for i in range(1, MAX_CANDIDATES + 2))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"candidates.{0,2} holds more than 6"):
        serve(
            history=tf.constant(["1|2"]),
            history_actions=tf.constant(["4|5"]),
            candidates=tf.constant([too_many]),
        )
