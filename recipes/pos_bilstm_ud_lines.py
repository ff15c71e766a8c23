"""UPOS tagging on UD English-LinES: BiLSTM with a character CNN and a softmax head.

Run: `zoo train recipes/pos_bilstm_ud_lines.py` (or `python recipes/pos_bilstm_ud_lines.py`).
Words are looked up lowercased while the character CNN sees their case (a
capital is a strong PROPN cue); unseen words are tagged from their characters
(word dropout trains that path).
"""

from pathlib import Path

CONFIG = dict(
    name="pos-bilstm-ud-lines",
    task="tagging",
    architecture="rnn-tagger",
    dataset="ud_english_lines",
    recipe_file=Path(__file__).name,
    model=dict(head="softmax", cell="lstm", units=128, num_layers=1, bidirectional=True,
               embedding_dim=100, lowercase=True, char_encoder="cnn", char_filters=50,
               dropout=0.5, word_dropout=0.1),
    smoke=dict(model=dict(units=32, embedding_dim=32, char_filters=16, dropout=0.2)),
    batch_size=32,
    learning_rate=2e-3,
    epochs=30,
    patience=5,
    seed=0,
    objective="val_token_accuracy",  # for `zoo tune`: POS tags have no spans, so no val_f1
)

if __name__ == "__main__":
    from zoo.training import run_recipe

    run_recipe(CONFIG)
