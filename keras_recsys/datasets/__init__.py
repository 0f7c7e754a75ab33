"""Real data sets, with their split protocols.

Census-Income (KDD) is bundled (UCI Machine Learning Repository, Dua & Graff;
U.S. Census Bureau; CC BY 4.0).
"""

from keras_recsys.datasets.census import census_feature_spec, census_income

__all__ = ["census_feature_spec", "census_income"]
