"""HMoE on MovieLens-100K user age groups (click = rating >= 4).

python recipes/movielens_hmoe.py          # 3 seeds, writes results/scenario/ and the README table
"""

import _scenario_common as common

import keras_recsys as kr

RECIPE = common.ScenarioRecipe(
    name="movielens_hmoe",
    dataset="movielens_age_group",
    model=lambda spec, tasks: kr.models.HMoE(spec, tasks, bottom_units=(128,), tower_units=(64,)),
    model_label="HMoE(bottom 128, towers 64)",
)

if __name__ == "__main__":
    common.main(RECIPE)
