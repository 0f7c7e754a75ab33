"""Next-item models on MovieLens-100K with timestamps: HSTU's time bias and stochastic length.

python recipes/movielens_sequential.py                 # 3 seeds, every arm
python recipes/movielens_sequential.py --seeds 0 --arms hstu_time popularity

Every rating is an interaction, users' ratings in time order (943 users,
1,682 movies, 100,000 ratings, 106 a user on average, up to 737), the
S3-Rec leave-one-out protocol with full ranking as on Beauty, histories of
up to 200 items, embedding 64. The arms isolate HSTU's pieces: SASRec with
HSTU's loss, HSTU without timestamps, HSTU with the time-gap bias, and HSTU
with the time bias trained with stochastic length (α = 1.6: a history of n
items is kept whole with probability min(1, 200^1.6 / n²), else its latest
⌊200^0.8⌋ = 69 items).
"""

import _sequential as sequential

import keras_recsys as kr

MAX_LENGTH, DIM = 200, 64
HSTU_LOSS = {"loss": "sampled_softmax", "num_negatives": 512, "temperature": 0.05}


def load():
    return sequential.leave_one_out_data(
        kr.datasets.movielens_100k_sequences(), MAX_LENGTH, DIM, timestamps=True
    )


def _hstu(**options):
    return lambda spec, seed: kr.models.HSTU(
        spec, num_blocks=2, num_heads=1, dropout=0.2, seed=seed, **HSTU_LOSS, **options
    )


ADAMW = sequential.Training(optimizer="adamw", max_epochs=400)

ARMS = {
    "popularity": sequential.Arm("most popular training items", None),
    "sasrec_cosine_softmax": sequential.Arm(
        "SASRec (2 blocks, 1 head, dropout 0.2) with HSTU's loss: sampled softmax, "
        "512 uniform negatives, L2-normalized, temperature 0.05, AdamW",
        lambda spec, seed: kr.models.SASRec(
            spec, dropout=0.2, normalize=True, seed=seed, **HSTU_LOSS
        ),
        ADAMW,
    ),
    "hstu": sequential.Arm(
        "HSTU (2 blocks, 1 head, dropout 0.2, HSTU's loss), no timestamps", _hstu(), ADAMW
    ),
    "hstu_time": sequential.Arm(
        "HSTU with the time-gap bias (timestamps)", _hstu(timestamps="history_time"), ADAMW
    ),
    "hstu_time_stochastic": sequential.Arm(
        "HSTU with the time-gap bias, trained with stochastic length α = 1.6",
        _hstu(timestamps="history_time", stochastic_length=1.6),
        ADAMW,
    ),
}

if __name__ == "__main__":
    sequential.main("movielens_sequential", load, ARMS)
