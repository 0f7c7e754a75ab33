"""Bad input fails with an error naming the feature or column and what was expected."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import keras_recsys as kr


def _frame(**overrides):
    df = pd.DataFrame(
        {
            "city": ["paris", "rome", "oslo", "rome"],
            "user": [1, 2, 3, 2],
            "price": [1.0, 2.5, 3.0, 4.0],
            "hist": [["a"], ["a", "b"], [], ["c"]],
            "click": [0, 1, 1, 0],
            "shown": [1, 1, 0, 1],
        }
    )
    for column, values in overrides.items():
        if values is None:
            df = df.drop(columns=column)
        else:
            df[column] = values
    return df


def _spec():
    return kr.FeatureSpec(
        [
            kr.Categorical("city"),
            kr.Categorical("user"),
            kr.Numeric("price"),
            kr.Sequence("hist", max_length=2),
        ]
    )


@pytest.fixture(scope="module")
def fitted():
    return _spec().adapt(_frame())


def _adapt(**overrides):
    return lambda fitted: _spec().adapt(_frame(**overrides))


def _read(tasks=("click",), labels=None, **overrides):
    def run(fitted):
        dataset = kr.data.from_pandas(
            _frame(**overrides), fitted, tasks=[kr.Task(t) for t in tasks], labels=labels
        )
        return next(iter(dataset))

    return run


_CASES = {
    # name: (call(fitted spec), error type, pattern the message must contain)
    "missing-feature-column-adapt": (
        _adapt(price=None),
        KeyError,
        r"Column 'price' for feature 'price' is missing from the data; it has columns \[city",
    ),
    "missing-feature-column-read": (
        _read(city=None),
        KeyError,
        r"Column 'city' for feature 'city' is missing from the data",
    ),
    "missing-label-column": (
        _read(labels=True, click=None),
        ValueError,
        r"Label column 'click' of task 'click' is missing from the data",
    ),
    "one-of-two-label-columns-missing": (
        _read(tasks=("click", "like")),
        ValueError,
        r"Label column 'like' of task 'like' is missing from the data",
    ),
    "misspelled-label-column": (
        # Used to read features only, silently, and fail in the loss.
        _read(tasks=("clik",)),
        ValueError,
        r"Label column 'clik' of task 'clik' \(did you mean 'click'\?\) is missing from "
        r"the data; it has columns \[city, user, price, hist, click, shown\]\..*labels=False",
    ),
    "two-misspelled-label-columns": (
        _read(tasks=("clicked", "shwn")),
        ValueError,
        r"Label columns 'clicked' of task 'clicked' \(did you mean 'click'\?\), 'shwn' of "
        r"task 'shwn' \(did you mean 'shown'\?\) are missing from the data",
    ),
    "string-in-numeric-adapt": (
        _adapt(price=[1.0, "cheap", 3.0, 4.0]),
        TypeError,
        r"Numeric feature 'price' expects numbers; column holds 'cheap' \(row 1\)",
    ),
    "string-in-numeric-read": (
        _read(price=["1.5", "n/a", 3.0, 4.0]),
        TypeError,
        r"Numeric feature 'price' expects numbers; column holds 'n/a'",
    ),
    "inf-in-numeric-adapt": (
        _adapt(price=[1.0, np.inf, 3.0, 4.0]),
        ValueError,
        r"Numeric feature 'price' has 1 infinite value\(s\) \(first at row 1\)",
    ),
    "inf-in-numeric-read": (
        _read(price=[1.0, 2.0, -np.inf, np.inf]),
        ValueError,
        r"Numeric feature 'price' has 2 infinite value\(s\) \(first at row 2\)",
    ),
    "all-missing-numeric-adapt": (
        _adapt(price=[np.nan] * 4),
        ValueError,
        r"Numeric feature 'price' has no non-missing value",
    ),
    "empty-frame-adapt": (
        lambda fitted: _spec().adapt(_frame().head(0)),
        ValueError,
        r"Cannot adapt on an empty DataFrame",
    ),
    "empty-frame-read": (
        lambda fitted: kr.data.from_pandas(_frame().head(0), fitted),
        ValueError,
        r"from_pandas got an empty DataFrame: there are no rows",
    ),
    "never-adapted-dataset": (
        lambda fitted: kr.data.from_pandas(_frame(), _spec()),
        RuntimeError,
        r"not fitted \(features \['city', 'user', 'price', 'hist'\]\).*spec\.adapt",
    ),
    "never-adapted-model": (
        lambda fitted: kr.models.DeepFM(_spec(), tasks=[kr.Task("click")]),
        RuntimeError,
        r"not fitted \(features \['city', 'user', 'price', 'hist'\]\).*spec\.adapt",
    ),
    "partly-adapted-spec": (
        lambda fitted: (
            kr.FeatureSpec([kr.Categorical("city", vocabulary=["a"]), kr.Numeric("x")]).preprocessor
        ),
        RuntimeError,
        r"not fitted \(features \['x'\]\)",
    ),
    "label-not-0-1": (
        _read(click=[0, 1, 2, 0]),
        ValueError,
        r"Label column 'click' of binary task 'click' must hold 0/1 \(or bools\); found 2",
    ),
    "label-not-numeric": (
        _read(click=["yes", "no", "no", "yes"]),
        TypeError,
        r"Label column 'click' of task 'click' must be numeric; found 'yes'",
    ),
    "label-missing-value": (
        _read(click=[0, 1, np.nan, 1]),
        ValueError,
        r"Label column 'click' of task 'click' has 1 missing value",
    ),
    "mask-not-0-1": (
        lambda fitted: next(
            iter(kr.data.from_pandas(_frame(shown=[1, 2, 0, 1]), fitted, tasks=[_masked()]))
        ),
        ValueError,
        r"Column 'shown' \(mask of task 'click'\) must hold 0/1",
    ),
    "missing-mask-column": (
        lambda fitted: kr.data.from_pandas(_frame(shown=None), fitted, tasks=[_masked()]),
        KeyError,
        r"Column 'shown' \(mask of task 'click'\) is missing from the data",
    ),
    "mixed-categorical-adapt": (
        _adapt(city=["paris", 3, "oslo", "rome"]),
        TypeError,
        r"Categorical feature 'city': column mixes value types \['int', 'str'\]; "
        r"expected all strings or all integers",
    ),
    "mixed-categorical-late-in-the-column": (
        lambda fitted: kr.FeatureSpec([kr.Categorical("code")]).adapt(
            pd.DataFrame({"code": ["a"] * 10_001 + [5]})
        ),
        TypeError,
        r"Categorical feature 'code': column mixes value types \['int', 'str'\]",
    ),
    "mixed-categorical-read": (
        _read(city=["paris", "rome", 7, "oslo"]),
        TypeError,
        r"Categorical feature 'city' has string values .* also holds int values "
        r"\(e\.g\. 7 at row 2\)",
    ),
    "numbers-in-string-categorical": (
        _read(city=[1, 2, 3, 4]),
        TypeError,
        r"Categorical feature 'city' was fitted on strings but the column holds numbers",
    ),
    "text-in-int-categorical": (
        _read(user=[1, "bob", 3, 4]),
        TypeError,
        r"Categorical feature 'user' expects integer values; column holds 'bob'",
    ),
    "fractional-categorical": (
        _adapt(user=[1.0, 2.5, 3.0, 4.0]),
        TypeError,
        r"Categorical feature 'user': column holds non-integer floats \(e\.g\. 2\.5\).*Numeric",
    ),
    "bad-sequence-row": (
        _read(hist=[["a"], 5, [], ["b"]]),
        TypeError,
        r"Sequence feature 'hist' expects a list/array or a '\|'-delimited string per row; "
        r"row 1 holds int 5",
    ),
    "sequence-list-as-text-read": (
        # What DataFrame.to_csv writes for a list column.
        _read(hist=["a|b", "['a', 'c']", "", "c"]),
        ValueError,
        r"Sequence feature 'hist': cells look like lists written out as text \(e\.g\. "
        r"\"\['a', 'c'\]\" at row 1\).*DataFrame\.to_csv.*separator '\|'",
    ),
    "sequence-list-as-text-adapt": (
        _adapt(hist=["['a']", "['a', 'b']", "[]", "['c']"]),
        ValueError,
        r"Sequence feature 'hist': cells look like lists written out as text \(e\.g\. "
        r"\"\['a'\]\" at row 0\)",
    ),
    "sequence-foreign-separator-read": (
        _read(hist=["a", "c|b", "", "a,b"]),
        ValueError,
        r"Sequence feature 'hist': cells look joined with ',' \(e\.g\. 'a,b' at row 3\) but "
        r"the feature's separator is '\|'.*`Sequence\('hist', separator=','\)`",
    ),
    "sequence-foreign-separator-adapt": (
        _adapt(hist=["a;b", "a", "b;c", "c"]),
        ValueError,
        r"Sequence feature 'hist': cells look joined with ';' \(e\.g\. 'a;b' at row 0\)",
    ),
    "sequence-space-joined-ids-adapt": (
        _adapt(hist=["1 2 3", "4 5", "", "2 6"]),
        ValueError,
        r"Sequence feature 'hist': cells look joined with ' ' \(e\.g\. '1 2 3' at row 0\)",
    ),
}


def _masked():
    return kr.Task("click", mask="shown")


@pytest.mark.parametrize(("call", "error", "pattern"), _CASES.values(), ids=_CASES.keys())
def test_bad_input_is_named(fitted, call, error, pattern):
    """The error type is the documented one and the message names the column and expectation."""
    with pytest.raises(error, match=pattern):
        call(fitted)


@pytest.mark.parametrize("name", ["1st_feature", "user id", "", "a/b", "price$", 7])
def test_bad_feature_names(name):
    """Names unusable as SavedModel signature inputs are rejected, quoting the name."""
    with pytest.raises(ValueError, match=re.escape(f"Feature name {name!r} is not usable")):
        kr.Categorical(name)


@pytest.mark.parametrize(
    ("build", "pattern"),
    [
        (
            lambda: kr.FeatureSpec([kr.Numeric("a"), kr.Categorical("a")]),
            r"Feature name 'a' is used twice",
        ),
        (
            lambda: kr.FeatureSpec([kr.Sequence("h", shares_vocabulary_with="item")]),
            r"Sequence 'h' shares the vocabulary of 'item', which is not a Categorical",
        ),
        (
            lambda: kr.FeatureSpec(
                [kr.Categorical("a"), kr.Numeric("b"), kr.Crossed("x", "ab", 9)]
            ),
            r"Crossed feature 'x' crosses 'b', which is not a Categorical or bucketized Numeric",
        ),
        (
            lambda: kr.Categorical("c", vocabulary=["a", "b", "a"]),
            r"Feature 'c': the vocabulary repeats \['a'\]",
        ),
        (
            lambda: kr.Categorical("c", vocabulary=["a", 1]),
            r"Feature 'c': vocabulary must be all strings or all integers",
        ),
        (
            lambda: kr.Numeric("p", normalization="zscore"),
            r"Feature 'p': normalization must be one of",
        ),
    ],
    ids=["duplicate", "unknown-owner", "cross-of-dense", "repeated-vocab", "mixed-vocab", "norm"],
)
def test_bad_declarations(build, pattern):
    """Inconsistent feature declarations fail when declared, naming the feature."""
    with pytest.raises(ValueError, match=pattern):
        build()


def test_nan_is_imputed_not_rejected(fitted):
    """NaN in a numeric column is the documented missing value: imputed with the mean (0 here)."""
    features = next(iter(kr.data.from_pandas(_frame(price=[np.nan, 2.0, 3.0, 4.0]), fitted)))
    price = features["price"].numpy()
    assert price[0] == 0.0  # (mean - mean) / std
    assert np.isfinite(price).all()


def test_long_sequence_is_truncated_not_rejected(fitted):
    """A sequence longer than max_length keeps its most recent items; it is not an error."""
    long = [["a", "b", "c", "a", "b"], "c|b|a|c|b|a", [], ["a"]]
    features = next(iter(kr.data.from_pandas(_frame(hist=long), fitted)))
    ids = {v: i + 2 for i, v in enumerate(fitted["hist"].vocabulary)}
    np.testing.assert_array_equal(
        features["hist"].numpy(),
        [[ids["a"], ids["b"]], [ids["b"], ids["a"]], [0, 0], [0, ids["a"]]],
    )


def test_integer_sequence_with_a_non_integer_item_is_named():
    """An item that is not an integer in an int-id sequence names the feature, item and row."""
    spec = kr.FeatureSpec([kr.Sequence("hist", max_length=3)])
    spec.adapt(pd.DataFrame({"hist": [[12, 34], [56], []]}))
    assert spec["hist"].dtype == "int64"
    with pytest.raises(
        TypeError, match=r"Sequence feature 'hist' expects integer items; found 'abc' \(row 7\)"
    ):
        kr.data.from_pandas(pd.DataFrame({"hist": ["12|34", "12|abc"]}, index=[3, 7]), spec)


def test_foreign_separator_is_rejected_but_legitimate_commas_pass():
    """Items containing ',' or ' ' are fine; a cell joined with ',' instead of '|' is not.

    Adapt (no vocabulary yet) judges the column: "Married, spouse absent" is
    not made of other items. Reading for a fitted spec judges each cell
    against the vocabulary: "Drama,Comedy" is unknown while its pieces are
    known; an unseen "Foo, Bar" is just out of vocabulary.
    """
    train = pd.DataFrame(
        {
            "status": ["Married, spouse absent|Divorced", "Married|Never married", "Widowed", ""],
            "genres": ["Drama|Comedy", "Drama", "Science Fiction|Comedy", "Film Noir"],
        }
    )
    spec = kr.FeatureSpec([kr.Sequence("status"), kr.Sequence("genres")]).adapt(train)
    assert "Married, spouse absent" in spec["status"].vocabulary
    assert "Science Fiction" in spec["genres"].vocabulary
    rows = train.assign(status=["Foo, Bar", "Married, spouse absent", "Married", "Never married"])
    features = next(iter(kr.data.from_pandas(rows, spec, batch_size=4)))
    ids = {v: i + 2 for i, v in enumerate(spec["status"].vocabulary)}
    np.testing.assert_array_equal(
        features["status"].numpy()[:, -1],
        [1, ids["Married, spouse absent"], ids["Married"], ids["Never married"]],
    )
    with pytest.raises(
        ValueError,
        match=r"Sequence feature 'genres': cells look joined with ',' "
        r"\(e\.g\. 'Drama,Comedy' at row 2\)",
    ):
        kr.data.from_pandas(train.assign(genres=["Drama", "Comedy", "Drama,Comedy", ""]), spec)
