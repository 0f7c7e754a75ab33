"""PLE on census income (income, marital) against single-task DNNs.

python recipes/census_ple.py          # 3 seeds, writes results/ and README table
"""

import _common as common

import keras_recsys as kr

RECIPE = common.Recipe(
    name="census_ple",
    dataset="census_income",
    model=lambda spec, tasks: kr.models.PLE(
        spec,
        tasks,
        num_levels=2,
        num_task_experts=2,
        num_shared_experts=2,
        expert_units=(64,),
        tower_units=(32,),
    ),  # fmt: skip
    baseline=lambda spec, tasks: kr.models.SharedBottom(spec, tasks, (128, 64), (32,)),
    model_label="PLE(2 levels, 2+2 experts of 64, towers 32)",
    baseline_label="single-task DNN per task (128-64-32)",
    single_task_baseline=True,
)

if __name__ == "__main__":
    common.main(RECIPE)
