"""translate-gru-attention-multi30k-en-de: BiGRU encoder + GRU decoder with Bahdanau attention.

    zoo train recipes/translate_gru_attention_multi30k_en_de.py [--smoke]

Multi30k task 1 (29k image descriptions), English -> German, raw text in and
out (cased, punctuation kept). Model selection on validation BLEU (greedy);
test BLEU with sacreBLEU on test_2016_flickr, beam 5.
"""

from pathlib import Path

CONFIG = dict(
    name="translate-gru-attention-multi30k-en-de",
    task="translation",
    recipe_file=Path(__file__).name,
    dataset="multi30k",
    languages=["en", "de"],
    architecture="seq2seq-gru-attention",
    model=dict(embedding_dim=256, units=256, encoder_layers=1, decoder_layers=1,
               attention="additive", dropout=0.3, max_source_length=100,
               max_output_length=80, length_penalty=0.6),
    min_count=3,  # ~4.8k English, ~5.6k German tokens: keeps the model under 25 MB
    batch_size=64,
    learning_rate=1e-3,
    label_smoothing=0.1,
    clipnorm=1.0,
    epochs=20,
    patience=4,
    reduce_lr_patience=2,
    max_train_minutes=95,  # a deadline on a shared 2-core CPU; the card records epochs_run
    val_bleu_examples=500,
    seed=0,
    smoke=dict(model=dict(embedding_dim=32, units=32), learning_rate=1e-2, epochs=3,
               batch_size=32, min_count=1, reduce_lr_patience=0,
               max_train_minutes=None, val_bleu_examples=64),
)

if __name__ == "__main__":
    from zoo.training import run_recipe

    run_recipe(CONFIG)
