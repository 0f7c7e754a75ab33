"""ESMM on the MovieLens-100K funnel against a CVR model trained on clicks only.

Every rating is an impression; click = rating >= 4, conversion = rating 5.
ESMM learns pCTR and pCTCVR = pCTR x pCVR over all impressions; the baseline
has the same two towers on shared embeddings, with its CVR task masked to the
clicked impressions (`Task("cvr", label="conversion", mask="click")`), the
sample-selection-biased way ESMM fixes.

    python recipes/movielens_esmm.py          # 3 seeds, writes results/ and README table
"""

import _common as common

import keras_recsys as kr

TOWERS = (128, 64)

RECIPE = common.Recipe(
    name="movielens_esmm",
    dataset="movielens_100k_funnel",
    model=lambda spec, tasks: kr.models.ESMM(spec, tasks, tower_units=TOWERS),
    baseline=lambda spec, tasks: kr.models.SharedBottom(
        spec, tasks, bottom_units=(), tower_units=TOWERS
    ),
    model_label="ESMM(towers 128-64)",
    baseline_label="CTR + click-masked CVR towers (128-64)",
    training=common.Training(epochs=30, batch_size=1024, learning_rate=1e-3, patience=2),
)

if __name__ == "__main__":
    common.main(RECIPE)
