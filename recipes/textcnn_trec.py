"""textcnn-trec: Kim (2014) CNN-non-static on TREC question types (6 classes).

    zoo train recipes/textcnn_trec.py            # or: python recipes/textcnn_trec.py
    zoo train recipes/textcnn_trec.py --smoke    # seconds, on a small real subset

Word vectors come from the zoo's own skip-gram (recipes/word2vec_zoo.py), which
this recipe trains first if they are not cached. TREC has no validation split:
10% of train is held out for early stopping, as in Kim (2014).
"""

from pathlib import Path

CONFIG = dict(
    name="textcnn-trec",
    task="classification",
    recipe_file=Path(__file__).name,
    dataset="trec",
    architecture="text-cnn",
    model=dict(variant="non-static", embedding_dim=300, filter_widths=[3, 4, 5], num_filters=100,
               dropout=0.5),
    smoke=dict(model=dict(embedding_dim=32, num_filters=16), epochs=3),
    word_vectors="word2vec-zoo",
    validation_split=0.1,
    batch_size=50,
    learning_rate=1e-3,
    epochs=12,
    patience=4,
    seed=0,
)

if __name__ == "__main__":
    from zoo.training import run_recipe

    run_recipe(CONFIG)
