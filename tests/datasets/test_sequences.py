"""Sequence data: building sequences from logs, k-core, leave-one-out, time split, S3-Rec files.

Hand-made logs check the exact results; the real Amazon Beauty file (S3-Rec)
and MovieLens-100K are checked when present, and the tests skip, saying why,
where they are not.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from keras_recsys import datasets
from keras_recsys.datasets import movielens
from keras_recsys.datasets.sequences import (
    S3REC_ENV,
    SequenceDataset,
    amazon_beauty,
    k_core,
    leave_one_out,
    s3rec_sequences,
    sequences_from_log,
    time_split,
)

# user 2 has a timestamp tie (items 21 and 22 at t=5, in that log order) and
# an exact duplicate row (2, 23, 7); user 1 is given out of time order.
LOG = pd.DataFrame(
    {
        "user_id": [2, 1, 2, 1, 2, 2, 1, 2, 3],
        "item_id": [23, 12, 21, 11, 22, 23, 13, 20, 30],
        "timestamp": [7, 20, 5, 10, 5, 7, 30, 1, 4],
        "rating": [3, 4, 5, 1, 2, 9, 3, 4, 5],
    }
)


def test_sequences_from_log_orders_and_drops_duplicates():
    sequences = sequences_from_log(LOG, columns=["rating"])
    assert list(sequences.columns) == ["user_id", "item_id", "timestamp", "rating"]
    assert sequences["user_id"].tolist() == [1, 2, 3]
    assert sequences["item_id"].tolist() == [[11, 12, 13], [20, 21, 22, 23], [30]]
    assert sequences["timestamp"].tolist() == [[10, 20, 30], [1, 5, 5, 7], [4]]
    # The duplicate's first occurrence (rating 3) is kept, the later one (9) dropped.
    assert sequences["rating"].tolist() == [[1, 4, 3], [4, 5, 2, 3], [5]]
    assert sequences.attrs["report"] == {
        "rows": 9,
        "duplicates_dropped": 1,
        "interactions": 8,
        "users": 3,
        "items": 8,
    }
    # Plain Python ints, so the lists compare and serialise like the raw ids.
    assert type(sequences["item_id"][0][0]) is int


def test_sequences_from_log_does_not_depend_on_row_order():
    # Sorting the log by time keeps tied rows in their log order (stable), so
    # the result must equal the one from the shuffled log.
    ordered = LOG.sort_values(["user_id", "timestamp"], kind="stable")
    expected = sequences_from_log(LOG, columns=["rating"])
    got = sequences_from_log(ordered, columns=["rating"])
    pd.testing.assert_frame_equal(got, expected)
    # Reversing the log flips the tie (21, 22 -> 22, 21) and nothing else.
    reversed_ = sequences_from_log(LOG.iloc[::-1])
    assert reversed_["item_id"].tolist()[1] == [20, 22, 21, 23]


def test_sequences_from_log_without_timestamp_and_string_ids():
    log = pd.DataFrame({"u": ["b", "a", "b", "b"], "i": ["x", "y", "x", "z"]})
    sequences = sequences_from_log(log, user="u", item="i", timestamp=None)
    assert sequences["u"].tolist() == ["a", "b"]
    # Without a timestamp, log order is time order and repeats are events.
    assert sequences["i"].tolist() == [["y"], ["x", "x", "z"]]
    assert sequences.attrs["report"]["duplicates_dropped"] == 0


def test_sequences_from_log_keeps_datetimes():
    log = pd.DataFrame(
        {
            "user_id": [1, 1],
            "item_id": [5, 6],
            "timestamp": pd.to_datetime(["2024-01-02", "2024-01-01"]),
        }
    )
    sequences = sequences_from_log(log)
    assert sequences["item_id"][0] == [6, 5]
    assert sequences["timestamp"][0] == [pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-02")]


def test_sequences_from_log_bad_input():
    with pytest.raises(KeyError, match=r"'time'.*available columns.*'timestamp'"):
        sequences_from_log(LOG, timestamp="time")
    with pytest.raises(KeyError, match="'price'"):
        sequences_from_log(LOG, columns=["price"])
    missing = LOG.astype({"item_id": float})
    missing.loc[[0, 3], "item_id"] = np.nan
    with pytest.raises(ValueError, match=r"'item_id' has 2 missing"):
        sequences_from_log(missing)
    missing = LOG.astype({"timestamp": float})
    missing.loc[1, "timestamp"] = np.nan
    with pytest.raises(ValueError, match=r"'timestamp' has 1 missing"):
        sequences_from_log(missing)
    empty = sequences_from_log(LOG.iloc[:0])
    assert empty.empty and list(empty.columns) == ["user_id", "item_id", "timestamp"]


def brute_force_k_core(pairs, k):
    """The definition, one removal at a time: drop any user or item under k until none is."""
    pairs = list(pairs)
    while True:
        users = pd.Series([u for u, _ in pairs]).value_counts()
        items = pd.Series([i for _, i in pairs]).value_counts()
        low_users = users[users < k].index.tolist()
        low_items = items[items < k].index.tolist()
        if low_users:
            pairs = [p for p in pairs if p[0] != low_users[0]]
        elif low_items:
            pairs = [p for p in pairs if p[1] != low_items[0]]
        else:
            return sorted(pairs)


def test_k_core_cascades():
    # k=2. User 3 has one interaction (with item "c"); removing it leaves item
    # "c" with one interaction (from user 2), so "c" goes in a second pass, and
    # then user 2 (left with only "a") goes in a third.
    log = pd.DataFrame(
        {
            "user_id": [1, 1, 2, 2, 3, 4, 4],
            "item_id": ["a", "b", "a", "c", "c", "a", "b"],
        }
    )
    core, report = k_core(log, 2)
    assert sorted(zip(core["user_id"], core["item_id"])) == [(1, "a"), (1, "b"), (4, "a"), (4, "b")]
    assert core.index.tolist() == [0, 1, 5, 6]  # a filter: the log's own rows
    assert report == {
        "k": 2,
        "iterations": 3,
        "users_removed": 2,
        "items_removed": 1,
        "interactions_removed": 3,
        "users": 2,
        "items": 2,
        "interactions": 4,
    }
    assert sorted(zip(core["user_id"], core["item_id"])) == brute_force_k_core(
        zip(log["user_id"], log["item_id"]), 2
    )


def test_k_core_matches_brute_force_on_random_logs():
    rng = np.random.default_rng(0)
    for k in (1, 2, 3, 4):
        log = pd.DataFrame(
            {"user_id": rng.integers(0, 30, 200), "item_id": rng.integers(0, 40, 200)}
        )
        core, report = k_core(log, k)
        expected = brute_force_k_core(zip(log["user_id"], log["item_id"]), k)
        assert sorted(zip(core["user_id"], core["item_id"])) == expected
        assert report["interactions"] == len(expected)
        if len(core):
            assert core["user_id"].value_counts().min() >= k
            assert core["item_id"].value_counts().min() >= k
    with pytest.raises(ValueError, match="k must be >= 1"):
        k_core(log, 0)
    with pytest.raises(KeyError, match="'movie'"):
        k_core(log, 2, item="movie")


SEQUENCES = pd.DataFrame(
    {
        "user_id": [7, 8, 9],
        "item_id": [[1, 2, 3, 4, 5], [6, 7], [8, 9, 10]],
        "timestamp": [[10, 11, 12, 13, 14], [1, 2], [3, 4, 5]],
        "genres": [["a"], ["b", "c"], ["d"]],  # a per-user list, not aligned
    }
)


def test_leave_one_out_slices_exactly():
    before = SEQUENCES.copy(deep=True)
    train, valid, test = leave_one_out(SEQUENCES)
    assert list(train.columns) == ["user_id", "genres", "item_id", "timestamp"]
    assert train["user_id"].tolist() == [7, 9]
    assert train["item_id"].tolist() == [[1, 2, 3], [8]]
    assert train["timestamp"].tolist() == [[10, 11, 12], [3]]
    assert train["genres"].tolist() == [["a"], ["d"]]
    assert list(valid.columns) == [
        "user_id",
        "genres",
        "history",
        "target",
        "timestamp",
        "target_timestamp",
    ]
    assert valid["history"].tolist() == [[1, 2, 3], [8]]
    assert valid["target"].tolist() == [4, 9]
    assert valid["timestamp"].tolist() == [[10, 11, 12], [3]]
    assert valid["target_timestamp"].tolist() == [13, 4]
    assert test["history"].tolist() == [[1, 2, 3, 4], [8, 9]]
    assert test["target"].tolist() == [5, 10]
    assert test["timestamp"].tolist() == [[10, 11, 12, 13], [3, 4]]
    assert test["target_timestamp"].tolist() == [14, 5]
    assert train.attrs["report"] == {"users": 2, "users_dropped_short": 1}
    pd.testing.assert_frame_equal(SEQUENCES, before)
    train["item_id"][0].append(99)  # the splits own their lists
    assert SEQUENCES["item_id"][0] == [1, 2, 3, 4, 5]

    train, _, _ = leave_one_out(SEQUENCES, min_length=4)
    assert train["user_id"].tolist() == [7]
    with pytest.raises(ValueError, match="min_length must be >= 3"):
        leave_one_out(SEQUENCES, min_length=2)
    with pytest.raises(KeyError, match="'items'"):
        leave_one_out(SEQUENCES, item="items")


def test_time_split_has_no_future_leakage():
    rng = np.random.default_rng(1)
    log = pd.DataFrame(
        {
            "user_id": rng.integers(0, 20, 400),
            "item_id": rng.integers(0, 50, 400),
            "timestamp": rng.integers(0, 100, 400),
        }
    )
    sequences = sequences_from_log(log)
    train, valid, test = time_split(sequences, valid_start=60, test_start=80)
    for row in train.itertuples():
        assert len(row.item_id) >= 2 and max(row.timestamp) < 60
    for frame, low, high in ((valid, 60, 80), (test, 80, 1_000)):
        assert len(frame) > 0
        for row in frame.itertuples():
            assert low <= row.target_timestamp < high
            assert len(row.history) == len(row.timestamp) >= 1
            assert max(row.timestamp) < row.target_timestamp  # strictly earlier only
    # Every event from valid_start on is an evaluation row or a counted drop.
    report = train.attrs["report"]
    stamps = log.drop_duplicates(["user_id", "item_id", "timestamp"])["timestamp"]
    assert (
        report["valid_events"] + report["valid_dropped_no_history"] == stamps.between(60, 79).sum()
    )
    assert report["test_events"] + report["test_dropped_no_history"] == (stamps >= 80).sum()
    assert report["valid_events"] == len(valid) and report["test_events"] == len(test)


def test_time_split_exact_rows():
    sequences = pd.DataFrame(
        {
            "user_id": [1, 2, 3],
            "item_id": [[1, 2, 3, 4], [5, 6], [7, 8]],
            "timestamp": [[1, 2, 5, 8], [6, 6], [2, 9]],
        }
    )
    train, valid, test = time_split(sequences, valid_start=5, test_start=8)
    assert train["user_id"].tolist() == [1] and train["item_id"].tolist() == [[1, 2]]
    # User 2's events share t=6: neither is history of the other, both dropped.
    assert valid[["user_id", "target"]].values.tolist() == [[1, 3]]
    assert valid["history"].tolist() == [[1, 2]]
    assert test[["user_id", "target"]].values.tolist() == [[1, 4], [3, 8]]
    assert test["history"].tolist() == [[1, 2, 3], [7]]
    assert train.attrs["report"] == {
        "train_users": 1,
        "train_users_dropped_short": 1,
        "valid_events": 1,
        "test_events": 2,
        "valid_dropped_no_history": 2,
        "test_dropped_no_history": 0,
    }
    with pytest.raises(ValueError, match="must not be after"):
        time_split(sequences, valid_start=9, test_start=8)
    with pytest.raises(KeyError, match="'time'"):
        time_split(sequences, 5, 8, timestamp="time")


def test_s3rec_format(tmp_path):
    path = tmp_path / "Toys.txt"
    path.write_text("1 5 6 7\n2 6 8\n\n3 9 5 6 8\n")
    (tmp_path / "Toys_item2attributes.json").write_text(json.dumps({"5": [1, 2], "6": [3]}))
    data = s3rec_sequences(str(path))
    assert data.name == "Toys" and (data.num_users, data.num_items) == (3, 5)
    assert data.sequences["item_id"].tolist() == [[5, 6, 7], [6, 8], [9, 5, 6, 8]]
    assert data.item_attributes == {5: [1, 2], 6: [3]}
    assert "users=3" in repr(data)
    train, valid, test = data.leave_one_out()
    assert train["item_id"].tolist() == [[5], [9, 5]] and test["target"].tolist() == [7, 8]
    assert s3rec_sequences(str(tmp_path), name="Toys").num_interactions == 9

    path.write_text("1 5 6\n2 6 x8\n")
    with pytest.raises(ValueError, match=r"Toys\.txt, line 2: 'x8'"):
        s3rec_sequences(str(path))
    path.write_text("1 5 6\n\n2\n")
    with pytest.raises(ValueError, match=r"Toys\.txt, line 3: user 2 has no items"):
        s3rec_sequences(str(path))


def test_missing_s3rec_file_says_where_and_what(tmp_path, monkeypatch):
    monkeypatch.setenv(S3REC_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError) as error:
        amazon_beauty()
    message = str(error.value)
    assert str(tmp_path / "Beauty.txt") in message
    assert "S3-Rec" in message and "not redistribution" in message
    with pytest.raises(FileNotFoundError, match="S3-Rec"):
        s3rec_sequences(str(tmp_path / "Beauty.txt"))
    (tmp_path / "Beauty.txt").write_text("1 2 3 4\n")
    assert amazon_beauty().sequences["item_id"].tolist() == [[2, 3, 4]]


@pytest.fixture(scope="module")
def beauty():
    try:
        return amazon_beauty()
    except FileNotFoundError:
        pytest.skip("the S3-Rec Beauty.txt (not redistributable) is not on this machine")


def test_real_beauty_counts(beauty):
    assert isinstance(beauty, SequenceDataset) and beauty.name == "Beauty"
    assert beauty.num_users == 22_363
    assert beauty.num_items == 12_101
    assert beauty.num_interactions == 198_502
    assert beauty.item_attributes is not None and all(
        isinstance(k, int) for k in beauty.item_attributes
    )
    first_line = open(os.path.join(_beauty_dir(), "Beauty.txt")).readline().split()
    assert beauty.sequences["user_id"][0] == int(first_line[0])
    assert len(beauty.sequences["item_id"][0]) == len(first_line) - 1
    train, valid, test = beauty.leave_one_out()
    assert len(train) == len(valid) == len(test) == 22_363  # 5-core: every user has >= 5
    _, report = k_core(
        pd.DataFrame(
            {
                "user_id": np.repeat(
                    beauty.sequences["user_id"], beauty.sequences["item_id"].map(len)
                ),
                "item_id": np.concatenate(beauty.sequences["item_id"].tolist()),
            }
        ),
        5,
    )
    assert report["iterations"] == 0  # the S3-Rec files are already 5-core


def _beauty_dir():
    for candidate in (
        os.environ.get(S3REC_ENV),
        os.path.join("..", "shared", "data", "amazon_s3rec"),
        "/work/shared/data/amazon_s3rec",
    ):
        if candidate and os.path.isfile(os.path.join(candidate, "Beauty.txt")):
            return candidate
    pytest.skip("Beauty.txt not found")


@pytest.fixture(scope="module")
def movielens_sequences():
    try:
        return movielens.movielens_100k_sequences()
    except FileNotFoundError as error:
        pytest.skip(f"MovieLens-100K not cached and not downloadable: {str(error).splitlines()[0]}")


def test_real_movielens_sequences(movielens_sequences):
    data = movielens_sequences
    assert data is not None and data.name == "ml-100k"
    assert data.num_interactions == 100_000 and data.num_users == 943
    assert data.sequences.attrs["report"]["duplicates_dropped"] == 0
    for times, ratings, items in data.sequences[["timestamp", "rating", "item_id"]].values:
        assert len(times) == len(ratings) == len(items)
        assert all(a <= b for a, b in zip(times, times[1:]))
    liked = movielens.movielens_100k_sequences(min_rating=4)
    assert liked.num_interactions == 34_174 + 21_201  # ratings 4 and 5
    assert all(min(r) >= 4 for r in liked.sequences["rating"])


def test_exported():
    for name in (
        "SequenceDataset",
        "amazon_beauty",
        "k_core",
        "leave_one_out",
        "movielens_100k_sequences",
        "s3rec_sequences",
        "sequences_from_log",
        "time_split",
    ):
        assert name in datasets.__all__ and hasattr(datasets, name)
