"""Input pipelines: pandas, CSV and Parquet to preprocessed `tf.data` batches."""

from keras_recsys.data.pipeline import from_csv, from_pandas, from_parquet
from keras_recsys.data.sequences import next_item_dataset, to_numpy

__all__ = ["from_csv", "from_pandas", "from_parquet", "next_item_dataset", "to_numpy"]
