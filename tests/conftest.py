import os

# Tests never reach a network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "2")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_suite(tmp_path_factory) -> Path:
    """The built-in offline suite at preset `tiny`, built once per test session."""
    from pipeline.data.synth import synthesize

    out = tmp_path_factory.mktemp("suite")
    synthesize(out, preset="tiny", seed=0)
    return out
