import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # after the environment that TF reads at import


@pytest.fixture
def trained_spec():
    """`trained_spec(name)`: a shipped model's registry spec; skips the test if it is untrained.

    Every test of a pretrained model starts with it, so a clone without
    `saved_models/NAME` reports a skip that says how to train the model.
    """
    from zoo import registry

    def get(name):
        spec = registry.get_pretrained(name)
        if not spec.is_trained:
            pytest.skip(f"{spec.directory} does not exist: train it with `zoo train {spec.recipe}`")
        return spec

    return get
