"""Text batching (length buckets, post padding, empty strings) and image decoding."""

import numpy as np
import pytest
import tensorflow as tf

import zoo.data
from zoo.data.images import decode_image, image_batches, load_image
from zoo.data.pipeline import default_bucket_boundaries, text_batches

TEXTS = ["show flights", "", "to boston now please", "a", "from denver to boston on monday morning"]
TAGS = [[1, 2], [], [3, 0, 4, 5], [6], [7, 8, 9, 10, 11, 12, 13]]


def collect(dataset):
    """All (text, label-row) pairs of a batched dataset, with the labels' batch shapes."""
    rows, shapes = [], []
    for texts, labels in dataset:
        shapes.append(tuple(labels.shape))
        rows.extend(zip((t.decode() for t in texts.numpy()), labels.numpy().tolist()))
    return rows, shapes


def test_label_sequences_are_padded_post_with_zero():
    texts, tags = next(iter(text_batches(TEXTS, TAGS, batch_size=8, bucket_by_length=False)))
    assert tags.numpy().tolist() == [
        [1, 2, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0],
        [3, 0, 4, 5, 0, 0, 0],
        [6, 0, 0, 0, 0, 0, 0],
        [7, 8, 9, 10, 11, 12, 13],
    ]
    assert texts.numpy().tolist()[1] == b""


@pytest.mark.parametrize("bucket_by_length", [True, False])
def test_every_example_survives_batching_unchanged(bucket_by_length):
    rows, _ = collect(text_batches(TEXTS, TAGS, batch_size=2, bucket_by_length=bucket_by_length))
    assert len(rows) == len(TEXTS)
    for text, padded in rows:
        tags = TAGS[TEXTS.index(text)]
        assert padded[: len(tags)] == tags and not any(padded[len(tags) :])


def test_empty_string_is_kept_in_its_batch():
    rows, _ = collect(
        text_batches(["", "", "x y"], [[], [], [1, 2]], batch_size=2, bucket_by_length=True)
    )
    assert [text for text, _ in rows].count("") == 2


def test_buckets_group_similar_lengths():
    texts = [" ".join(["w"] * n) for n in (1, 30, 2, 31, 1, 29, 3, 33)]
    for batch in text_batches(texts, batch_size=4, bucket_boundaries=[4, 16]):
        lengths = [len(t.split()) for t in batch.numpy().astype(str)]
        assert max(lengths) < 4 or min(lengths) >= 16


def test_texts_only_and_scalar_labels():
    texts = [
        t for batch in text_batches(["a", "b c", ""], batch_size=4) for t in batch.numpy().tolist()
    ]
    assert sorted(texts) == [b"", b"a", b"b c"]
    texts, labels = next(
        iter(text_batches(["a", "b"], [1, 0], batch_size=4, bucket_by_length=False))
    )
    assert labels.numpy().tolist() == [1, 0]


def test_string_targets_and_string_tags_pad_with_empty_string():
    _, targets = next(
        iter(text_batches(["a b", ""], ["ein b", ""], batch_size=4, bucket_by_length=False))
    )
    assert targets.numpy().tolist() == [b"ein b", b""]
    _, tags = next(
        iter(
            text_batches(["a b", "c"], [["B-x", "O"], ["O"]], batch_size=4, bucket_by_length=False)
        )
    )
    assert tags.numpy().tolist() == [[b"B-x", b"O"], [b"O", b""]]


def test_dict_labels_for_joint_tagging_and_intent():
    labels = {"slots": TAGS, "intent": [0, 1, 2, 3, 4]}
    for texts, batch in text_batches(TEXTS, labels, batch_size=2):
        assert batch["slots"].shape[0] == batch["intent"].shape[0] == texts.shape[0]
        for text, intent, slots in zip(
            texts.numpy(), batch["intent"].numpy(), batch["slots"].numpy()
        ):
            assert TEXTS.index(text.decode()) == intent
            assert slots.tolist()[: len(TAGS[intent])] == TAGS[intent]


