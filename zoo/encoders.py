"""ImageNet image encoders: a Keras MobileNetV2 that computes exactly what torchvision's does.

No `keras.applications` ImageNet weights can be downloaded here, but
torchvision's MobileNetV2 checkpoint (`mobilenet_v2-b0353104.pth`, 71.9% top-1)
can. `mobilenet_v2()` rebuilds that network layer for layer, with one Keras
layer per torchvision module, named after its module path
(`features.2.conv.1.0` -> `features_2_conv_1_0`), so `load_torchvision_weights`
maps a state dict onto it by name. Three details make the two agree to float
round-off rather than approximately:

* **Padding.** torchvision pads every 3x3 convolution by one pixel on each
  side. For stride 1 that is Keras' `"same"`; for stride 2 `"same"` pads only
  bottom/right, which shifts the sampling grid by a pixel. Stride-2 layers
  therefore use `ZeroPadding2D(1)` followed by a `"valid"` convolution.
* **BatchNorm** epsilon 1e-5 (Keras defaults to 1e-3), activations ReLU6.
* **Preprocessing** inside the model: RGB in [0, 255] ->
  `(x / 255 - mean) / std` with ImageNet's mean (0.485, 0.456, 0.406) and
  std (0.229, 0.224, 0.225).

The converted weights live in the zoo cache (`$ZOO_CACHE_DIR`, default
`~/.cache/zoo`) as an `.npz` of the state dict's arrays (no pickle);
`recipes/convert_mobilenet_v2.py` writes them and checks the Keras logits
against a pure-`torch.nn.functional` forward pass. The zoo never imports torch.

Example:

```python
from zoo import encoders
encoder = encoders.mobilenet_v2()                  # 224x224x3 in [0, 255] -> [B, 7, 7, 1280]
encoders.load_imagenet_weights(encoder)            # needs the converted cache file
grid = encoder(images)                             # the captioner's 49 image regions
classifier = encoders.mobilenet_v2(include_top=True)   # -> [B, 1000] ImageNet logits
```
"""

from pathlib import Path

import keras
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BATCH_NORM_EPSILON = 1e-5
# (expansion t, output channels c, repeats n, first stride s) of Sandler et al. (2018), Table 2.
INVERTED_RESIDUAL_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                              (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
FEATURE_CHANNELS = 1280
NUM_IMAGENET_CLASSES = 1000
WEIGHTS_FILE = "mobilenet_v2_imagenet_torchvision.npz"


def imagenet_normalization(name="imagenet_normalization"):
    """RGB in [0, 255] -> torchvision's input: `(x / 255 - mean) / std` per channel."""
    return keras.layers.Normalization(
        mean=[255.0 * m for m in IMAGENET_MEAN],
        variance=[(255.0 * s) ** 2 for s in IMAGENET_STD], name=name)


def _conv_bn(x, filters, kernel_size, stride, name, depthwise=False, activation=True):
    """Conv (or depthwise conv) without bias -> BatchNorm -> ReLU6, torchvision's padding.

    `name` is the torch module path with "_" for "."; the conv is `{name}_0`
    and the norm `{name}_1`, like torchvision's `Conv2dNormActivation`.
    """
    padding = "same"
    if stride == 2:  # symmetric 1-pixel padding, as torch's padding=1
        x = keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
        padding = "valid"
    if depthwise:
        x = keras.layers.DepthwiseConv2D(kernel_size, stride, padding, use_bias=False,
                                         name=f"{name}_0")(x)
    else:
        x = keras.layers.Conv2D(filters, kernel_size, stride, padding, use_bias=False,
                                name=f"{name}_0")(x)
    x = keras.layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=f"{name}_1")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_relu6")(x) if activation else x


def _inverted_residual(x, expansion, filters, stride, index):
    """1x1 expand -> 3x3 depthwise -> 1x1 linear projection (+ identity when shapes allow)."""
    name = f"features_{index}_conv"
    inputs, channels = x, x.shape[-1]
    step = 0
    if expansion != 1:
        x = _conv_bn(x, channels * expansion, 1, 1, f"{name}_0")
        step = 1
    x = _conv_bn(x, None, 3, stride, f"{name}_{step}", depthwise=True)
    x = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_{step + 1}")(x)
    x = keras.layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=f"{name}_{step + 2}")(x)
    if stride == 1 and channels == filters:
        x = keras.layers.Add(name=f"features_{index}_add")([inputs, x])
    return x


