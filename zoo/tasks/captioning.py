"""Image captioning: an ImageNet MobileNetV2 encoder and an LSTM decoder with soft attention.

    image -> MobileNetV2 (ImageNet, frozen) -> a_1 .. a_49    (7x7 grid of 1280-d regions)
    v_i = W_v a_i                                             (regions, projected to `region_dim`)
    h_0 = tanh(W_h mean_i v_i),   c_0 = tanh(W_c mean_i v_i)  (Xu et al. 2015 initialization)
    s_t = LSTM(E y_{t-1}, (h_{t-1}, c_{t-1}))                 (stock, cuDNN-eligible)
    alpha_t = softmax_i score(s_t, v_i),   z_t = sum_i alpha_ti v_i     (soft attention)
    o_t = tanh(W_o [s_t; z_t]),   p(y_t | y_<t, image) = softmax(W_y o_t)

This is Show, Attend and Tell (Xu et al. 2015) with the attention computed
*after* the LSTM (Luong et al. 2015): the LSTM stays a stock `keras.layers.LSTM`
and teacher forcing runs it over the whole caption at once. `attention=None`
is Show and Tell (Vinyals et al. 2015): the image only initializes the LSTM
and o_t = s_t. Scores are additive (Bahdanau, v^T tanh(W_q s + W_k v_i)) or
multiplicative (Luong "general", s^T W v_i).

Training runs on *cached* encoder features: the frozen encoder sees each
image once (`encoder_features`), and the decoder sub-model (`model.decoder`,
features + word ids -> logits) is trained through the shared `fit` loop. The
saved model is end to end: image files or JPEG/PNG bytes in, captions out;
decoding is `zoo.decoding` (greedy or beam search) in TF ops.

>>> import zoo
>>> captioner = zoo.load("caption-mobilenetv2-lstm-attention-flickr8k")
>>> captioner.caption(["zoo/examples/flickr8k_3385593926_d3e9c21170.jpg"], beam_size=3)
['two dogs are playing in the snow .']
"""

import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import keras
import keras_tuner
import numpy as np
import tensorflow as tf

from zoo import encoders, registry
from zoo.decoding import output_log_probs
from zoo.layers import (AdditiveAttention, MultiplicativeAttention, WordIds, build_vocabulary,
                        rnn_layer)
from zoo.tracing import traced

ATTENTION_TYPES = ("additive", "multiplicative", None)
START_TOKEN, END_TOKEN = "<start>", "<end>"
# WordIds reserves 0 (padding) and 1 (OOV); the vocabulary starts with the two markers.
PAD_ID, OOV_ID, START_ID, END_ID = 0, 1, 2, 3
# Ids a caption never contains: padding, the start marker and "unknown word".
_NEVER_GENERATED = (PAD_ID, OOV_ID, START_ID)
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


def _attention_layer(kind, units):
    if kind == "additive":
        return AdditiveAttention(units, name="attention")
    if kind == "multiplicative":
        return MultiplicativeAttention(use_scale=True, name="attention")
    raise ValueError(f"attention must be one of {ATTENTION_TYPES}, got {kind!r}")


@keras.saving.register_keras_serializable(package="zoo")
class CaptionWordIds(WordIds):
    """`WordIds` whose vocabulary starts with the markers: `<start>` = 2, `<end>` = 3.

    `call(captions, add_start=True)` gives the decoder's inputs
    `<start> w_1 .. w_T`, `add_end=True` its labels `w_1 .. w_T <end>`.
    """

    def __init__(self, vocabulary, **kwargs):
        if list(vocabulary[:2]) != [START_TOKEN, END_TOKEN]:
            vocabulary = [START_TOKEN, END_TOKEN, *vocabulary]
        super().__init__(vocabulary, **kwargs)

    def call(self, captions, add_start=False, add_end=False):
        if add_start:
            captions = tf.strings.join([START_TOKEN + " ", captions])
        if add_end:
            captions = tf.strings.join([captions, " " + END_TOKEN])
        return super().call(captions)


def caption_decoder(vocabulary_size, grid_cells, feature_channels, attention="additive",
                    embedding_dim=256, units=384, region_dim=384, attention_units=256,
                    dropout=0.4, name="caption_decoder"):
    """The trainable part: `{"features": [B, cells, C], "tokens": [B, T]}` -> logits [B, T, V].

    `tokens` start with the start marker (teacher forcing); logits predict the
    next word at every step. A plain functional model, so cached features
    train it through `zoo.training.fit` without touching the encoder.
    """
    features = keras.Input((grid_cells, feature_channels), name="features")
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    regions = keras.layers.Dense(region_dim, name="region_projection")(features)
    regions = keras.layers.Dropout(dropout, name="region_dropout")(regions)
    summary = keras.layers.GlobalAveragePooling1D(name="region_mean")(regions)
    initial_state = [keras.layers.Dense(units, activation="tanh", name=f"init_{s}")(summary)
                     for s in ("h", "c")]
    words = keras.layers.Embedding(vocabulary_size, embedding_dim, mask_zero=True,
                                   name="word_embedding")(tokens)
    words = keras.layers.Dropout(dropout, name="word_dropout")(words)
    states = rnn_layer("lstm", units, name="decoder_lstm")(words, initial_state=initial_state)
    outputs = states
    if attention is not None:
        context, _ = _attention_layer(attention, attention_units)(states, regions)
        # An op, not a Concatenate layer: the context carries the caption mask already.
        outputs = keras.layers.Dense(units, activation="tanh", name="attentional")(
            keras.ops.concatenate([states, context], axis=-1))
    outputs = keras.layers.Dropout(dropout, name="output_dropout")(outputs)
    logits = keras.layers.Dense(vocabulary_size, name="logits", dtype="float32")(outputs)
    return keras.Model({"features": features, "tokens": tokens}, logits, name=name)


