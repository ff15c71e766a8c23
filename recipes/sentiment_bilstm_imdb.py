"""sentiment-bilstm-imdb: BiLSTM (cuDNN-eligible) + max pooling on IMDB reviews.

    zoo train recipes/sentiment_bilstm_imdb.py [--smoke]

Reviews are cut to their first 300 tokens; the 10,000 most frequent training
words form the vocabulary, initialized from the zoo's skip-gram vectors. IMDB
has no validation split: 10% of train is held out for early stopping.
"""

from pathlib import Path

CONFIG = dict(
    name="sentiment-bilstm-imdb",
    task="classification",
    recipe_file=Path(__file__).name,
    dataset="imdb",
    architecture="rnn-classifier",
    model=dict(cell="lstm", units=64, num_layers=1, bidirectional=True, embedding_dim=300,
               dropout=0.4, pooling="max", max_length=300),
    smoke=dict(model=dict(units=8, embedding_dim=16, max_length=64), learning_rate=5e-3, epochs=3),
    word_vectors="word2vec-zoo",
    max_vocabulary=10000,
    validation_split=0.1,
    batch_size=128,
    learning_rate=2e-3,
    clipnorm=5.0,
    epochs=3,
    patience=1,
    seed=0,
)

if __name__ == "__main__":
    from zoo.training import run_recipe

    run_recipe(CONFIG)
