"""amp at real-model scale: --train-layers N trains only the last N layers (and the final norm), and the memory
estimate made before training counts only what trains."""

from __future__ import annotations

import torch

from explorer.amp.engine import AmpSettings, AmpTrainer, default_text, text_tokens, trainable_copy, training_memory
from explorer.models.checkpoint import default_model_dirs, load_model


def test_only_the_last_layers_train():
    lm = load_model(default_model_dirs()["target"], device="cpu")
    model = trainable_copy(lm)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    settings = AmpSettings(steps=2, policy="static", init_scale=1.0, train_layers=2, reference=False, seq_len=16)
    trainer = AmpTrainer(model, text_tokens(lm.encode, default_text(), 16), settings)
    trainer.run()
    last = lm.config.num_layers - 2
    for name, p in model.named_parameters():
        moved = not torch.equal(before[name], p.detach())
        trains = name == "model.norm.weight" or any(f"layers.{i}." in name for i in range(last, lm.config.num_layers))
        assert moved == trains, name
    assert all(p.requires_grad for p in trainer.params) and len(trainer.params) == 2 * 9 + 1


def test_memory_estimate_counts_only_what_trains():
    cfg = load_model(default_model_dirs()["target"], device="cpu").config
    full, two = training_memory(cfg, 2, 32), training_memory(cfg, 2, 32, train_layers=2)
    assert two < full
    assert training_memory(cfg, 2, 32, train_layers=cfg.num_layers) < full  # the embedding stays frozen