@keras.saving.register_keras_serializable(package="zoo")
class ImageCaptioner(keras.Model):
    """MobileNetV2 encoder (frozen) + LSTM decoder with optional soft attention, end to end.

    Inputs `{"images": float RGB [B, S, S, 3] in [0, 255], "captions": strings [B]}`;
    output: logits `[B, T + 1, V]` for the caption's words followed by the end
    marker. Caption images with `caption`; train the decoder on cached
    features (`encoder_features`, `caption_batches`) or the whole model on images.

    Args:
        vocabulary: caption words (lowercased), e.g. from `build_vocabulary`.
        attention: "additive" (Bahdanau scores), "multiplicative" (Luong) or
            None (Show and Tell: the image only sets the LSTM's initial state).
        embedding_dim, units, region_dim, attention_units: word vectors, LSTM
            size, projected region size, additive attention's hidden size.
        dropout: on word vectors, projected regions and the output layer.
        max_caption_length: words kept for training; the most generated words
            (end marker included) is one more.
        length_penalty: GNMT alpha for beam search (0: rank by log-probability).
        image_size: side of the square input images (a multiple of 32).

    Example:

    ```python
    model = ImageCaptioner(["a", "dog", "runs", "."], units=16, embedding_dim=8,
                           region_dim=16, attention_units=8)
    encoders.load_imagenet_weights(model.encoder)      # ImageNet features
    model.caption(["zoo/examples/flickr8k_3385593926_d3e9c21170.jpg"])  # untrained words
    ```
    """

    def __init__(self, vocabulary, attention="additive", embedding_dim=256, units=384,
                 region_dim=384, attention_units=256, dropout=0.4, max_caption_length=24,
                 length_penalty=0.0, image_size=224, **kwargs):
        if attention not in ATTENTION_TYPES:
            raise ValueError(f"attention must be one of {ATTENTION_TYPES}, got {attention!r}")
        words = CaptionWordIds(vocabulary, max_length=max_caption_length + 1, name="word_ids")
        encoder = encoders.mobilenet_v2(input_shape=(image_size, image_size, 3),
                                        name="mobilenet_v2")
        encoder.trainable = False  # ImageNet features; BatchNorm stays in inference mode
        grid = encoder.output_shape[1] * encoder.output_shape[2]
        decoder = caption_decoder(words.vocabulary_size, grid, encoder.output_shape[-1],
                                  attention, embedding_dim, units, region_dim, attention_units,
                                  dropout)
        images = keras.Input((image_size, image_size, 3), name="images")
        captions = keras.Input((), dtype="string", name="captions")
        features = keras.layers.Reshape((grid, encoder.output_shape[-1]), name="regions")(
            encoder(images))
        tokens = words(captions, add_start=True)
        logits = decoder({"features": features, "tokens": tokens})
        super().__init__({"images": images, "captions": captions}, logits, **kwargs)

        self.word_ids = words
        self.encoder = encoder
        self.decoder = decoder
        self.vocabulary = list(vocabulary)
        self.attention = attention
        self.embedding_dim = embedding_dim
        self.units = units
        self.region_dim = region_dim
        self.attention_units = attention_units
        self.dropout_rate = dropout
        self.max_caption_length = max_caption_length
        self.length_penalty = length_penalty
        self.image_size = image_size
        self.grid_shape = (grid, encoder.output_shape[-1])
        # id -> printed word; padding, OOV and the markers print as "" (untracked constant).
        object.__setattr__(self, "_words", tf.constant(["", "", "", "", *self.vocabulary]))

    def get_config(self):
        return dict(name=self.name, vocabulary=self.vocabulary, attention=self.attention,
                    embedding_dim=self.embedding_dim, units=self.units,
                    region_dim=self.region_dim, attention_units=self.attention_units,
                    dropout=self.dropout_rate, max_caption_length=self.max_caption_length,
                    length_penalty=self.length_penalty, image_size=self.image_size)

    # -- Teacher forcing: word ids for the decoder --------------------------------------

    def caption_ids(self, captions):
        """Caption strings [B] -> (decoder input ids, label ids), both [B, T + 1] int32.

        Inputs are `<start> w_1 .. w_T`, labels `w_1 .. w_T <end>` (0 = padding).
        """
        captions = tf.constant(list(captions), tf.string)
        inputs = self.word_ids(captions, add_start=True)
        labels = self.word_ids(captions, add_end=True)
        return inputs.numpy(), labels.numpy()

    # -- Inference: encoder once, decoder one step at a time -------------------------

    def _regions(self, features):
        """Grid features [B, cells, C] -> (projected regions, decoder initial state)."""
        regions = self.decoder.get_layer("region_projection")(features)
        summary = tf.reduce_mean(regions, axis=1)
        state = tuple(self.decoder.get_layer(f"init_{s}")(summary) for s in ("h", "c"))
        return regions, state

    def _decoder_inputs(self, features):
        """(image, initial decoder state): what `_step_function`'s decoder starts from."""
        regions, state = self._regions(features)
        image = {"regions": regions}
        if self.attention:
            image["keys"] = self.decoder.get_layer("attention").precompute_keys(regions)
        return image, state

    def _step_function(self):
        """A `zoo.decoding` step_fn: (ids [N], (h, c), image) -> (log-probs, (h, c)[, attention]).

        `image` holds the grid `regions` and, with attention, their attention
        `keys`, one row per image, whose `N // B` hypotheses are consecutive
        rows of `ids` (the decoders' untiled `constants`).
        """
        embeddings = self.decoder.get_layer("word_embedding").embeddings
        cell = self.decoder.get_layer("decoder_lstm").cell
        logits_layer = self.decoder.get_layer("logits")
        if self.attention is None:
            def step_fn(token_ids, state, image):
                output, (h, c) = cell(tf.gather(embeddings, token_ids), list(state))
                return output_log_probs(logits_layer, output, _NEVER_GENERATED), (h, c)

            return step_fn

        attention = self.decoder.get_layer("attention")
        attentional = self.decoder.get_layer("attentional")

        def step_fn(token_ids, state, image):
            output, (h, c) = cell(tf.gather(embeddings, token_ids), list(state))
            context, weights = attention(output, image["regions"], keys=image["keys"])
            features = attentional(tf.concat([output, context], axis=-1))
            return output_log_probs(logits_layer, features, _NEVER_GENERATED), (h, c), {
                "attention": weights}

        return step_fn

    def decode_features(self, features, beam_size=3, max_length=None):
        """Caption grid features [B, cells, C] in TF ops (traceable, exportable).

        Returns a dict: `captions` [B] strings, `words` [B, L] ("" after the
        end), `scores` [B] and, with attention, `attention` [B, L, cells] of
        the best hypothesis (the weights each word was predicted with).
        """
        from zoo.decoding import beam_search, greedy_search

        max_length = max_length or self.max_caption_length + 1
        image, state = self._decoder_inputs(features)
        start_ids = tf.fill([tf.shape(features)[0]], START_ID)
        if beam_size == 1:
            result = greedy_search(self._step_function(), state, start_ids, END_ID, max_length,
                                   pad_id=PAD_ID, constants=image)
            best = lambda x: x  # noqa: E731
        else:
            result = beam_search(self._step_function(), state, start_ids, END_ID, beam_size,
                                 max_length, length_penalty=self.length_penalty, pad_id=PAD_ID,
                                 constants=image, tile_constants=False, n_best=1)
            best = lambda x: x[:, 0]  # noqa: E731
        tokens = best(result["tokens"])
        # The end marker and padding print as "": the caption is the words before them.
        words = tf.gather(self._words, tokens)
        output = {"captions": tf.strings.strip(tf.strings.reduce_join(words, axis=1,
                                                                      separator=" ")),
                  "words": words, "scores": best(result["scores"])}
        if self.attention:
            output["attention"] = best(result["extras"]["attention"])
        return output

    def encode(self, images):
        """Images [B, S, S, 3] in [0, 255] -> grid features [B, cells, 1280]."""
        return self.get_layer("regions")(self.encoder(images, training=False))

    def decode_graph(self, images, beam_size=3, max_length=None):
        """`decode_features` of `encode(images)`: float images in, captions out (TF ops)."""
        return self.decode_features(self.encode(images), beam_size, max_length)

    def _decode_function(self, beam_size, max_length, from_features=False):
        decode = self.decode_features if from_features else self.decode_graph
        shape = ([None, *self.grid_shape] if from_features
                 else [None, self.image_size, self.image_size, 3])
        def build():
            return tf.function(lambda x: decode(x, beam_size, max_length),
                               input_signature=[tf.TensorSpec(shape, tf.float32)],
                               reduce_retracing=True)

        return traced(self, ("decode", beam_size, max_length, from_features), build)

    def load_images(self, images):
        """Paths or encoded bytes -> float32 [B, S, S, 3]; a bad input raises naming it."""
        from zoo.data.images import load_image

        if isinstance(images, (str, os.PathLike, bytes, bytearray)):
            images = [images]
        return np.stack([load_image(image, self.image_size).numpy() for image in images])

    def caption(self, images, beam_size=3, batch_size=32, max_length=None, details=False):
        """Caption images given as file paths or encoded (JPEG/PNG/GIF/BMP) bytes.

        Returns one caption string per image (a str for a single image).
        `beam_size=1` is greedy search. With `details=True`, returns dicts with
        the caption, its words, score, the image and (with attention) the
        per-word attention over the grid, `[words, grid, grid]`, for plotting.

        Raises:
            ValueError: an input is not a decodable image (the message names it).
            FileNotFoundError: a path does not exist.
        """
        single = isinstance(images, (str, os.PathLike, bytes, bytearray))
        images = [images] if single else list(images)
        function = self._decode_function(int(beam_size), max_length or self.max_caption_length + 1)
        outputs = []
        for start in range(0, len(images), batch_size):
            pixels = self.load_images(images[start : start + batch_size])
            result = function(tf.constant(pixels))
            outputs.extend(self._unbatch(result, pixels) if details else
                           [c.decode("utf-8") for c in result["captions"].numpy()])
        return outputs[0] if single else outputs

    def caption_features(self, features, beam_size=3, batch_size=256, max_length=None):
        """Captions of precomputed grid features [N, cells, C] (evaluation, validation BLEU)."""
        function = self._decode_function(int(beam_size), max_length or self.max_caption_length + 1,
                                         from_features=True)
        captions = []
        for start in range(0, len(features), batch_size):
            batch = tf.constant(np.asarray(features[start : start + batch_size], "float32"))
            captions.extend(c.decode("utf-8") for c in function(batch)["captions"].numpy())
        return captions

    def _unbatch(self, result, pixels):
        side = self.encoder.output_shape[1]
        rows = []
        for i, caption in enumerate(result["captions"].numpy()):
            words = [w.decode() for w in result["words"][i].numpy()]
            length = next((n for n in range(len(words), 0, -1) if words[n - 1]), 0)
            row = dict(caption=caption.decode("utf-8"), words=words[:length],
                       score=float(result["scores"][i]), image=pixels[i] / 255.0)
            if "attention" in result:
                row["attention"] = result["attention"][i].numpy()[:length].reshape(
                    length, side, side)
            rows.append(row)
        return rows

    def serving_function(self, beam_size=3):
        """(function, input_signature) for `zoo export`: encoded images [B] -> captions [B]."""
        from zoo.data.images import decode_image

        def serve(images):
            pixels = tf.map_fn(lambda data: decode_image(data, self.image_size), images,
                               fn_output_signature=tf.TensorSpec(
                                   [self.image_size, self.image_size, 3], tf.float32))
            return {"captions": self.decode_graph(pixels, beam_size)["captions"]}

        return serve, [tf.TensorSpec([None], tf.string, name="images")]