def test_shuffle_is_seeded_and_complete():
    texts = [f"t{i}" for i in range(50)]

    def order(seed):
        batches = text_batches(texts, batch_size=8, shuffle=True, seed=seed)
        return [text for batch in batches for text in batch.numpy()]

    assert order(3) == order(3)
    assert sorted(order(3)) == sorted(t.encode() for t in texts)
    assert order(3) != order(4)


def test_drop_remainder_and_default_boundaries():
    batches = list(
        text_batches(["a"] * 5, batch_size=2, drop_remainder=True, bucket_by_length=False)
    )
    assert [b.shape[0] for b in batches] == [2, 2]
    assert default_bucket_boundaries(["a " * 40, "b"]) == [2, 4, 8, 16, 32, 64]
    assert default_bucket_boundaries([""]) == [2]


def test_works_on_real_dataset_examples():
    data = zoo.data.data_root()
    if not data.is_dir():
        pytest.skip("offline data folder missing")
    atis = zoo.data.load_examples("atis", "validation")
    texts = [" ".join(e["tokens"]) for e in atis]
    tag_ids = [[len(t) for t in e["slots"]] for e in atis]  # any ints will do
    rows, shapes = collect(text_batches(texts, tag_ids, batch_size=64))
    assert len(rows) == 500 and all(shape[0] <= 64 for shape in shapes)


# --- images ---------------------------------------------------------------


def encode_png(array):
    return tf.io.encode_png(tf.constant(array, tf.uint8)).numpy()


def flickr_image():
    path = zoo.data.data_root() / "flickr8k" / "images" / "1000268201_693b08cb0e.jpg"
    if not path.is_file():
        pytest.skip("offline Flickr8k images missing")
    return path


def test_jpeg_path_and_bytes_decode_the_same():
    path = flickr_image()
    from_path = load_image(path)
    from_bytes = load_image(path.read_bytes())
    assert from_path.shape == (224, 224, 3) and from_path.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(from_path)) and float(tf.reduce_max(from_path)) <= 255.0
    np.testing.assert_array_equal(from_path.numpy(), from_bytes.numpy())
    assert load_image(str(path), size=(96, 128)).shape == (96, 128, 3)


def test_grayscale_1x1_becomes_resized_rgb():
    image = load_image(encode_png([[[200]]]), size=32)
    assert image.shape == (32, 32, 3)
    np.testing.assert_allclose(image.numpy(), 200.0)


def test_rgba_png_drops_alpha():
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 10
    image = load_image(encode_png(rgba), size=8)
    assert image.shape == (8, 8, 3)
    np.testing.assert_allclose(image.numpy()[..., 0], 255.0)


def test_corrupt_and_non_image_input_raise_value_error_naming_the_file(tmp_path):
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + b"not really a jpeg" * 10)
    with pytest.raises(ValueError, match="broken.jpg"):
        load_image(corrupt)
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    with pytest.raises(ValueError, match="notes.txt"):
        load_image(str(text_file))
    with pytest.raises(ValueError, match="Cannot decode image"):
        load_image(b"")
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(TypeError):
        load_image(123)


def test_truncated_jpeg_is_rejected():
    data = flickr_image().read_bytes()
    with pytest.raises(ValueError):
        load_image(data[: len(data) // 3])


def test_image_batches_from_paths_and_bytes():
    path = flickr_image()
    images, captions = next(
        iter(image_batches([path, str(path), path], ["a", "b", "c"], size=64, batch_size=2))
    )
    assert images.shape == (2, 64, 64, 3) and captions.numpy().tolist() == [b"a", b"b"]
    only_images = next(iter(image_batches([encode_png([[[1, 2, 3]]])], size=16)))
    assert only_images.shape == (1, 16, 16, 3)


def test_decode_image_runs_in_a_tf_function():
    decode = tf.function(lambda contents: decode_image(contents, 20))
    assert decode(tf.constant(encode_png([[[9]]]))).shape == (20, 20, 3)
