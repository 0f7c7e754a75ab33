"""MMoE on census income (income, marital) against single-task DNNs.

python recipes/census_mmoe.py          # 3 seeds, writes results/ and README table
"""

import _common as common

import keras_recsys as kr

RECIPE = common.Recipe(
    name="census_mmoe",
    dataset="census_income",
    model=lambda spec, tasks: kr.models.MMoE(
        spec, tasks, num_experts=8, expert_units=(64,), tower_units=(32,)
    ),
    baseline=lambda spec, tasks: kr.models.SharedBottom(spec, tasks, (128, 64), (32,)),
    model_label="MMoE(8 experts of 64, towers 32)",
    baseline_label="single-task DNN per task (128-64-32)",
    single_task_baseline=True,
)

if __name__ == "__main__":
    common.main(RECIPE)
