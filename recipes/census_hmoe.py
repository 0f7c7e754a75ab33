"""HMoE on census worker groups (income), against shared and per-scenario DNNs.

python recipes/census_hmoe.py          # 3 seeds, writes results/scenario/ and the README table
"""

import _scenario_common as common

import keras_recsys as kr

RECIPE = common.ScenarioRecipe(
    name="census_hmoe",
    dataset="census_worker_group",
    model=lambda spec, tasks: kr.models.HMoE(spec, tasks, bottom_units=(128,), tower_units=(64,)),
    model_label="HMoE(bottom 128, towers 64)",
)

if __name__ == "__main__":
    common.main(RECIPE)
