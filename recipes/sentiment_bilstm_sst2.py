"""sentiment-bilstm-sst2: BiLSTM (cuDNN-eligible) + max pooling on SST-2.

    zoo train recipes/sentiment_bilstm_sst2.py [--smoke]

Embeddings start from the zoo's own skip-gram vectors (recipes/word2vec_zoo.py).
"""

from pathlib import Path

CONFIG = dict(
    name="sentiment-bilstm-sst2",
    task="classification",
    recipe_file=Path(__file__).name,
    dataset="sst2",
    architecture="rnn-classifier",
    model=dict(cell="lstm", units=128, num_layers=1, bidirectional=True, embedding_dim=300,
               dropout=0.5, pooling="max"),
    smoke=dict(model=dict(units=16, embedding_dim=32), learning_rate=5e-3, epochs=4),
    word_vectors="word2vec-zoo",
    batch_size=32,
    learning_rate=1e-3,
    clipnorm=5.0,
    epochs=8,
    patience=3,
    seed=0,
)

if __name__ == "__main__":
    from zoo.training import run_recipe

    run_recipe(CONFIG)
