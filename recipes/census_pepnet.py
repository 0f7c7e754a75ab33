"""PEPNet (EPNet + PPNet gates on the scenario) on census worker groups (income).

python recipes/census_pepnet.py          # 3 seeds, writes results/scenario/ and the README table
"""

import _scenario_common as common

import keras_recsys as kr

RECIPE = common.ScenarioRecipe(
    name="census_pepnet",
    dataset="census_worker_group",
    model=lambda spec, tasks: kr.models.PEPNet(spec, tasks, hidden_units=(128, 64)),
    model_label="PEPNet(128-64, gates on worker_group)",
)

if __name__ == "__main__":
    common.main(RECIPE)
