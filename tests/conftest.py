import os

import pytest
import torch

from explorer.models.decoder import CausalLM, ModelConfig

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="module")
def tiny_model() -> CausalLM:
    """A 2-layer GQA Llama with random weights (vocab 97, head_dim 16): small enough for exhaustive cache and
    kernel checks, large enough to have every part of the real forward (RoPE, GQA, SwiGLU, tied head)."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        model_type="llama",
        vocab_size=97,
        hidden_size=64,
        intermediate_size=128,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=16,
        rope_scaling={"rope_type": "default"},
        max_position_embeddings=128,
    )
    m = CausalLM(cfg)
    for p in m.parameters():
        p.data.normal_(0, 0.2)
    return m.eval()


@pytest.fixture(autouse=True)
def _qt_objects_die_between_tests():
    """Widgets a test left to Python's cycle collector (a closed window in a reference cycle) are destroyed here,
    between tests, not whenever a later allocation happens to trigger a collection: a collection that destroyed
    one inside a later test's Qt event processing crashed the run (a segmentation fault in pytest-qt's
    _process_events, after a GGUF test, once timings had shifted)."""
    yield
    import sys

    if "PySide6.QtWidgets" not in sys.modules:
        return
    import gc

    from PySide6.QtCore import QCoreApplication, QEvent

    if QCoreApplication.instance() is None:
        return
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
