"""MovieLens-100K: ratings with user and item features, fetched on first use.

GroupLens does not allow redistributing MovieLens, so keras_recsys neither
bundles nor mirrors it. The PyPI package `recbole` (1.2.1) ships the data
set inside its wheel (`recbole/dataset_example/ml-100k/`); the first call
downloads that wheel alone (`pip download --no-deps recbole==1.2.1`, nothing
installed), extracts the three files, checks their SHA-256 and caches them
under `$KERAS_RECSYS_CACHE/ml-100k` (default `~/.cache/keras_recsys`).
A local copy can be given instead: the recbole wheel, a directory holding
`ml-100k.inter/.user/.item`, or GroupLens' own `ml-100k` directory
(`u.data`, `u.user`, `u.item`).

Terms: F. Maxwell Harper and Joseph A. Konstan, 2015, "The MovieLens
Datasets: History and Context", ACM TiiS 5(4); GroupLens Research, University
of Minnesota. Use is governed by the GroupLens license (research use,
citation, no redistribution).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile

import numpy as np
import pandas as pd

from keras_recsys.datasets.sequences import SequenceDataset, sequences_from_log

RECBOLE_VERSION = "1.2.1"
_WHEEL_DIR = "recbole/dataset_example/ml-100k/"
# SHA-256 of the three files as shipped in recbole-1.2.1-py3-none-any.whl.
_FILES = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
}
_GROUPLENS_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
]  # fmt: skip
SPLIT_SEED = 2026
SPLITS = ("random", "time")
HOW_TO_GET = (
    "MovieLens-100K is not bundled (GroupLens forbids redistribution). Get it with\n"
    f"    pip download --no-deps recbole=={RECBOLE_VERSION} -d DIR\n"
    "(the 2 MB wheel holds recbole/dataset_example/ml-100k/; nothing is installed), then "
    "call movielens_100k(path='DIR/recbole-1.2.1-py3-none-any.whl'), or put "
    "ml-100k.inter/.user/.item in $KERAS_RECSYS_CACHE/ml-100k (default "
    "~/.cache/keras_recsys/ml-100k). GroupLens' own ml-100k directory (u.data, u.user, "
    "u.item; https://grouplens.org/datasets/movielens/100k/) works as `path` too."
)


def cache_dir() -> str:
    """Where downloaded data sets live: $KERAS_RECSYS_CACHE or ~/.cache/keras_recsys."""
    return os.environ.get("KERAS_RECSYS_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "keras_recsys"
    )


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _extract_wheel(wheel: str, target: str) -> None:
    """Copies the three ml-100k files out of a recbole wheel, checking their hashes."""
    os.makedirs(target, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for name, expected in _FILES.items():
            try:
                data = archive.read(_WHEEL_DIR + name)
            except KeyError as error:
                raise ValueError(
                    f"'{wheel}' has no {_WHEEL_DIR + name}: is it the recbole "
                    f"{RECBOLE_VERSION} wheel?"
                ) from error
            if hashlib.sha256(data).hexdigest() != expected:
                raise ValueError(
                    f"{name} in '{wheel}' is not the expected file (SHA-256 mismatch)."
                )
            staging = os.path.join(target, f".{name}.part")
            with open(staging, "wb") as f:
                f.write(data)
            os.replace(staging, os.path.join(target, name))


def _download_from_pypi(directory: str) -> None:
    """The recbole wheel from PyPI's JSON API, checked against PyPI's SHA-256."""
    url = f"https://pypi.org/pypi/recbole/{RECBOLE_VERSION}/json"
    with urllib.request.urlopen(url, timeout=60) as response:
        release = json.load(response)
    wheel = next(u for u in release["urls"] if u["filename"].endswith(".whl"))
    path = os.path.join(directory, wheel["filename"])
    with urllib.request.urlopen(wheel["url"], timeout=300) as response:
        with open(path, "wb") as f:
            shutil.copyfileobj(response, f)
    if _sha256(path) != wheel["digests"]["sha256"]:
        raise ValueError("The downloaded recbole wheel does not match PyPI's SHA-256.")


def _download_wheel(directory: str) -> str:
    """The recbole wheel, downloaded alone (pip, else PyPI's JSON API) into `directory`."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "-q", f"recbole=={RECBOLE_VERSION}", "-d", directory,
    ]  # fmt: skip
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError):  # no pip here, or pip failed
        _download_from_pypi(directory)
    wheels = [f for f in os.listdir(directory) if f.endswith(".whl")]
    if not wheels:
        raise FileNotFoundError("pip download produced no wheel.")
    return os.path.join(directory, wheels[0])


