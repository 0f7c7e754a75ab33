"""Training machinery shared by every model: how task losses combine, the optimizer fix."""

from keras_recsys.training.stochastic_length import StochasticLengthBatches, stochastic_length

__all__ = ["StochasticLengthBatches", "stochastic_length"]
