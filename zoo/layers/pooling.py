"""Mask-aware pooling over time."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="zoo")
class MaskedGlobalPooling(keras.layers.Layer):
    """Pool [B, T, D] over unmasked steps: "max", "mean" or "last" (last unmasked step).

    Padding never wins a max or dilutes a mean. Masks are right-padded with at
    least one unmasked step per row (the zoo's text front ends guarantee it).
    """

    def __init__(self, mode="max", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("max", "mean", "last"):
            raise ValueError(f"mode must be 'max', 'mean' or 'last', got {mode!r}")
        self.mode = mode
        self.supports_masking = True

    def call(self, x, mask=None):
        if mask is None:
            mask = ops.ones(ops.shape(x)[:2], dtype="bool")
        weights = ops.cast(mask, x.dtype)[..., None]
        if self.mode == "max":
            return ops.max(ops.where(weights > 0, x, ops.cast(-1e9, x.dtype)), axis=1)
        if self.mode == "mean":
            return ops.sum(x * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)
        last = ops.maximum(ops.sum(ops.cast(mask, "int32"), axis=1) - 1, 0)
        return ops.take_along_axis(x, last[:, None, None], axis=1)[:, 0]

    def compute_mask(self, x, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def get_config(self):
        config = super().get_config()
        config["mode"] = self.mode
        return config