# --------------------------------------------------------------------------------------
# Cached features, batches, loss and the hypermodel
# --------------------------------------------------------------------------------------


def encoder_features(model, images, cache_file=None, batch_size=64, dtype="float16"):
    """Grid features [N, cells, 1280] of encoded images (paths or bytes), computed once.

    With `cache_file`, features are read from it when present and written to
    it (atomically) otherwise: the frozen encoder then sees each image once
    across epochs and runs. float16 halves the memory of the training cache
    (7,000 images: 0.9 GB); ReLU6 features lose nothing that matters to it.
    """
    from zoo.data.images import image_batches

    if cache_file is not None and Path(cache_file).exists():
        features = np.load(cache_file)
        if len(features) == len(images):
            return features
    encode = tf.function(model.encode, reduce_retracing=True)
    features = np.concatenate([encode(batch).numpy().astype(dtype) for batch in
                               image_batches(images, size=model.image_size,
                                             batch_size=batch_size)])
    if cache_file is not None:
        Path(cache_file).parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(cache_file).with_suffix(".partial.npy")
        np.save(temporary, features)
        os.replace(temporary, cache_file)
    return features


class CaptionBatches:
    """`({"features", "tokens"}, labels)` batches from cached features, bucketed by length.

    Each pass shuffles the (image, caption) pairs, sorts runs of 20 batches by
    caption length (little padding) and shuffles the batch order. Batches are
    padded to a multiple of 4 steps, so the training step traces few shapes.
    Features stay one float16 array in memory; a batch gathers its images' rows.
    """

    def __init__(self, features, image_index, input_ids, label_ids, batch_size=64,
                 shuffle=True, seed=0):
        self.features, self.image_index = features, np.asarray(image_index)
        self.input_ids, self.label_ids = input_ids, label_ids
        self.lengths = (label_ids != PAD_ID).sum(axis=1)
        self.batch_size, self.shuffle = batch_size, shuffle
        self.rng = np.random.default_rng(seed)

    def _batches(self):
        count = len(self.lengths)
        order = self.rng.permutation(count) if self.shuffle else np.arange(count)
        chunk = self.batch_size * 20
        order = np.concatenate([part[np.argsort(self.lengths[part], kind="stable")]
                                for part in np.split(order, range(chunk, count, chunk))])
        batches = np.split(order, range(self.batch_size, count, self.batch_size))
        if self.shuffle:
            self.rng.shuffle(batches)
        return batches

    def __len__(self):
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self):
        for rows in self._batches():
            rows = np.sort(rows)
            steps = int(-(-self.lengths[rows].max() // 4) * 4)
            features = self.features[self.image_index[rows]].astype("float32")
            yield ({"features": features, "tokens": self.input_ids[rows, :steps]},
                   self.label_ids[rows, :steps])

    def as_dataset(self):
        """A `tf.data.Dataset` that reshuffles on every pass (epoch)."""
        cells, channels = self.features.shape[1:]
        signature = ({"features": tf.TensorSpec([None, cells, channels], tf.float32),
                      "tokens": tf.TensorSpec([None, None], tf.int32)},
                     tf.TensorSpec([None, None], tf.int32))
        return tf.data.Dataset.from_generator(self.__iter__, output_signature=signature
                                              ).prefetch(2)


def caption_batches(model, features, captions_per_image, batch_size=64, shuffle=True, seed=0):
    """A dataset of `CaptionBatches` over every caption of every image (features row i = image i)."""
    image_index = [i for i, captions in enumerate(captions_per_image) for _ in captions]
    flat = [c for captions in captions_per_image for c in captions]
    input_ids, label_ids = model.caption_ids(flat)
    width = model.max_caption_length + 1
    pad = lambda ids: np.pad(ids, ((0, 0), (0, width - ids.shape[1])))  # noqa: E731
    return CaptionBatches(features, image_index, pad(input_ids), pad(label_ids), batch_size,
                          shuffle, seed).as_dataset()


def compile_captioner(model, learning_rate=1e-3, label_smoothing=0.1, clipnorm=5.0):
    """Compile the decoder (what trains on cached features) with token-mean cross-entropy."""
    from zoo.tasks.translation import SequenceCrossEntropy

    model.decoder.compile(optimizer=keras.optimizers.Adam(learning_rate, clipnorm=clipnorm),
                          loss=SequenceCrossEntropy(label_smoothing))
    return model


class ValidationBleu(keras.callbacks.Callback):
    """Adds `val_bleu` (BLEU-4, greedy, on cached validation features) to the epoch logs."""

    def __init__(self, captioner, features, references):
        super().__init__()
        self.captioner, self.features, self.references = captioner, features, references

    def on_epoch_end(self, epoch, logs=None):
        from zoo.metrics import bleu_1_to_4

        hypotheses = self.captioner.caption_features(self.features, beam_size=1)
        scores = bleu_1_to_4(hypotheses, self.references)
        if logs is not None:
            logs["val_bleu"] = scores["bleu_4"]
            logs["val_bleu_1"] = scores["bleu_1"]
        print(f"epoch {epoch + 1}: val BLEU-1 {scores['bleu_1']:.1f} BLEU-4 "
              f"{scores['bleu_4']:.1f}  e.g. {hypotheses[0]!r}", flush=True)


class CaptionerHyperModel(keras_tuner.HyperModel):
    """keras-tuner search over units, embedding, attention size, dropout and learning rate.

    `build` returns an `ImageCaptioner` whose decoder is compiled; `fit` trains
    that decoder on cached-feature batches, so a trial never runs the encoder:

    ```python
    hypermodel = CaptionerHyperModel(vocabulary)
    tuner = keras_tuner.RandomSearch(hypermodel, "val_loss", max_trials=4)
    tuner.search(caption_batches(model, train_features, train_captions),
                 validation_data=caption_batches(model, val_features, val_captions,
                                                 shuffle=False),
                 epochs=3)
    ```
    """

    def __init__(self, vocabulary, **fixed):
        super().__init__(name="image_captioner")
        self.vocabulary, self.fixed = vocabulary, fixed

    def build(self, hp):
        model = ImageCaptioner(
            self.vocabulary, units=hp.Choice("units", [256, 384, 512]),
            embedding_dim=hp.Choice("embedding_dim", [128, 256]),
            attention_units=hp.Choice("attention_units", [128, 256]),
            dropout=hp.Float("dropout", 0.2, 0.5, step=0.1), **self.fixed)
        return compile_captioner(model, hp.Float("learning_rate", 3e-4, 3e-3, sampling="log"))

    def fit(self, hp, model, *args, **kwargs):
        return model.decoder.fit(*args, **kwargs)


# --------------------------------------------------------------------------------------
# Architecture, data, training and evaluation
# --------------------------------------------------------------------------------------

_DEMO_VOCABULARY = ["a", "dog", "runs", "in", "the", "snow", "."]


@registry.register_architecture(
    "image-captioner", "captioning",
    "MobileNetV2 (ImageNet) + LSTM decoder with soft attention (or Show and Tell), beam search",
    demo_kwargs=dict(vocabulary=_DEMO_VOCABULARY, embedding_dim=8, units=8, region_dim=8,
                     attention_units=8, max_caption_length=6),
    search_space={"model.units": [256, 384, 512], "model.embedding_dim": [128, 256],
                  "model.attention_units": [128, 256], "model.dropout": (0.2, 0.5, 0.1),
                  "learning_rate": (3e-4, 3e-3, "log")})
def build_image_captioner(vocabulary=(), **kwargs):
    return ImageCaptioner(list(vocabulary), **kwargs)


def load_split(split, limit=None):
    """(image file names, JPEG bytes, 5 captions each) of a Flickr8k split."""
    from zoo import data

    rows = data.load_examples("flickr8k", split)[:limit]
    return ([r["image/filename"] for r in rows], [r["image"] for r in rows],
            [list(r["captions"]) for r in rows])


def ensure_encoder_weights():
    """The converted ImageNet weights, running `recipes/convert_mobilenet_v2.py` if missing."""
    path = encoders.weights_path()
    if not path.exists():
        script = registry.REPO_ROOT / "recipes" / "convert_mobilenet_v2.py"
        print(f"Converting torchvision's MobileNetV2 weights to {path} ...", flush=True)
        subprocess.run([sys.executable, str(script)], check=True)
    return path


def _feature_cache(split, model, weights, limit):
    """Cache file of a split's features: keyed by encoder weights, image size and subset."""
    from zoo.data.settings import cache_dir

    if weights is None:
        return None  # random encoder (smoke runs): nothing worth keeping
    digest = hashlib.sha256(Path(weights).read_bytes()).hexdigest()[:12]
    subset = "" if limit is None else f"-first{limit}"
    return (cache_dir() / "captioning" /
            f"flickr8k-{split}{subset}-mobilenet_v2-{model.image_size}-{digest}.npy")


def evaluate(model, split="test", beam_sizes=(1, 3), limit=None, batch_size=50):
    """BLEU-1..4 (lowercased, 5 references) and speed on a split, from the JPEG bytes.

    The images are encoded once and decoded once per beam size; a beam
    size's `images_per_second` counts decoding the JPEGs, the encoder and
    that search, i.e. what `caption(images, beam_size)` costs. Headline keys
    are beam 3's (`bleu_4`, ...); greedy's carry `greedy_`.
    """
    from zoo.metrics import bleu_1_to_4

    _, images, references = load_split(_split_name(split), limit)
    started = time.perf_counter()
    features = encoder_features(model, images, batch_size=batch_size, dtype="float32")
    encode_seconds = time.perf_counter() - started
    metrics = {"images": len(images)}
    for beam_size in beam_sizes:
        started = time.perf_counter()
        hypotheses = model.caption_features(features, beam_size, batch_size=batch_size)
        seconds = encode_seconds + time.perf_counter() - started
        scores = {k: round(v, 2) for k, v in bleu_1_to_4(hypotheses, references).items()}
        scores["images_per_second"] = round(len(images) / seconds, 1)
        prefix = "greedy_" if beam_size == 1 else ("" if beam_size == 3 else f"beam{beam_size}_")
        metrics.update({prefix + k: v for k, v in scores.items()})
    return metrics


def _split_name(split):
    return {"val": "validation", "dev": "validation"}.get(split, split)


def train(config, run_dir, smoke=False):
    """Train the decoder on cached encoder features; evaluate end to end on the test split."""
    from zoo.training import TrainResult, best_epoch_metrics, fit, reduce_lr_callbacks

    limits = config.get("subset", {}) if smoke else {}
    _, images, captions = load_split("train", limits.get("train"))
    _, val_images, val_captions = load_split("validation", limits.get("validation"))
    vocabulary = build_vocabulary((c.split() for cs in captions for c in cs),
                                  min_count=config.get("min_count", 5))
    model = registry.get_architecture(config["architecture"]).build(
        vocabulary=vocabulary, **config.get("model", {}))
    weights = ensure_encoder_weights() if config.get("encoder_weights", "imagenet") else None
    if weights is not None:
        encoders.load_imagenet_weights(model.encoder, weights)

    started = time.perf_counter()
    features = encoder_features(model, images, _feature_cache("train", model, weights,
                                                              limits.get("train")))
    val_features = encoder_features(model, val_images, _feature_cache(
        "validation", model, weights, limits.get("validation")))
    feature_seconds = time.perf_counter() - started

    compile_captioner(model, config.get("learning_rate", 1e-3), config.get("label_smoothing", 0.1),
                      config.get("clipnorm", 5.0))
    seed, batch_size = config.get("seed", 0), config.get("batch_size", 64)
    bleu_images = config.get("val_bleu_images", len(val_images))
    history = fit(
        model.decoder,
        caption_batches(model, features, captions, batch_size, True, seed),
        caption_batches(model, val_features, val_captions, 256, False),
        epochs=config.get("epochs", 10), run_dir=run_dir, monitor="val_bleu", mode="max",
        patience=config.get("patience", 3),
        callbacks=[ValidationBleu(model, val_features[:bleu_images], val_captions[:bleu_images]),
                   *reduce_lr_callbacks(config, "val_bleu")])

    model = without_training_state(model)
    if smoke:  # the test split is for real runs only
        metrics = evaluate_features(model, val_features, val_captions)
    else:
        metrics = evaluate(model, "test")
    losses = history.history.get("loss", [])
    return TrainResult(
        model=model, metrics=metrics,
        data=f"flickr8k: train ({len(images)} images x 5 captions), model selected on greedy "
             f"validation BLEU-4 ({bleu_images} images), metrics on the official 1,000 test "
             "images (BLEU-1..4, 5 references, lowercased, sacreBLEU 13a, no smoothing)",
        extra={"vocabulary_size": model.word_ids.vocabulary_size,
               "parameters": model.count_params(),
               "trainable_parameters": int(sum(np.prod(w.shape)
                                               for w in model.decoder.trainable_weights)),
               "encoder": "MobileNetV2 1.0 (torchvision ImageNet weights mobilenet_v2-b0353104, "
                          "71.9% top-1), converted by recipes/convert_mobilenet_v2.py, frozen"
               if weights else "MobileNetV2, random weights (smoke run)",
               "feature_caching_s": round(feature_seconds, 1),
               "epochs_run": len(losses),
               "train_loss_history": [round(float(v), 4) for v in losses]},
        validation=best_epoch_metrics(history, "val_bleu", "max"))


def without_training_state(model):
    """A copy with the same weights and no optimizer: the compiled decoder would otherwise
    save its Adam moments (twice its weights) inside the shipped file."""
    fresh = type(model).from_config(model.get_config())
    fresh.set_weights(model.get_weights())
    return fresh


def evaluate_features(model, features, references, beam_sizes=(1,)):
    """BLEU-1..4 of captions decoded from cached features (smoke runs, validation)."""
    from zoo.metrics import bleu_1_to_4

    metrics = {}
    for beam_size in beam_sizes:
        hypotheses = model.caption_features(features, beam_size=beam_size)
        prefix = "greedy_" if beam_size == 1 else ""
        metrics.update({prefix + k: round(v, 2)
                        for k, v in bleu_1_to_4(hypotheses, references).items()})
    return metrics


# --------------------------------------------------------------------------------------
# Fine-tuning a pretrained captioner on a user's images and captions
# --------------------------------------------------------------------------------------

CAPTION_FILES = ("captions.tsv", "captions.txt")
FINE_TUNE_BEAM_SIZE = 3  # the beam of the headline BLEU-4


def _captions_file(data):
    path = Path(data)
    if path.is_dir():
        found = [path / name for name in CAPTION_FILES if (path / name).is_file()]
        if not found:
            raise FileNotFoundError(f"{path} has no {' or '.join(CAPTION_FILES)} "
                                    "(lines of image<TAB>caption)")
        return found[0]
    if not path.is_file():
        raise FileNotFoundError(f"Captioning data not found: {path} (give a folder of images "
                                "with captions.tsv, or the captions file)")
    return path


def _tokenized(caption):
    """Lowercased, punctuation split off: the style the models learned (Flickr8k's "runs .")."""
    return " ".join(re.sub(r"([.,!?;:])", r" \1 ", caption.lower()).split())


def read_captioned_images(data):
    """(image paths, captions per image) from a folder with captions.tsv/.txt, or that file.

    Each line is `image<TAB>caption`; an image may have several lines (several
    references). Flickr8k's token format (`name.jpg#0<TAB>caption`) works as is.
    Images are looked up beside the captions file, then in an `images/` folder
    there; missing images and lines without a tab are errors naming them.
    """
    path = _captions_file(data)
    captions = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or (number == 1 and line.lower().startswith("image\t")):
            continue
        if "\t" not in line:
            raise ValueError(f"{path}:{number}: expected image<TAB>caption")
        image, caption = line.split("\t", 1)
        image = re.sub(r"#\d+$", "", image.strip())  # Flickr8k numbers each image's captions
        captions.setdefault(image, []).append(_tokenized(caption))
    images = [_image_path(path.parent, name) for name in captions]
    missing = [name for name, image in zip(captions, images) if image is None]
    if missing:
        raise FileNotFoundError(f"{len(missing)} images of {path} not found beside it or in "
                                f"images/: {', '.join(missing[:5])}")
    if len(images) < 2:
        raise ValueError(f"{path}: need captions for at least 2 images, found {len(images)}")
    return [str(image) for image in images], list(captions.values())


def _image_path(folder, name):
    for candidate in (folder / name, folder / "images" / name):
        if candidate.is_file():
            return candidate
    return None


def extend_vocabulary(model, captions, min_count=2):
    """A copy of `model` that also knows the new words of `captions` (seen >= min_count).

    The word embedding and the output layer keep their trained rows (see
    `zoo.training.copy_weights_growing_vocabulary`); the encoder is copied as is.
    """
    from zoo.training import copy_weights_growing_vocabulary

    known = set(model.vocabulary) | {START_TOKEN, END_TOKEN}
    new_words = [w for w in build_vocabulary((c.split() for c in captions), min_count)
                 if w not in known]
    if not new_words:
        return model
    bigger = type(model).from_config({**model.get_config(),
                                      "vocabulary": model.vocabulary + new_words})
    copy_weights_growing_vocabulary(model, bigger, {"word_embedding", "logits"})
    return bigger


def fine_tune(model, data_path, run_dir, epochs=3, learning_rate=1e-4, holdout=0.2,
              extend=False, freeze_encoder=False, seed=0):
    """Fine-tune a pretrained captioner on a user's images; returns (model, metrics).

    `data_path` is a folder of images with `captions.tsv` (or the captions file;
    see `read_captioned_images`). A `holdout` fraction of the images is captioned
    (beam 3) and scored with BLEU-4 before and after. As in training, the frozen
    CNN encodes each image once and the decoder trains on those features;
    `freeze_encoder` also keeps the image side of the decoder (region projection,
    initial state) fixed, so only the language side adapts.
    `zoo train --from caption-mobilenetv2-lstm-attention-flickr8k --data my_photos/`
    runs this.
    """
    from zoo.training import fit, holdout_split

    images, captions = read_captioned_images(data_path)
    train_rows, held_rows = holdout_split(list(zip(images, captions)), holdout, seed)
    (train_images, train_captions), (held_images, held_captions) = (
        [list(column) for column in zip(*rows)] for rows in (train_rows, held_rows))
    features = encoder_features(model, train_images)
    held_features = encoder_features(model, held_images)
    before = _holdout_bleu_4(model, held_features, held_captions)
    if extend:
        model = extend_vocabulary(model, [c for cs in train_captions for c in cs])
    if freeze_encoder:
        for name in ("region_projection", "init_h", "init_c"):
            model.decoder.get_layer(name).trainable = False
    compile_captioner(model, learning_rate)
    fit(model.decoder, caption_batches(model, features, train_captions, 32, True, seed),
        caption_batches(model, held_features, held_captions, 256, False), epochs=epochs,
        run_dir=run_dir)
    model = without_training_state(model)
    return model, {"holdout_bleu_4_before": before,
                   "holdout_bleu_4": _holdout_bleu_4(model, held_features, held_captions),
                   "train_images": len(train_images), "holdout_images": len(held_images)}


def _holdout_bleu_4(model, features, references):
    return evaluate_features(model, features, references, (FINE_TUNE_BEAM_SIZE,))["bleu_4"]


# --------------------------------------------------------------------------------------
# Rendering, examples and registration
# --------------------------------------------------------------------------------------


def plot_attention(row, path, columns=4):
    """Save the image and, per generated word, where the model looked (7x7 grid) as a PNG.

    `row` is one `caption(..., details=True)` result. Each word's attention
    weights (summing to 1 over the grid) are upsampled bilinearly over the
    image; a model without attention gets the image and its caption.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    maps = row.get("attention")
    words = row["words"] if maps is not None else []
    panels = 1 + len(words)
    rows = -(-panels // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.2 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    axes.flat[0].imshow(row["image"])
    axes.flat[0].set_title("\n".join(_wrap(row["caption"], 30)), fontsize=9)
    height, width = row["image"].shape[:2]
    for axis, word, weights in zip(axes.flat[1:], words, maps if maps is not None else []):
        axis.imshow(row["image"])
        axis.imshow(weights, cmap="gray", alpha=0.6, interpolation="bilinear",
                    extent=(0, width, height, 0))
        axis.set_title(word or "<end>", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _wrap(text, width):
    import textwrap

    return textwrap.wrap(text, width) or [""]


def render(model, inputs, beam_size=3, plot=None, **_):
    rows = model.caption(list(inputs), beam_size=beam_size, details=True)
    lines = [f"{image}\n  -> {row['caption']}" for image, row in zip(inputs, rows)]
    if plot and rows:
        plot_attention(rows[0], plot)
        lines.append(f"{'attention of the first image' if model.attention else 'first image'}"
                     f" saved to {plot}")
    return lines


def examples(spec=None):
    return [str(p) for p in sorted(EXAMPLES_DIR.glob("flickr8k_*.jpg"))]


registry.register_task(registry.TaskHandler(
    name="captioning", evaluate=lambda model, spec, split="test": evaluate(model, split),
    render=render, examples=examples, train=train, fine_tune=fine_tune))

registry.register_pretrained(registry.ModelSpec(
    name="caption-mobilenetv2-lstm-attention-flickr8k", architecture="image-captioner",
    task="captioning", dataset="flickr8k",
    recipe="recipes/caption_mobilenetv2_lstm_attention_flickr8k.py", metric="bleu_4",
    summary="MobileNetV2 (ImageNet) + LSTM with soft attention, Flickr8k (BLEU-4, beam 3)"))
