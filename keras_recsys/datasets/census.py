"""Census-Income (KDD): the multi-task data set of the MMoE paper."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

COLUMNS = [
    "age", "class_worker", "det_ind_code", "det_occ_code", "education",
    "wage_per_hour", "hs_college", "marital_stat", "major_ind_code",
    "major_occ_code", "race", "hisp_origin", "sex", "union_member",
    "unemp_reason", "full_or_part_emp", "capital_gains", "capital_losses",
    "stock_dividends", "tax_filer_stat", "region_prev_res", "state_prev_res",
    "det_hh_fam_stat", "det_hh_summ", "instance_weight", "mig_chg_msa",
    "mig_chg_reg", "mig_move_reg", "mig_same", "mig_prev_sunbelt", "num_emp",
    "fam_under_18", "country_father", "country_mother", "country_self",
    "citizenship", "own_or_self", "vet_question", "vet_benefits",
    "weeks_worked", "year", "income_50k",
]  # fmt: skip
NUMERIC_COLUMNS = [
    "age", "wage_per_hour", "capital_gains", "capital_losses",
    "stock_dividends", "num_emp", "weeks_worked",
]  # fmt: skip
LABEL_COLUMNS = ["income", "marital"]
# Never model inputs: the raw label columns and the sampling weight.
EXCLUDED_COLUMNS = ["income_50k", "marital_stat", "instance_weight"]
CATEGORICAL_COLUMNS = [c for c in COLUMNS if c not in NUMERIC_COLUMNS and c not in EXCLUDED_COLUMNS]
BUNDLED_FILE = os.path.join(os.path.dirname(__file__), "data", "census-income.test.gz")
SPLIT_SEED = 2026


def load_census_income(path: str | None = None) -> pd.DataFrame:
    """All rows of the census file, labels added, in file order."""
    path = path or BUNDLED_FILE
    if not os.path.exists(path):
        raise FileNotFoundError(f"Census-Income file '{path}' does not exist.")
    # na_filter=False: "NA" is a real category of hisp_origin, not a missing
    # value; values are stripped so clients can send the trimmed text.
    df = pd.read_csv(
        path, header=None, names=COLUMNS, skipinitialspace=True, dtype=str, na_filter=False
    )
    for column in df.columns:
        df[column] = df[column].str.strip()
    if df.shape[1] != len(COLUMNS) or (df["income_50k"] == "").any():
        raise ValueError(
            f"'{path}' does not look like census-income data "
            f"({len(COLUMNS)} comma-separated columns expected)."
        )
    for column in NUMERIC_COLUMNS + ["instance_weight"]:
        df[column] = pd.to_numeric(df[column]).astype("float32")
    df["income"] = (df["income_50k"] == "50000+.").astype("int32")
    df["marital"] = (df["marital_stat"] == "Never married").astype("int32")
    return df


def census_income(
    path: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, valid, test) DataFrames of UCI Census-Income (KDD).

    The bundled file is the data set's test half (99,762 rows; the training
    half is not distributed here). The split is the documented one: rows in
    file order permuted with `numpy.random.default_rng(2026)`, then 60% /
    20% / 20%. Labels: `income` (income_50k is "50000+.") and `marital`
    (marital_stat is "Never married"); both raw label columns and
    `instance_weight` stay in the frames but are never model inputs (see
    `CATEGORICAL_COLUMNS` and `NUMERIC_COLUMNS`). Categorical values are
    strings; numeric columns float32.

    Source and terms: UCI Machine Learning Repository (Dua & Graff), U.S.
    Census Bureau; CC BY 4.0.

    Args:
        path: another copy of the file (same format); default: bundled.

    Example:

    >>> train, valid, test = kr.datasets.census_income()
    """
    df = load_census_income(path)
    n = len(df)
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    train_end, valid_end = int(0.6 * n), int(0.8 * n)
    parts = (order[:train_end], order[train_end:valid_end], order[valid_end:])
    return tuple(df.iloc[p].reset_index(drop=True) for p in parts)


def census_feature_spec(embedding_dim: int = 8):
    """The `FeatureSpec` used by the census demo and recipes (unfitted)."""
    from keras_recsys.features import Categorical, FeatureSpec, Numeric

    features = [Categorical(c) for c in CATEGORICAL_COLUMNS]
    features += [Numeric(c, transform="log1p") for c in NUMERIC_COLUMNS]
    return FeatureSpec(features, default_embedding_dim=embedding_dim)


# Multi-scenario view of the census data: four worker groups of class_worker.
WORKER_GROUPS = {
    "Private": "private",
    "Federal government": "government",
    "State government": "government",
    "Local government": "government",
    "Self-employed-incorporated": "self_employed",
    "Self-employed-not incorporated": "self_employed",
    "Not in universe": "not_working",
    "Never worked": "not_working",
    "Without pay": "not_working",
}
SCENARIO_COLUMN = "worker_group"


def add_worker_group(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of `df` with the scenario column `worker_group`.

    `worker_group` groups `class_worker` into four scenarios of unequal size
    and base rate (training split: not_working 30,260 rows, 0.9% with
    income > 50k; private 21,699, 10.2%; government 4,378, 13.2%;
    self_employed 3,520, 17.6%): "Not in universe", "Never
    worked" and "Without pay" are not_working; federal, state and local
    government are government; both self-employed values are
    self_employed. A value outside this map raises an error.
    """
    values = df["class_worker"].astype(str).str.strip()
    groups = values.map(WORKER_GROUPS)
    if groups.isna().any():
        raise ValueError(
            f"class_worker value {values[groups.isna()].iloc[0]!r} has no worker group."
        )
    out = df.copy()
    out[SCENARIO_COLUMN] = groups.to_numpy()
    return out


def census_scenario_feature_spec(embedding_dim: int = 8):
    """The multi-scenario census `FeatureSpec` (unfitted).

    Like `census_feature_spec`, with `worker_group` (see `add_worker_group`)
    as the `role="scenario"` feature in place of `class_worker`, which it
    summarizes (so the scenario is not also an ordinary input).
    """
    from keras_recsys.features import Categorical, FeatureSpec, Numeric

    features = [Categorical(SCENARIO_COLUMN, role="scenario")]
    features += [Categorical(c) for c in CATEGORICAL_COLUMNS if c != "class_worker"]
    features += [Numeric(c, transform="log1p") for c in NUMERIC_COLUMNS]
    return FeatureSpec(features, default_embedding_dim=embedding_dim)
