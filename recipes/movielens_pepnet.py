"""PEPNet on MovieLens-100K user age groups (click = rating >= 4): EPNet gates on the
age group (the domain), PPNet on the user and the item (the paper's personal ids).

python recipes/movielens_pepnet.py          # 3 seeds, writes results/scenario/ and the README table
"""

import _scenario_common as common

import keras_recsys as kr

RECIPE = common.ScenarioRecipe(
    name="movielens_pepnet",
    dataset="movielens_age_group",
    model=lambda spec, tasks: kr.models.PEPNet(
        spec,
        tasks,
        hidden_units=(128, 64),
        epnet_features=["age_group"],
        ppnet_features=["user_id", "item_id"],
    ),
    model_label="PEPNet(128-64, EPNet on age_group, PPNet on user_id, item_id)",
)

if __name__ == "__main__":
    common.main(RECIPE)
