"""translate-gru-attention-multi30k-de-en: the en-de recipe with the languages swapped.

    zoo train recipes/translate_gru_attention_multi30k_de_en.py [--smoke]

Multi30k task 1 (29k image descriptions), German -> English, raw text in and
out (cased, punctuation kept). Every other setting comes from
recipes/translate_gru_attention_multi30k_en_de.py, so the two directions stay
comparable.
"""

from pathlib import Path

from zoo.training import load_recipe

CONFIG = dict(
    load_recipe("translate_gru_attention_multi30k_en_de"),
    name="translate-gru-attention-multi30k-de-en",
    recipe_file=Path(__file__).name,
    languages=["de", "en"],
)

if __name__ == "__main__":
    from zoo.training import run_recipe

    run_recipe(CONFIG)