def fetch_movielens_100k(download: bool = True) -> str:
    """The cached directory of ml-100k.inter/.user/.item, downloading it if needed.

    Raises:
        FileNotFoundError: not cached and `download` is False or failed;
            the message says how to get the data.
    """
    target = os.path.join(cache_dir(), "ml-100k")
    if all(os.path.exists(os.path.join(target, name)) for name in _FILES):
        return target
    if not download:
        raise FileNotFoundError(f"MovieLens-100K is not in the cache ({target}).\n{HOW_TO_GET}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            _extract_wheel(_download_wheel(tmp), target)
    except Exception as error:  # any network, pip or archive failure
        raise FileNotFoundError(
            f"Downloading MovieLens-100K failed ({type(error).__name__}: {error}).\n{HOW_TO_GET}"
        ) from error
    return target


def _read_atomic(directory: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """RecBole's atomic files: tab-separated, headers `name:type`."""

    def read(name):
        frame = pd.read_csv(
            os.path.join(directory, name), sep="\t", dtype=str, keep_default_na=False
        )
        frame.columns = [c.split(":")[0] for c in frame.columns]
        return frame

    ratings = read("ml-100k.inter")
    users = read("ml-100k.user")
    items = read("ml-100k.item").rename(columns={"class": "genres"})
    items["genres"] = items["genres"].str.split(" ")
    return ratings, users, items[["item_id", "release_year", "genres"]]


def _read_grouplens(directory: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """GroupLens' original files: u.data (tabs), u.user and u.item ('|', Latin-1)."""
    ratings = pd.read_csv(
        os.path.join(directory, "u.data"),
        sep="\t",
        names=["user_id", "item_id", "rating", "timestamp"],
        dtype=str,
    )
    users = pd.read_csv(
        os.path.join(directory, "u.user"),
        sep="|",
        names=["user_id", "age", "gender", "occupation", "zip_code"],
        dtype=str,
        keep_default_na=False,
    )
    items = pd.read_csv(
        os.path.join(directory, "u.item"),
        sep="|",
        names=["item_id", "title", "release_date", "video_date", "url"] + _GROUPLENS_GENRES,
        dtype=str,
        encoding="latin-1",
        keep_default_na=False,
    )
    items["release_year"] = items["release_date"].str[-4:]
    flags = items[_GROUPLENS_GENRES].to_numpy() == "1"
    items["genres"] = [[g for g, on in zip(_GROUPLENS_GENRES, row) if on] for row in flags]
    return ratings, users, items[["item_id", "release_year", "genres"]]


def _resolve(path: str | None, download: bool) -> tuple[pd.DataFrame, ...]:
    if path is None:
        return _read_atomic(fetch_movielens_100k(download))
    if not os.path.exists(path):
        raise FileNotFoundError(f"MovieLens-100K path '{path}' does not exist.\n{HOW_TO_GET}")
    if os.path.isfile(path):
        with tempfile.TemporaryDirectory() as tmp:
            _extract_wheel(path, tmp)
            return _read_atomic(tmp)
    if os.path.exists(os.path.join(path, "ml-100k.inter")):
        return _read_atomic(path)
    if os.path.exists(os.path.join(path, "u.data")):
        return _read_grouplens(path)
    raise FileNotFoundError(
        f"'{path}' holds neither ml-100k.inter/.user/.item nor u.data/u.user/u.item.\n{HOW_TO_GET}"
    )


def load_movielens_100k(path: str | None = None, download: bool = True) -> pd.DataFrame:
    """All 100,000 ratings joined with user and item features, in file order.

    Columns: user_id, item_id (int64), rating (int32, 1-5), timestamp
    (int64, Unix seconds), age (int32), gender, occupation, zip_code,
    release_year (strings; "" when unknown), genres (list of strings), and
    the funnel labels click = rating >= 4 and conversion = rating == 5
    (int32; a conversion is always a click).

    Args:
        path: a local copy (see the module docstring); default: the cache,
            downloaded on first use.
        download: allow downloading into the cache.
    """
    ratings, users, items = _resolve(path, download)
    ratings = ratings.merge(users, on="user_id", how="left", validate="many_to_one")
    ratings = ratings.merge(items, on="item_id", how="left", validate="many_to_one")
    if ratings["age"].isna().any() or ratings["genres"].isna().any():
        raise ValueError("Some ratings have a user or item missing from the feature files.")
    for column in ("user_id", "item_id", "timestamp"):
        ratings[column] = ratings[column].astype(np.int64)
    ratings["rating"] = ratings["rating"].astype(float).astype(np.int32)
    ratings["age"] = ratings["age"].astype(np.int32)
    ratings["click"] = (ratings["rating"] >= 4).astype(np.int32)
    ratings["conversion"] = (ratings["rating"] == 5).astype(np.int32)
    return ratings


def movielens_100k(
    path: str | None = None, split: str = "random", download: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, valid, test) of MovieLens-100K ratings as impressions, 80/10/10.

    Every rating is an impression with the funnel labels click
    (rating >= 4) and conversion (rating == 5); see `load_movielens_100k`
    for the columns. Splits:

    * "random" (the documented one, used by the recipes): the ratings in
      file order permuted with `numpy.random.default_rng(2026)`, then the
      first 80% train, the next 10% validation, the last 10% test (users and
      items are shared across parts: warm-start evaluation);
    * "time": ratings sorted by timestamp (stable), the oldest 80% train,
      the next 10% validation, the newest 10% test.

    Args:
        path: a local copy (the recbole wheel, a directory with the RecBole
            atomic files, or GroupLens' ml-100k directory); default: the
            cache under $KERAS_RECSYS_CACHE (or ~/.cache/keras_recsys),
            filled on first use by downloading the recbole 1.2.1 wheel.
        split: "random" or "time".
        download: allow that download.

    Raises:
        FileNotFoundError: the data is not available; the message says how
            to get it.

    Example:

    >>> train, valid, test = kr.datasets.movielens_100k()
    >>> train[["user_id", "item_id", "click", "conversion"]].head()
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    df = load_movielens_100k(path, download)
    n = len(df)
    if split == "random":
        order = np.random.default_rng(SPLIT_SEED).permutation(n)
    else:
        order = np.argsort(df["timestamp"].to_numpy(), kind="stable")
    train_end, valid_end = int(0.8 * n), int(0.9 * n)
    parts = (order[:train_end], order[train_end:valid_end], order[valid_end:])
    return tuple(df.iloc[p].reset_index(drop=True) for p in parts)


def movielens_100k_sequences(
    path: str | None = None, min_rating: float | None = None
) -> SequenceDataset:
    """MovieLens-100K as one rating sequence per user, in time order.

    Built with `sequences_from_log`: per user the items ordered by timestamp
    (ties in file order), with aligned `timestamp` and `rating` lists. All 943
    users and 100,000 ratings when `min_rating` is None.

    Args:
        path: a local copy, as for `movielens_100k`; default: the cache,
            downloaded on first use.
        min_rating: keep only ratings >= this (e.g. 4 for "liked" items, as
            implicit-feedback papers do); None keeps all.

    Raises:
        FileNotFoundError: the data is not available; the message says how
            to get it.

    Example:

    >>> data = kr.datasets.movielens_100k_sequences(min_rating=4)
    >>> train, valid, test = data.leave_one_out()
    """
    ratings = load_movielens_100k(path)
    if min_rating is not None:
        ratings = ratings[ratings["rating"] >= min_rating]
    sequences = sequences_from_log(ratings, timestamp="timestamp", columns=["rating"])
    return SequenceDataset(sequences=sequences, item_attributes=None, name="ml-100k")


def movielens_feature_spec(embedding_dim: int = 16):
    """The `FeatureSpec` of the MovieLens recipes (unfitted).

    user_id, item_id, age, gender, occupation and release_year as
    categorical fields; genres as a mean-pooled sequence (at most 6).
    """
    from keras_recsys.features import Categorical, FeatureSpec, Sequence

    features = [
        Categorical(name)
        for name in ("user_id", "item_id", "age", "gender", "occupation", "release_year")
    ]
    features.append(Sequence("genres", max_length=6, pooling="mean"))
    return FeatureSpec(features, default_embedding_dim=embedding_dim)
