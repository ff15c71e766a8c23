"""lm-lstm-ptb: Zaremba, Sutskever & Vinyals (2014) "small" LSTM language model on PTB.

2 layers x 200 units, no dropout, weights uniform in [-0.1, 0.1], truncated BPTT
over 35 steps with batch 20, SGD at learning rate 1 on the loss summed over the
window, gradients clipped to global norm 5, learning rate halved every epoch
after the 4th. The paper trains 13 epochs (test perplexity 114.5); this recipe
stops after 6, where the validation perplexity has levelled off.

Measured: test perplexity 113.93 (validation 116.57, state carried over each
split). An epoch takes 6-7 minutes on the 2-core CPU with light sharing
(359-405 s for epochs 1-2), so about 40 minutes in all; the card's 78 minutes
were measured with up to eight other trainings sharing the two cores.

    zoo train recipes/lm_lstm_ptb.py          # or: python recipes/lm_lstm_ptb.py
"""

from pathlib import Path

CONFIG = dict(
    name="lm-lstm-ptb",
    task="language_model",
    architecture="lstm-lm",
    dataset="ptb",
    recipe_file=Path(__file__).name,
    model=dict(cell="lstm", units=200, num_layers=2, dropout=0.0, init_scale=0.1),
    batch_size=20,
    window=35,
    optimizer="sgd",
    learning_rate=1.0,
    sum_loss_over_window=True,
    clipnorm=5.0,
    lr_decay=0.5,
    decay_after=4,
    epochs=6,
    seed=0,
    published=dict(test_perplexity=114.5, validation_perplexity=120.7,
                   source="Zaremba et al. 2014, Table 1 (non-regularized LSTM, 13 epochs)"),
    smoke=dict(model=dict(units=16, embedding_dim=16, num_layers=1), epochs=1,
               train_tokens=20_000, validation_tokens=20_000, eval_tokens=2_000),
)

if __name__ == "__main__":
    from zoo.training import run_recipe

    run_recipe(CONFIG)
