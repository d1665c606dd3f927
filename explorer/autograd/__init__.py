"""Autograd made visible (Qt-free): the real backward graph of the loaded model, what it saves, the order the engine
runs it in, and the in-place trap (see graph.py, backward.py, memory.py, functional.py, trap.py)."""
