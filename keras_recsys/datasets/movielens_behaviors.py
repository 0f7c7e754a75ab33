"""MovieLens-100K as multi-task, multi-behaviour ranking impressions.

Every rating is an impression of (user, movie) carrying the user's earlier
behaviour as sequences by type, the input of behaviour-sequence models (DIN,
DIEN, INFNet), and three tasks read from the rating. The history of an
impression holds only ratings made strictly before it (earlier timestamps;
ratings of the same second are left out, since their order is unknown), so
no impression sees its own future.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from keras_recsys.datasets.movielens import load_movielens_100k

# Behaviour types: the history sequence columns and which ratings they keep.
BEHAVIORS = {
    "hist_items": (1, 5),  # every rated movie
    "hist_liked": (4, 5),  # rated >= 4
    "hist_disliked": (1, 2),  # rated <= 2
}
# The genres of each behaviour's movies, flattened in the same time order.
GENRE_SEQUENCES = {
    "hist_items": "hist_genres",
    "hist_liked": "liked_genres",
    "hist_disliked": "disliked_genres",
}
TASKS = {"like": "rating >= 4", "love": "rating == 5", "dislike": "rating <= 2"}


def movielens_100k_behaviors(
    path: str | None = None, max_length: int = 50, download: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, valid, test) impressions with behaviour sequences, split by time.

    Columns: the impression's `user_id`, `item_id`, `age`, `gender`,
    `occupation`, `release_year`, `genres` (list), `timestamp`, `rating`
    (see `load_movielens_100k`); the behaviour sequences, lists of ints or
    strings, oldest first, each keeping its most recent `max_length`
    entries:

    * `hist_items`: every movie the user rated before this impression;
    * `hist_liked`: those rated >= 4; `hist_disliked`: those rated <= 2;
    * `hist_genres`, `liked_genres`, `disliked_genres`: the genres of those
      movies, flattened in time order;
    * `hist_ratings`: the ratings of `hist_items`, aligned with them (the
      action sequence of generative ranking, `kr.models.HSTURanker`);

    `hist_length` (the number of earlier ratings, before truncation); and
    the three tasks as int32 labels: `like` (rating >= 4), `love` (rating
    == 5) and `dislike` (rating <= 2).

    "Before" is strict: ratings of the same second as the impression are not
    in its history. Split: all 100,000 impressions sorted by timestamp
    (stable, ties in file order); the oldest 80% train, the next 10%
    validation, the newest 10% test, the split of `movielens_100k(...,
    split="time")`. Test users are mostly seen in training (their earlier
    ratings); test impressions are later than every training one.

    Args:
        path, download: as for `movielens_100k`.
        max_length: entries kept per behaviour sequence (the most recent).

    Example:

    >>> train, valid, test = kr.datasets.movielens_100k_behaviors(max_length=50)
    >>> train[["user_id", "item_id", "hist_liked", "like", "love", "dislike"]].head()
    """
    if int(max_length) < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}.")
    ratings = load_movielens_100k(path, download)
    impressions = with_behavior_sequences(ratings, int(max_length))
    order = np.argsort(impressions["timestamp"].to_numpy(), kind="stable")
    n = len(impressions)
    train_end, valid_end = int(0.8 * n), int(0.9 * n)
    parts = (order[:train_end], order[train_end:valid_end], order[valid_end:])
    return tuple(impressions.iloc[p].reset_index(drop=True) for p in parts)


def with_behavior_sequences(ratings: pd.DataFrame, max_length: int) -> pd.DataFrame:
    """`ratings` (file order kept) plus the behaviour sequences, `hist_length` and the tasks."""
    out = ratings.copy()
    names = [*BEHAVIORS, *GENRE_SEQUENCES.values(), "hist_ratings"]
    columns = {name: [None] * len(out) for name in names}
    lengths = np.zeros(len(out), np.int64)
    for _, rows in out.groupby("user_id", sort=False).indices.items():
        # The user's ratings in time order, ties in file order.
        rows = rows[np.argsort(out["timestamp"].to_numpy()[rows], kind="stable")]
        times = out["timestamp"].to_numpy()[rows]
        items = out["item_id"].to_numpy()[rows]
        scores = out["rating"].to_numpy()[rows]
        genres = out["genres"].to_numpy()[rows]
        # Ratings strictly before each impression: the first index of its second.
        before = np.searchsorted(times, times, side="left")
        lengths[rows] = before
        for name, (low, high) in BEHAVIORS.items():
            keep = np.flatnonzero((scores >= low) & (scores <= high))
            kept_items = items[keep].tolist()
            kept_scores = scores[keep].tolist()
            # The kept movies' genres flattened, and where each movie's start.
            flat = [g for i in keep for g in genres[i]]
            starts = np.cumsum([0] + [len(genres[i]) for i in keep]).tolist()
            # How many kept ratings precede each impression.
            count = np.searchsorted(keep, before, side="left")
            item_column, genre_column = columns[name], columns[GENRE_SEQUENCES[name]]
            for row, n in zip(rows.tolist(), count.tolist()):
                item_column[row] = kept_items[max(0, n - max_length) : n]
                if name == "hist_items":  # the actions of generative ranking (HSTURanker)
                    columns["hist_ratings"][row] = kept_scores[max(0, n - max_length) : n]
                genre_column[row] = flat[max(starts[n] - max_length, 0) : starts[n]]
    for name, values in columns.items():
        out[name] = values
    out["hist_length"] = lengths
    out["like"] = (out["rating"] >= 4).astype(np.int32)
    out["love"] = (out["rating"] == 5).astype(np.int32)
    out["dislike"] = (out["rating"] <= 2).astype(np.int32)
    return out


def movielens_behavior_feature_spec(embedding_dim: int = 16, max_length: int = 50):
    """The `FeatureSpec` of the behaviour view (unfitted).

    user_id, item_id, age, gender, occupation, release_year categorical; the
    movie's genres a mean-pooled sequence; the three item histories share
    item_id's vocabulary and table, the three genre histories share the
    genres' (so a target attention can compare a history with the target).
    """
    from keras_recsys.features import Categorical, FeatureSpec, Sequence

    features = [
        Categorical(name)
        for name in ("user_id", "item_id", "age", "gender", "occupation", "release_year")
    ]
    features.append(Sequence("genres", max_length=6, pooling="mean"))
    for items, genres in GENRE_SEQUENCES.items():
        features.append(Sequence(items, max_length=max_length, shares_vocabulary_with="item_id"))
        features.append(Sequence(genres, max_length=max_length, shares_vocabulary_with="genres"))
    return FeatureSpec(features, default_embedding_dim=embedding_dim)
