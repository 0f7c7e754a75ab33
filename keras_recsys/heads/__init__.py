"""Output heads: each owns its output, its loss (from logits) and its serving outputs.

`TaskHeads` are the pointwise heads (one per `Task`), `InBatchSoftmax` the
retrieval head of two-tower models, `NextItemHead` the output of next-item
models tied to their item table, `top_k_items` the top-k they serve.
"""

from keras_recsys.heads.next_item import NextItemHead
from keras_recsys.heads.pointwise import TaskHeads
from keras_recsys.heads.retrieval import InBatchSoftmax
from keras_recsys.heads.top_k import exclude_items, top_k_items

__all__ = ["InBatchSoftmax", "NextItemHead", "TaskHeads", "exclude_items", "top_k_items"]
