"""STAR on census worker groups (income), against shared and per-scenario DNNs.

python recipes/census_star.py          # 3 seeds, writes results/scenario/ and the README table
"""

import _scenario_common as common

import keras_recsys as kr

RECIPE = common.ScenarioRecipe(
    name="census_star",
    dataset="census_worker_group",
    model=lambda spec, tasks: kr.models.STAR(spec, tasks, hidden_units=(128, 64)),
    model_label="STAR(128-64, PN, aux net)",
)

if __name__ == "__main__":
    common.main(RECIPE)
