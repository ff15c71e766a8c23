"""Captioning: encoder parity with torch, attention, decoding, odd images, saving, smoke recipe."""

import os
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo import decoding, encoders, registry
from zoo.layers import cudnn_ineligibility, iter_recurrent_layers
from zoo.tasks import captioning

FIXTURE = Path(__file__).parent / "fixtures" / "mobilenet_v2_torch_reference.npz"
PRETRAINED = "caption-mobilenetv2-lstm-attention-flickr8k"
EXAMPLES = captioning.examples()
CAPTIONS = ["a dog runs in the snow .", "a man in a red helmet .", "two dogs swim .",
            "a girl is smiling .", "a man rides a bike .", "a brown dog in the water ."]


def tiny_model(**overrides):
    kwargs = dict(registry.get_architecture("image-captioner").demo_kwargs)
    kwargs.update(vocabulary=captioning.build_vocabulary(c.split() for c in CAPTIONS), **overrides)
    return zoo.create("image-captioner", **kwargs)


@pytest.fixture(scope="module")
def trained():
    """A tiny decoder fitted on six random 'images', so decoding is not degenerate."""
    keras.utils.set_random_seed(0)
    model = captioning.compile_captioner(
        tiny_model(units=32, embedding_dim=16, region_dim=32, attention_units=16, dropout=0.0,
                   max_caption_length=8), learning_rate=2e-2, label_smoothing=0.0)
    features = np.random.default_rng(0).normal(size=(6, *model.grid_shape)).astype("float32")
    batches = captioning.caption_batches(model, features, [[c] for c in CAPTIONS],
                                         batch_size=6, shuffle=False)
    model.decoder.fit(batches, epochs=60, verbose=0)
    return model, features


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    """Odd image files: PNG, grayscale JPEG, 1x1 pixel, corrupt JPEG, a text file."""
    folder = tmp_path_factory.mktemp("images")
    rgb = tf.cast(tf.random.uniform((40, 60, 3), 0, 255, seed=1), tf.uint8)
    files = {
        "png": tf.io.encode_png(rgb),
        "gray": tf.io.encode_jpeg(tf.image.rgb_to_grayscale(rgb)),
        "pixel": tf.io.encode_jpeg(tf.constant([[[200, 30, 30]]], tf.uint8)),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name}.{'png' if name == 'png' else 'jpg'}"
        paths[name].write_bytes(data.numpy())
    paths["corrupt"] = folder / "corrupt.jpg"
    paths["corrupt"].write_bytes(Path(EXAMPLES[0]).read_bytes()[:300])
    paths["text"] = folder / "notes.txt"
    paths["text"].write_text("not an image")
    return paths


# -- The encoder is torchvision's MobileNetV2 ------------------------------------------


def _converted_encoder():
    """The ImageNet encoder: the shipped captioner's, else the conversion cache's."""
    if registry.get_pretrained(PRETRAINED).is_trained:
        return zoo.load(PRETRAINED).encoder
    if encoders.weights_path().exists():
        return encoders.load_imagenet_weights(encoders.mobilenet_v2())
    pytest.skip("no converted weights: train the captioner or run recipes/convert_mobilenet_v2.py")


def test_encoder_matches_torch_reference_outputs():
    reference = np.load(FIXTURE)
    folder = Path(EXAMPLES[0]).parent
    images = np.stack([_load(folder / name) for name in reference["images"]])
    grid = _converted_encoder().predict(images, verbose=0)  # [B, 7, 7, 1280]
    np.testing.assert_allclose(grid.mean(axis=(1, 2)), reference["pooled"], atol=1e-3)
    np.testing.assert_allclose(grid[..., :64], reference["grid"], atol=1e-3)
    if encoders.weights_path().exists():  # the classifier is only in the cache
        classifier = encoders.load_imagenet_weights(encoders.mobilenet_v2(include_top=True))
        logits = classifier.predict(images, verbose=0)
        np.testing.assert_allclose(logits, reference["logits"], atol=1e-3)


def _load(path):
    from zoo.data.images import load_image

    return load_image(str(path)).numpy()


def test_state_dict_mapping_covers_every_layer():
    model = encoders.mobilenet_v2(include_top=True)
    names = {layer.name.replace("_", ".") for layer in model.layers
             if layer.weights and not isinstance(layer, keras.layers.Normalization)}
    assert len(names) == 52 + 52 + 1  # 52 convs, 52 batch norms, the classifier
    with pytest.raises(KeyError, match="features.0.0"):
        encoders.load_torchvision_weights(model, {})


# -- Decoder: cuDNN, attention, decoding --------------------------------------------------


