"""MovieLens-100K: parsing both file layouts, the cache, the split, the funnel labels.

The real-data tests use the cache (or download the recbole wheel into it);
they skip, saying why, where neither works.
"""

import os
import zipfile

import numpy as np
import pytest

import keras_recsys as kr
from keras_recsys.datasets import movielens

RATINGS = [(1, 10, 5, 900), (1, 20, 3, 100), (2, 10, 4, 500), (2, 30, 1, 300), (3, 20, 5, 700)]
USERS = [(1, 24, "M", "technician", "85711"), (2, 53, "F", "other", "94043"),
         (3, 23, "M", "writer", "32067")]  # fmt: skip
ITEMS = [(10, "Toy Story", "1995", ["Animation", "Children's", "Comedy"]),
         (20, "GoldenEye", "1995", ["Action", "Thriller"]), (30, "Four Rooms", "", ["Thriller"])]  # fmt: skip


def write_atomic(directory):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "ml-100k.inter"), "w") as f:
        f.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        f.writelines("\t".join(map(str, r)) + "\n" for r in RATINGS)
    with open(os.path.join(directory, "ml-100k.user"), "w") as f:
        f.write("user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n")
        f.writelines("\t".join(map(str, u)) + "\n" for u in USERS)
    with open(os.path.join(directory, "ml-100k.item"), "w") as f:
        f.write("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n")
        f.writelines(f"{i}\t{t}\t{y}\t{' '.join(g)}\n" for i, t, y, g in ITEMS)
    return str(directory)


def write_grouplens(directory):
    os.makedirs(directory, exist_ok=True)
    genres = movielens._GROUPLENS_GENRES
    with open(os.path.join(directory, "u.data"), "w") as f:
        f.writelines("\t".join(map(str, r)) + "\n" for r in RATINGS)
    with open(os.path.join(directory, "u.user"), "w") as f:
        f.writelines("|".join(map(str, u)) + "\n" for u in USERS)
    with open(os.path.join(directory, "u.item"), "w", encoding="latin-1") as f:
        for i, title, year, item_genres in ITEMS:
            date = f"01-Jan-{year}" if year else ""
            flags = "|".join("1" if g in item_genres else "0" for g in genres)
            f.write(f"{i}|{title} ({year})|{date}||http://x|{flags}\n")
    return str(directory)


def test_both_layouts_give_the_same_frame(tmp_path):
    atomic = movielens.load_movielens_100k(write_atomic(tmp_path / "atomic"))
    grouplens = movielens.load_movielens_100k(write_grouplens(tmp_path / "grouplens"))
    assert list(atomic.columns) == list(grouplens.columns)
    for column in atomic.columns:
        assert atomic[column].tolist() == grouplens[column].tolist(), column
    assert atomic["click"].tolist() == [1, 0, 1, 0, 1]
    assert atomic["conversion"].tolist() == [1, 0, 0, 0, 1]
    assert atomic["genres"][0] == ["Animation", "Children's", "Comedy"]
    assert atomic["release_year"].tolist()[3] == ""  # unknown year stays missing
    assert atomic["user_id"].dtype == np.int64 and atomic["age"].dtype == np.int32


def test_time_split_is_ordered(tmp_path):
    train, valid, test = movielens.movielens_100k(write_atomic(tmp_path / "a"), split="time")
    assert train["timestamp"].tolist() == [100, 300, 500, 700]
    assert valid.empty and test["timestamp"].tolist() == [900]
    with pytest.raises(ValueError, match="split must be one of"):
        movielens.movielens_100k(str(tmp_path / "a"), split="user")


def test_without_data_the_error_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_RECSYS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match=r"pip download --no-deps recbole==1\.2\.1"):
        movielens.movielens_100k(download=False)

    def offline(directory):
        raise OSError("network is unreachable")

    monkeypatch.setattr(movielens, "_download_wheel", offline)
    with pytest.raises(FileNotFoundError, match="network is unreachable") as error:
        movielens.movielens_100k()
    assert "recbole-1.2.1-py3-none-any.whl" in str(error.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        movielens.movielens_100k(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="holds neither"):
        movielens.movielens_100k(str(tmp_path))


def test_a_wheel_with_other_files_is_refused(tmp_path):
    directory = write_atomic(tmp_path / "atomic")
    wheel = tmp_path / "recbole-1.2.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in ("ml-100k.inter", "ml-100k.user", "ml-100k.item"):
            archive.write(os.path.join(directory, name), movielens._WHEEL_DIR + name)
    with pytest.raises(ValueError, match="SHA-256"):
        movielens.movielens_100k(str(wheel))


@pytest.fixture(scope="module")
def real():
    try:
        return movielens.movielens_100k()
    except FileNotFoundError as error:
        pytest.skip(f"MovieLens-100K not cached and not downloadable: {str(error).splitlines()[0]}")


def test_real_data_split_and_funnel_labels(real):
    train, valid, test = real
    assert (len(train), len(valid), len(test)) == (80_000, 10_000, 10_000)
    everything = movielens.load_movielens_100k(download=False)
    assert everything["user_id"].nunique() == 943 and everything["item_id"].nunique() == 1682
    assert everything["rating"].between(1, 5).all()
    assert (everything["click"] == (everything["rating"] >= 4)).all()
    assert (everything["conversion"] <= everything["click"]).all()  # conversion implies click
    assert everything["click"].sum() == 34_174 + 21_201  # ratings 4 and 5
    # The documented split: a seeded permutation of the file's rows.
    order = np.random.default_rng(2026).permutation(100_000)
    keys = ["user_id", "item_id", "timestamp"]
    assert (train[keys].to_numpy() == everything[keys].to_numpy()[order[:80_000]]).all()
    assert (test[keys].to_numpy() == everything[keys].to_numpy()[order[90_000:]]).all()


def test_real_data_feature_spec(real):
    train = real[0]
    spec = kr.datasets.movielens_feature_spec(embedding_dim=4).adapt(train.head(20_000))
    assert spec["genres"].kind == "sequence" and spec["genres"].max_length == 6
    assert {"user_id", "item_id", "occupation"} <= set(spec.names)
