"""The multi-behaviour MovieLens view: no future leakage, behaviour types, tasks, time split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import keras_recsys as kr
from keras_recsys.datasets.movielens_behaviors import with_behavior_sequences


def _log():
    """One user's ratings out of time order, with a tie at t=30 and genre lists."""
    return pd.DataFrame(
        {
            "user_id": [7, 7, 7, 7, 7, 8],
            "item_id": [13, 11, 12, 14, 15, 11],
            "rating": [2, 5, 4, 1, 5, 3],
            "timestamp": [30, 10, 20, 30, 40, 5],
            "genres": [["c"], ["a", "b"], ["b"], ["d", "e"], ["a"], ["a", "b"]],
        }
    )


def test_histories_hold_only_strictly_earlier_ratings_by_type():
    out = with_behavior_sequences(_log(), max_length=10)
    by_item = out[out.user_id == 7].set_index("item_id")
    # t=10: nothing earlier.
    assert by_item.loc[11, "hist_items"] == [] and by_item.loc[11, "hist_length"] == 0
    # The two t=30 ratings do not see each other (same second: order unknown).
    for item in (13, 14):
        assert by_item.loc[item, "hist_items"] == [11, 12]
        assert by_item.loc[item, "hist_liked"] == [11, 12]
        assert by_item.loc[item, "hist_disliked"] == []
        assert by_item.loc[item, "hist_genres"] == ["a", "b", "b"]
    # t=40 sees all four, oldest first, ties in file order (13 before 14).
    last = by_item.loc[15]
    assert last["hist_items"] == [11, 12, 13, 14] and last["hist_length"] == 4
    assert last["hist_ratings"] == [5, 4, 2, 1]  # aligned with hist_items
    assert last["hist_liked"] == [11, 12] and last["liked_genres"] == ["a", "b", "b"]
    assert last["hist_disliked"] == [13, 14] and last["disliked_genres"] == ["c", "d", "e"]
    # Another user's ratings never enter.
    assert out[out.user_id == 8]["hist_items"].tolist() == [[]]
    # Tasks from the rating; file order kept.
    assert out["item_id"].tolist() == _log()["item_id"].tolist()
    np.testing.assert_array_equal(out["like"], [0, 1, 1, 0, 1, 0])
    np.testing.assert_array_equal(out["love"], [0, 1, 0, 0, 1, 0])
    np.testing.assert_array_equal(out["dislike"], [1, 0, 0, 1, 0, 0])


def test_max_length_keeps_the_most_recent():
    out = with_behavior_sequences(_log(), max_length=2)
    last = out[out.item_id == 15].iloc[0]
    assert last["hist_items"] == [13, 14] and last["hist_length"] == 4
    assert last["hist_ratings"] == [2, 1]
    assert last["hist_genres"] == ["d", "e"] and last["liked_genres"] == ["b", "b"]
    with pytest.raises(ValueError, match="max_length must be >= 1"):
        kr.datasets.movielens_100k_behaviors(max_length=0)


@pytest.fixture(scope="module")
def behaviors():
    try:
        return kr.datasets.movielens_100k_behaviors(max_length=20)
    except (FileNotFoundError, OSError) as error:
        pytest.skip(f"MovieLens-100K not cached and not downloadable: {str(error).splitlines()[0]}")


def test_real_view_split_and_leakage(behaviors):
    train, valid, test = behaviors
    assert (len(train), len(valid), len(test)) == (80_000, 10_000, 10_000)
    assert train.timestamp.max() <= valid.timestamp.min() <= valid.timestamp.max()
    assert valid.timestamp.max() <= test.timestamp.min()
    # An independent check on sampled test rows: the history is the user's
    # ratings strictly before, in time order, the most recent 20.
    everything = pd.concat([train, valid, test])
    for _, row in test.sample(25, random_state=0).iterrows():
        mine = everything[
            (everything.user_id == row.user_id) & (everything.timestamp < row.timestamp)
        ].sort_values("timestamp", kind="stable")
        assert set(row.hist_items) <= set(mine.item_id)
        assert sorted(row.hist_items) == sorted(mine.item_id.tolist()[-20:]) or (
            # Ties at the 20th-newest second may order differently across files.
            mine.timestamp.tolist()[-20:].count(mine.timestamp.tolist()[-20]) > 1
        )
        liked = set(mine[mine.rating >= 4].item_id)
        assert set(row.hist_liked) <= liked and len(row.hist_liked) == min(20, len(liked))
        assert row.hist_length == len(mine)


def test_spec_reads_the_view(behaviors):
    train, _, _ = behaviors
    spec = kr.datasets.movielens_behavior_feature_spec(embedding_dim=8, max_length=20)
    spec.adapt(train.head(5000))
    batch = next(iter(kr.data.from_pandas(train.head(64), spec, batch_size=64, labels=False)))
    assert tuple(batch["hist_liked"].shape) == (64, 20)
    # The histories read item_id's vocabulary: the same raw movie, the same id.
    row = train.head(64).iloc[-1]
    if row.hist_items:
        expected = spec.lookup("item_id", [row.hist_items[-1]])[0]
        assert int(batch["hist_items"][-1, -1]) == int(expected)