@pytest.mark.parametrize("attention", ["additive", "multiplicative", None])
def test_lstm_is_stock_and_cudnn_eligible(attention):
    layers = list(iter_recurrent_layers(tiny_model(attention=attention)))
    assert [type(layer) for layer in layers] == [keras.layers.LSTM]
    assert cudnn_ineligibility(layers[0]) == []


@pytest.mark.parametrize("beam_size", [1, 3])
def test_attention_is_a_distribution_over_the_grid(trained, beam_size):
    model, _ = trained
    for row in model.caption(EXAMPLES[:2], beam_size=beam_size, details=True):
        assert row["attention"].shape == (len(row["words"]), 7, 7)
        np.testing.assert_allclose(row["attention"].sum(axis=(1, 2)), 1.0, atol=1e-5)
        assert np.all(row["attention"] >= 0)


def test_beam_size_one_equals_greedy(trained):
    model, features = trained
    image, state = model._decoder_inputs(tf.constant(features))
    start = tf.fill([len(features)], captioning.START_ID)
    common = dict(end_id=captioning.END_ID, max_length=10, pad_id=captioning.PAD_ID,
                  constants=image)
    greedy = decoding.greedy_search(model._step_function(), state, start, **common)
    beam = decoding.beam_search(model._step_function(), state, start, beam_size=1, **common)
    np.testing.assert_array_equal(beam["tokens"][:, 0], greedy["tokens"])
    np.testing.assert_allclose(beam["log_probs"][:, 0], greedy["scores"], atol=1e-4)
    np.testing.assert_allclose(beam["extras"]["attention"][:, 0],
                               greedy["extras"]["attention"], atol=1e-6)
    assert model.caption_features(features, beam_size=1) == CAPTIONS


def test_beam_search_finds_at_least_the_greedy_score(trained):
    model, features = trained
    greedy = model.decode_features(tf.constant(features), beam_size=1)["scores"].numpy()
    beam = model.decode_features(tf.constant(features), beam_size=3)["scores"].numpy()
    assert np.all(beam >= greedy - 1e-4)


def test_show_and_tell_variant_has_no_attention():
    model = tiny_model(attention=None)
    row = model.caption(EXAMPLES[0], beam_size=2, details=True)
    assert isinstance(row["caption"], str) and "attention" not in row
    assert "attention" not in [layer.name for layer in model.decoder.layers]


# -- End to end: odd images, saving, plotting ----------------------------------------------


def test_odd_images_get_captions(trained, image_files):
    model, _ = trained
    inputs = [image_files["png"], str(image_files["gray"]), image_files["pixel"],
              image_files["png"].read_bytes()]
    captions = model.caption(inputs, beam_size=2)
    assert len(captions) == 4 and all(isinstance(c, str) for c in captions)


@pytest.mark.parametrize("kind,error", [("corrupt", ValueError), ("text", ValueError),
                                        ("missing", FileNotFoundError)])
def test_bad_files_raise_a_clear_error_naming_the_file(trained, image_files, kind, error):
    model, _ = trained
    path = image_files.get(kind, image_files["png"].parent / "missing.jpg")
    with pytest.raises(error, match=Path(path).name):
        model.caption([EXAMPLES[0], str(path)])
    with pytest.raises(ValueError, match="bytes of image data"):
        model.caption(b"\x00\x01 not an image")


def test_saved_model_reloads_and_captions_the_same(trained, tmp_path):
    model, _ = trained
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert isinstance(reloaded, captioning.ImageCaptioner)
    assert reloaded.caption(EXAMPLES, beam_size=3) == model.caption(EXAMPLES, beam_size=3)
    assert not reloaded.encoder.trainable


def test_render_plots_per_word_attention(trained, tmp_path):
    model, _ = trained
    lines = captioning.render(model, EXAMPLES[:1], plot=str(tmp_path / "attention.png"))
    assert EXAMPLES[0] in lines[0] and (tmp_path / "attention.png").stat().st_size > 10_000


def test_teacher_forced_call_shapes():
    model = tiny_model()
    images = tf.constant(model.load_images(EXAMPLES[:2]))
    logits = model({"images": images, "captions": tf.constant(["a dog runs", "two dogs"])})
    assert logits.shape == (2, 4, model.word_ids.vocabulary_size)  # <start> + 3 words


def test_smoke_recipe_runs(tmp_path):
    from zoo.training import load_recipe, run_recipe

    config = load_recipe("recipes/caption_mobilenetv2_lstm_attention_flickr8k.py")
    card = run_recipe(config, ["--smoke", "--output", str(tmp_path)])
    assert card["smoke"] is True and set(card["metrics"]) >= {"greedy_bleu_1", "greedy_bleu_4"}
    reloaded = keras.saving.load_model(tmp_path / config["name"] / "model.keras", safe_mode=True)
    assert isinstance(reloaded.caption(EXAMPLES[0], beam_size=2), str)


