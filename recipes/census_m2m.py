"""M2M on census worker groups (income), against shared and per-scenario DNNs.

python recipes/census_m2m.py          # 3 seeds, writes results/scenario/ and the README table
"""

import _scenario_common as common

import keras_recsys as kr

RECIPE = common.ScenarioRecipe(
    name="census_m2m",
    dataset="census_worker_group",
    model=lambda spec, tasks: kr.models.M2M(
        spec, tasks, num_experts=4, expert_units=(64,), num_tower_layers=2
    ),
    model_label="M2M(4 experts of 64, 2 meta layers)",
)

if __name__ == "__main__":
    common.main(RECIPE)
