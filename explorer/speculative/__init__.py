"""Speculative decoding: the step engine (draft, verify, accept, roll back), drafters and statistics."""