def test_examples_ship_with_the_package():
    assert len(EXAMPLES) >= 2 and all(os.path.getsize(p) < 30_000 for p in EXAMPLES)


# -- Fine-tuning on a user's folder of images and captions ------------------------------


def _flickr8k_test_folder(folder, count, style="a photo of {}"):
    """`count` official test images (linked into folder/images/) and their captions in
    Flickr8k's token format, rewritten in a house `style` the shipped model never saw."""
    from zoo.data.settings import data_root

    flickr = data_root() / "flickr8k"
    if not (flickr / "Flickr8k.token.txt").exists():
        pytest.skip(f"no Flickr8k at {flickr}")
    names = (flickr / "Flickr_8k.testImages.txt").read_text().split()[:count]
    (folder / "images").mkdir(parents=True)
    for name in names:
        (folder / "images" / name).symlink_to(flickr / "images" / name)
    lines = [line for line in (flickr / "Flickr8k.token.txt").read_text().splitlines()
             if line.split("#")[0] in names]
    (folder / "captions.tsv").write_text("image\tcaption\n" + "".join(
        f"{key}\t{style.format(caption)}\n" for key, caption in (row.split("\t") for row in lines)))
    return folder


def test_fine_tuning_the_shipped_captioner_on_a_folder_raises_held_out_bleu(tmp_path, trained_spec):
    """Captions in a house style ("a photo of ..."): 30 images, 3 epochs; 10 held out."""
    from zoo.training import run_fine_tune

    trained_spec(PRETRAINED)
    folder = _flickr8k_test_folder(tmp_path / "photos", 40)
    keras.utils.set_random_seed(0)
    card = run_fine_tune(["--from", PRETRAINED, "--data", str(folder), "--epochs", "3",
                          "--learning-rate", "1e-3", "--holdout", "0.25",
                          "--output", str(tmp_path / "models")])
    metrics = card["metrics"]
    assert (metrics["train_images"], metrics["holdout_images"]) == (30, 10)
    assert metrics["holdout_bleu_4"] > metrics["holdout_bleu_4_before"] + 5
    assert (tmp_path / "models" / f"{PRETRAINED}-finetuned" / "model.keras").exists()


def test_extended_vocabulary_keeps_the_trained_rows(trained):
    model, features = trained
    bigger = captioning.extend_vocabulary(model, ["a zebra grazes .", "two zebras and a zebra ."])
    assert bigger.vocabulary == model.vocabulary + ["zebra"]  # "zebras" was seen only once
    for name in ("word_embedding", "logits"):
        old = model.decoder.get_layer(name).get_weights()[0]
        new = bigger.decoder.get_layer(name).get_weights()[0]
        rows = tuple(slice(0, n) for n in old.shape)
        np.testing.assert_array_equal(new[rows], old)
    np.testing.assert_array_equal(bigger.encoder.get_weights()[0], model.encoder.get_weights()[0])
    assert bigger.caption_features(features, beam_size=2) == model.caption_features(features,
                                                                                    beam_size=2)


def test_captions_folder_formats_and_clear_errors(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    first, second = (Path(p).name for p in EXAMPLES[:2])
    for name in (first, second):
        (folder / name).write_bytes(Path(EXAMPLES[0]).parent.joinpath(name).read_bytes())
    (folder / "captions.txt").write_text(
        f"{first}#0\tA dog runs.\n{first}#1\tTwo dogs, running!\n\n{second}\ta man\n")
    images, captions = captioning.read_captioned_images(folder)
    assert images == [str(folder / first), str(folder / second)]
    assert captions == [["a dog runs .", "two dogs , running !"], ["a man"]]
    assert captioning.read_captioned_images(folder / "captions.txt") == (images, captions)

    (folder / "captions.txt").write_text(f"{first}\ta dog\nghost.jpg\ta cat\n")
    with pytest.raises(FileNotFoundError, match="1 images of .* not found.*ghost.jpg"):
        captioning.read_captioned_images(folder)
    (folder / "captions.txt").write_text(f"{first} a dog without a tab\n")
    with pytest.raises(ValueError, match=r"captions.txt:1: expected image<TAB>caption"):
        captioning.read_captioned_images(folder)
    with pytest.raises(FileNotFoundError, match="has no captions.tsv or captions.txt"):
        captioning.read_captioned_images(tmp_path)
