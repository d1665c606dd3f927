"""Attention: the backends the model plugs in, tracing one head through the kernel, and the view's tile walk."""
