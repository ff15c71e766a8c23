"""Images for captioning: decode JPEG/PNG/GIF/BMP bytes or files, resize, batch.

Outputs are float32 RGB in [0, 255]; each encoder applies its own
preprocessing (e.g. `keras.applications.mobilenet.preprocess_input`).

>>> image = load_image("flickr8k/images/1000268201_693b08cb0e.jpg")   # doctest: +SKIP
>>> image.shape, image.dtype
(TensorShape([224, 224, 3]), tf.float32)
"""

import os
import re

import tensorflow as tf


def _size_pair(size):
    return (size, size) if isinstance(size, int) else tuple(size)


def decode_image(contents, size=224):
    """Graph-friendly decode: encoded image bytes -> float32 [h, w, 3] in [0, 255].

    Grayscale becomes 3 channels, alpha is dropped, any input size (1x1
    included) is resized bilinearly to `size` (int or (height, width)).
    Usable inside `tf.data` maps and `tf.function`s.
    """
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    image = tf.image.resize(tf.cast(image, tf.float32), _size_pair(size))
    return tf.clip_by_value(image, 0.0, 255.0)


def _read(image):
    """(bytes, name for errors) from a path or from bytes."""
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Image file not found: {path}")
        with open(path, "rb") as file:
            return file.read(), path
    if isinstance(image, (bytes, bytearray, memoryview)):
        contents = bytes(image)
        return contents, f"<{len(contents)} bytes of image data>"
    raise TypeError(
        f"Expected an image file path or encoded image bytes, got {type(image).__name__}."
    )


def _reason(error):
    """TF's error text without the op/device decorations."""
    text = re.sub(r"\{\{.*?\}\}|\[Op:\w+\]", "", error.message or "").strip()
    return text or "not a decodable image"


def load_image(image, size=224):
    """Decode one image (a path or encoded bytes) to float32 [size, size, 3].

    Args:
        image: a file path (str or PathLike) or the encoded bytes of a JPEG,
            PNG, GIF or BMP image.
        size: output size, an int or (height, width).

    Returns:
        A float32 tensor of shape (height, width, 3) with values in [0, 255].

    Raises:
        ValueError: the data are not a decodable image (names the file).
        FileNotFoundError: the path does not exist.
    """
    contents, name = _read(image)
    try:
        return decode_image(contents, size)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        raise ValueError(f"Cannot decode image {name}: {_reason(error)}") from None


def image_batches(images, targets=None, *, size=224, batch_size=32, shuffle=False, seed=None):
    """Batch images (all paths, or all encoded bytes) with optional targets.

    Decoding runs inside `tf.data` (parallel, no Python), so a corrupt file
    raises `InvalidArgumentError` when its batch is read; check unknown files
    with `load_image` first.

    Args:
        images: list of file paths or list of encoded image bytes.
        targets: None, or one target per image (e.g. caption strings), or a
            dict of such columns.
        size: output image size, int or (height, width).
        batch_size, shuffle, seed: as in `zoo.data.pipeline.text_batches`.

    Returns:
        A `tf.data.Dataset` of float32 [batch, h, w, 3] images, or of
        `(images, targets)` pairs.
    """
    images = [os.fspath(item) if isinstance(item, os.PathLike) else item for item in images]
    from_paths = bool(images) and isinstance(images[0], str)
    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(images, dtype=tf.string))
    if targets is not None:
        dataset = tf.data.Dataset.zip((dataset, tf.data.Dataset.from_tensor_slices(targets)))
    if shuffle:
        dataset = dataset.shuffle(max(len(images), 1), seed=seed, reshuffle_each_iteration=True)

    def decode(image, *target):
        contents = tf.io.read_file(image) if from_paths else image
        decoded = decode_image(contents, size)
        return (decoded, *target) if target else decoded

    dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
