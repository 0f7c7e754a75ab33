"""M2M on MovieLens-100K user age groups (click = rating >= 4).

python recipes/movielens_m2m.py          # 3 seeds, writes results/scenario/ and the README table
"""

import _scenario_common as common

import keras_recsys as kr

RECIPE = common.ScenarioRecipe(
    name="movielens_m2m",
    dataset="movielens_age_group",
    model=lambda spec, tasks: kr.models.M2M(
        spec, tasks, num_experts=4, expert_units=(64,), num_tower_layers=2
    ),
    model_label="M2M(4 experts of 64, 2 meta layers)",
)

if __name__ == "__main__":
    common.main(RECIPE)
