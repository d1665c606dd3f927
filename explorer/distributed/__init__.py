"""Data-parallel training on real torch.distributed ranks: the launcher, the explicit ring all-reduce, DDP's buckets
and the α–β cost model (Qt-free; the ``ddp`` view and ``explorer ddp`` read their plain records)."""
