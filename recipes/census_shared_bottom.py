"""Shared-Bottom on census income (income, marital) against single-task DNNs.

python recipes/census_shared_bottom.py          # 3 seeds, writes results/ and README table
"""

import _common as common

import keras_recsys as kr

BOTTOM, TOWER = (128, 64), (32,)

RECIPE = common.Recipe(
    name="census_shared_bottom",
    dataset="census_income",
    model=lambda spec, tasks: kr.models.SharedBottom(spec, tasks, BOTTOM, TOWER),
    baseline=lambda spec, tasks: kr.models.SharedBottom(spec, tasks, BOTTOM, TOWER),
    model_label="SharedBottom(128-64, towers 32)",
    baseline_label="single-task DNN per task (128-64-32)",
    single_task_baseline=True,
)

if __name__ == "__main__":
    common.main(RECIPE)
