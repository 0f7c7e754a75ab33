"""A DNN with the scenario-indicator shallow tower on MovieLens-100K user age groups.

python recipes/movielens_dnn_scenario_tower.py          # 3 seeds, writes results/scenario/ and the README table
"""

import _scenario_common as common

import keras_recsys as kr

RECIPE = common.ScenarioRecipe(
    name="movielens_dnn_scenario_tower",
    dataset="movielens_age_group",
    model=lambda spec, tasks: kr.models.DNN(
        spec, tasks, hidden_units=(128, 64), scenario_tower=True
    ),
    model_label="DNN 128-64 + scenario tower",
)

if __name__ == "__main__":
    common.main(RECIPE)
