"""Export pretrained models for serving without the zoo installed.

A SavedModel's `serve` signature takes the same raw inputs as the Keras model
(strings for text models) and returns its outputs; tasks with decoding inside
(translation, captioning) provide their own `serving_function`.
"""

from pathlib import Path

import keras
import tensorflow as tf

from zoo.layers import native


def _input_signature(model):
    return [tf.TensorSpec(shape=t.shape, dtype=t.dtype, name=t.name.split(":")[0])
            for t in model.inputs]


def export(model, path, format="saved_model"):
    """Write `model` to `path` as a TF SavedModel with a `serve` endpoint; returns the path."""
    if format != "saved_model":
        raise ValueError(f"Unsupported export format {format!r}; use 'saved_model'.")
    path = Path(path)
    archive = keras.export.ExportArchive()
    archive.track(model)
    serving = getattr(model, "serving_function", None)
    # TF's own ops only: the zoo's native kernels would tie the SavedModel to the zoo.
    with native.left_out():
        if serving is not None:
            function, signature = serving()
            archive.add_endpoint("serve", function, input_signature=signature)
        else:
            signature = _input_signature(model)
            archive.add_endpoint("serve", lambda *x: model(*x, training=False),
                                 input_signature=signature)
        archive.write_out(str(path), verbose=False)
    return path
