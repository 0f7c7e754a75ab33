"""Input pipelines: pandas, CSV and Parquet to preprocessed `tf.data` batches."""

from keras_recsys.data.pipeline import from_csv, from_pandas, from_parquet

__all__ = ["from_csv", "from_pandas", "from_parquet"]
