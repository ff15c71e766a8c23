"""textcnn-sst2: Kim (2014) CNN-non-static on SST-2 (binary sentiment, sentence-level training).

    zoo train recipes/textcnn_sst2.py            # or: python recipes/textcnn_sst2.py
    zoo train recipes/textcnn_sst2.py --smoke    # seconds, on a small real subset

Word vectors come from the zoo's own skip-gram (recipes/word2vec_zoo.py), which
this recipe trains first if they are not cached. SST-2 uses its official validation split for early stopping; metrics are on
the official test split (1,821 sentences).
"""

from pathlib import Path

CONFIG = dict(
    name="textcnn-sst2",
    task="classification",
    recipe_file=Path(__file__).name,
    dataset="sst2",
    architecture="text-cnn",
    model=dict(variant="non-static", embedding_dim=300, filter_widths=[3, 4, 5], num_filters=100,
               dropout=0.5),
    smoke=dict(model=dict(embedding_dim=32, num_filters=16), epochs=3),
    word_vectors="word2vec-zoo",
    batch_size=50,
    learning_rate=3e-4,  # 1e-3 overfits the 300-d embeddings after one epoch
    epochs=12,
    patience=4,
    seed=0,
)

if __name__ == "__main__":
    from zoo.training import run_recipe

    run_recipe(CONFIG)
