"""CoNLL-2003 English NER: BiLSTM-CRF with a character CNN (Ma & Hovy 2016), no external embeddings.

Run: `zoo train recipes/ner_bilstm_crf_conll03.py` (or `python recipes/ner_bilstm_crf_conll03.py`).
The file's IOB1 tags are learned as BIO; F1 follows conlleval's chunk rules,
for which both encodings give the same entities. Words are looked up
lowercased and the character CNN sees their case; word dropout trains the
OOV vector, so unseen names are recognized from their spelling.
Published with pretrained embeddings: 90.94 (Lample et al. 2016), 91.21 (Ma & Hovy 2016).
"""

from pathlib import Path

CONFIG = dict(
    name="ner-bilstm-crf-conll03",
    task="tagging",
    architecture="rnn-tagger",
    dataset="conll2003",
    recipe_file=Path(__file__).name,
    model=dict(head="crf", cell="lstm", units=128, num_layers=1, bidirectional=True,
               embedding_dim=100, lowercase=True, char_encoder="cnn", char_filters=50,
               dropout=0.5, word_dropout=0.1),
    smoke_model=dict(units=32, embedding_dim=32, char_filters=16, dropout=0.2),
    batch_size=64,
    learning_rate=2e-3,
    epochs=20,
    patience=4,
    seed=0,
)

if __name__ == "__main__":
    from zoo.training import run_recipe

    run_recipe(CONFIG)
