"""Real data sets, with their split protocols.

Census-Income (KDD) is bundled (UCI Machine Learning Repository, Dua & Graff;
U.S. Census Bureau; CC BY 4.0). MovieLens-100K is not (GroupLens forbids
redistribution): `movielens_100k` downloads it on first use and caches it.
Sequences for next-item models: `sequences_from_log`, `k_core`,
`leave_one_out` (S3-Rec protocol), `time_split`; the S3-Rec Amazon files
(research use, never bundled) load with `amazon_beauty` / `s3rec_sequences`.
"""

from keras_recsys.datasets.census import (
    add_worker_group,
    census_feature_spec,
    census_income,
    census_scenario_feature_spec,
)
from keras_recsys.datasets.movielens import (
    load_movielens_100k,
    movielens_100k,
    movielens_100k_sequences,
    movielens_feature_spec,
)
from keras_recsys.datasets.movielens_behaviors import (
    movielens_100k_behaviors,
    movielens_behavior_feature_spec,
)
from keras_recsys.datasets.sequences import (
    SequenceDataset,
    amazon_beauty,
    item_attribute_matrix,
    k_core,
    leave_one_out,
    next_item_pairs,
    s3rec_sequences,
    sequences_from_log,
    time_split,
)

__all__ = [
    "SequenceDataset",
    "add_worker_group",
    "amazon_beauty",
    "item_attribute_matrix",
    "census_feature_spec",
    "census_income",
    "census_scenario_feature_spec",
    "k_core",
    "leave_one_out",
    "load_movielens_100k",
    "movielens_100k",
    "movielens_100k_behaviors",
    "movielens_100k_sequences",
    "movielens_behavior_feature_spec",
    "movielens_feature_spec",
    "next_item_pairs",
    "s3rec_sequences",
    "sequences_from_log",
    "time_split",
]
