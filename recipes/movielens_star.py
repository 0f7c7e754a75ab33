"""STAR on MovieLens-100K user age groups (click = rating >= 4).

python recipes/movielens_star.py          # 3 seeds, writes results/scenario/ and the README table
"""

import _scenario_common as common

import keras_recsys as kr

RECIPE = common.ScenarioRecipe(
    name="movielens_star",
    dataset="movielens_age_group",
    model=lambda spec, tasks: kr.models.STAR(spec, tasks, hidden_units=(128, 64)),
    model_label="STAR(128-64, PN, aux net)",
)

if __name__ == "__main__":
    common.main(RECIPE)
