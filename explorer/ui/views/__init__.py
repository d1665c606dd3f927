"""View registry: each instrument view registers its class here under its CLI name."""

from __future__ import annotations

from .amp import AmpView
from .attention import AttentionView
from .autograd import AutogradView
from .base import View
from .ddp import DdpView
from .generate import GenerateView
from .promptset import PromptSetView
from .speculative import SpeculativeView

VIEWS: dict[str, type[View]] = {
    GenerateView.name: GenerateView,
    AttentionView.name: AttentionView,
    SpeculativeView.name: SpeculativeView,
    AmpView.name: AmpView,
    AutogradView.name: AutogradView,
    DdpView.name: DdpView,
    PromptSetView.name: PromptSetView,
}
