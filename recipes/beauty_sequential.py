"""Next-item models on Amazon Beauty (S3-Rec protocol), with a popularity baseline.

python recipes/beauty_sequential.py                 # 3 seeds, every arm
python recipes/beauty_sequential.py --seeds 0 --arms sasrec_bce popularity

Settings follow the S3-Rec paper's baselines: max length 50, embedding 64,
Adam 1e-3, batch 256. Reads Beauty.txt from ../shared/data/amazon_s3rec (or
$KERAS_RECSYS_AMAZON_S3REC); the file is never bundled.
"""

import _sequential as sequential

import keras_recsys as kr

MAX_LENGTH, DIM = 50, 64


def load():
    return sequential.leave_one_out_data(kr.datasets.amazon_beauty(), MAX_LENGTH, DIM)


ARMS = {
    "popularity": sequential.Arm("most popular training items", None),
    "gru4rec": sequential.Arm(
        "GRU4Rec (GRU 64, sampled softmax, 100 uniform negatives)",
        lambda spec, seed: kr.models.GRU4Rec(
            spec, dropout=0.25, loss="sampled_softmax", num_negatives=100, seed=seed
        ),
    ),
    "sasrec_bce": sequential.Arm(
        "SASRec (2 blocks, 1 head, dropout 0.5, paper BCE, 1 negative)",
        lambda spec, seed: kr.models.SASRec(spec, dropout=0.5, loss="bce", seed=seed),
        # One negative a position learns slowly: the validation NDCG@10 still
        # rose after 100+ epochs with plateaus longer than 4 checks.
        sequential.Training(max_epochs=400, patience=10),
    ),
    "sasrec_sampled_softmax": sequential.Arm(
        "SASRec (2 blocks, 1 head, dropout 0.5, sampled softmax, 100 uniform negatives)",
        lambda spec, seed: kr.models.SASRec(
            spec, dropout=0.5, loss="sampled_softmax", num_negatives=100, seed=seed
        ),
    ),
    "sasrec_cosine_softmax": sequential.Arm(
        "SASRec (2 blocks, 1 head, dropout 0.5) with HSTU's loss: sampled softmax, "
        "512 uniform negatives, L2-normalized, temperature 0.05, AdamW",
        lambda spec, seed: kr.models.SASRec(
            spec,
            dropout=0.5,
            loss="sampled_softmax",
            num_negatives=512,
            normalize=True,
            temperature=0.05,
            seed=seed,
        ),
        sequential.Training(optimizer="adamw"),
    ),
    "hstu": sequential.Arm(
        "HSTU (4 blocks, 4 heads, dropout 0.5, sampled softmax, 512 uniform negatives, "
        "L2-normalized, temperature 0.05, AdamW)",
        # Chosen on validation NDCG@10 among 2 and 4 blocks, 1 and 4 heads, 128
        # and 512 negatives, dropout 0.3 and 0.5 (results/sequential/beauty_hstu_sweep.json).
        lambda spec, seed: kr.models.HSTU(
            spec, num_blocks=4, num_heads=4, dropout=0.5, num_negatives=512, seed=seed
        ),
        sequential.Training(optimizer="adamw", max_epochs=400),
    ),
    "bert4rec": sequential.Arm(
        "BERT4Rec (2 blocks, 2 heads, mask 0.6, full softmax)",
        lambda spec, seed: kr.models.BERT4Rec(
            spec, mask_probability=0.6, dropout=0.1, loss="softmax", seed=seed
        ),
    ),
}

if __name__ == "__main__":
    sequential.main("beauty_sequential", load, ARMS)
