"""STAR without partitioned normalization (ablation) on census worker groups (income).

python recipes/census_star_no_pn.py          # 3 seeds, writes results/scenario/ and the README table
"""

import _scenario_common as common

import keras_recsys as kr

RECIPE = common.ScenarioRecipe(
    name="census_star_no_pn",
    dataset="census_worker_group",
    model=lambda spec, tasks: kr.models.STAR(
        spec, tasks, hidden_units=(128, 64), partitioned_normalization=False
    ),
    model_label="STAR(128-64, no PN, aux net)",
)

if __name__ == "__main__":
    common.main(RECIPE)
