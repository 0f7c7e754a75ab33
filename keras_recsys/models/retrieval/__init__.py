"""Retrieval models: a query and a candidate scored in one space."""

from keras_recsys.models.retrieval.two_tower import TwoTower

__all__ = ["TwoTower"]