def mobilenet_v2(include_top=False, input_shape=(224, 224, 3), name="mobilenet_v2"):
    """torchvision's MobileNetV2 (width 1.0) as a functional Keras model, fresh weights.

    Input: float RGB images `[B, H, W, 3]` in [0, 255] (normalization is inside).
    Output: the last feature map `[B, H/32, W/32, 1280]` (7x7 for 224x224),
    or with `include_top=True` the 1000 ImageNet logits (global average
    pooling -> dropout 0.2 -> dense), as torchvision's `forward`.
    """
    inputs = keras.Input(input_shape, name="images")
    x = imagenet_normalization()(inputs)
    x = _conv_bn(x, 32, 3, 2, "features_0")
    index = 1
    for expansion, filters, repeats, first_stride in INVERTED_RESIDUAL_SETTINGS:
        for repeat in range(repeats):
            x = _inverted_residual(x, expansion, filters, first_stride if repeat == 0 else 1,
                                   index)
            index += 1
    x = _conv_bn(x, FEATURE_CHANNELS, 1, 1, f"features_{index}")
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        x = keras.layers.Dropout(0.2, name="classifier_0")(x)
        x = keras.layers.Dense(NUM_IMAGENET_CLASSES, name="classifier_1")(x)
    return keras.Model(inputs, x, name=name)


def _keras_layout(layer, arrays):
    """torch arrays of one module -> that Keras layer's weights, in its order and layout."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return [arrays["weight"].transpose(2, 3, 0, 1)]  # [C, 1, kh, kw] -> [kh, kw, C, 1]
    if isinstance(layer, keras.layers.Conv2D):
        return [arrays["weight"].transpose(2, 3, 1, 0)]  # [O, I, kh, kw] -> [kh, kw, I, O]
    if isinstance(layer, keras.layers.BatchNormalization):
        return [arrays["weight"], arrays["bias"], arrays["running_mean"], arrays["running_var"]]
    if isinstance(layer, keras.layers.Dense):
        return [arrays["weight"].T, arrays["bias"]]
    raise TypeError(f"No torch counterpart for layer {layer.name} ({type(layer).__name__})")


def load_torchvision_weights(model, state_dict):
    """Copy a torchvision MobileNetV2 state dict (name -> numpy array) into `model`.

    Every Keras layer with weights must find its module in the state dict;
    state-dict entries without a layer are allowed only for the classifier
    (a model built without the top) and BatchNorm's `num_batches_tracked`.
    """
    modules = {}
    for key, value in state_dict.items():
        module, _, parameter = key.rpartition(".")
        modules.setdefault(module, {})[parameter] = np.asarray(value, dtype="float32")
    used = set()
    for layer in model.layers:
        if not layer.weights or isinstance(layer, keras.layers.Normalization):
            continue
        module = layer.name.replace("_", ".")
        if module not in modules:
            raise KeyError(f"Layer {layer.name}: no {module}.* in the state dict")
        layer.set_weights(_keras_layout(layer, modules[module]))
        used.add(module)
    unused = [m for m in modules if m not in used and not m.startswith("classifier")]
    if unused:
        raise KeyError(f"State-dict modules with no Keras layer: {unused[:5]}")
    return model


def weights_path():
    """Where the converted ImageNet weights are cached: `$ZOO_CACHE_DIR/encoders/...npz`."""
    from zoo.data.settings import cache_dir

    return cache_dir() / "encoders" / WEIGHTS_FILE


def load_imagenet_weights(model, path=None):
    """Load the cached converted weights into a `mobilenet_v2()` model (with or without top)."""
    path = Path(path or weights_path())
    if not path.exists():
        raise FileNotFoundError(
            f"No converted MobileNetV2 weights at {path}. Create them with "
            "`python recipes/convert_mobilenet_v2.py` (see its docstring for what to install).")
    with np.load(path, allow_pickle=False) as arrays:
        return load_torchvision_weights(model, dict(arrays))
