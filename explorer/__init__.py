"""explorer: real attention, speculative decoding and loss scaling, computed on a loaded model and shown live."""

__version__ = "0.1.0"
