"""caption-mobilenetv2-lstm-attention-flickr8k: Show, Attend and Tell on an ImageNet MobileNetV2.

    zoo train recipes/caption_mobilenetv2_lstm_attention_flickr8k.py [--smoke]

Flickr8k (6,000 training images x 5 captions, official splits). The encoder
is torchvision's ImageNet MobileNetV2 converted to Keras (the conversion,
`recipes/convert_mobilenet_v2.py`, runs first when its cached weights are
missing; it needs torch and the weights package, see that recipe). The encoder is frozen: its
7x7x1280 features are computed once per image and cached, and only the LSTM
decoder with soft attention trains. Model selection on greedy validation
BLEU-4; test BLEU-1..4 on the 1,000 official test images, greedy and beam 3,
end to end from the JPEG files. Set `model.attention=None` for Show and Tell.
"""

from pathlib import Path

CONFIG = dict(
    name="caption-mobilenetv2-lstm-attention-flickr8k",
    task="captioning",
    recipe_file=Path(__file__).name,
    dataset="flickr8k",
    architecture="image-captioner",
    encoder_weights="imagenet",
    model=dict(attention="additive", embedding_dim=256, units=384, region_dim=256,
               attention_units=256, dropout=0.4, max_caption_length=24, length_penalty=0.0),
    min_count=5,  # 2,545 words: with the 9 MB encoder the model stays under 25 MB
    batch_size=64,
    learning_rate=1e-3,
    label_smoothing=0.1,
    clipnorm=5.0,
    epochs=9,
    patience=3,
    reduce_lr_patience=1,
    val_bleu_images=500,
    seed=0,
    smoke=dict(encoder_weights=None, subset=dict(train=32, validation=8),
               model=dict(embedding_dim=16, units=16, region_dim=16, attention_units=8),
               min_count=1, batch_size=32, learning_rate=1e-2, epochs=2, val_bleu_images=8,
               reduce_lr_patience=0),
)

if __name__ == "__main__":
    from zoo.training import run_recipe

    run_recipe(CONFIG)
