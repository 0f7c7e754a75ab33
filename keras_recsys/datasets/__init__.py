"""Real data sets, with their split protocols.

Census-Income (KDD) is bundled (UCI Machine Learning Repository, Dua & Graff;
U.S. Census Bureau; CC BY 4.0). MovieLens-100K is not (GroupLens forbids
redistribution): `movielens_100k` downloads it on first use and caches it.
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
    movielens_feature_spec,
)

__all__ = [
    "add_worker_group",
    "census_feature_spec",
    "census_income",
    "census_scenario_feature_spec",
    "load_movielens_100k",
    "movielens_100k",
    "movielens_feature_spec",
]
