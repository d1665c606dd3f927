"""The static KV cache: generation with it equals generation without it; rollback and compaction are exact."""

import pytest
import torch


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model


def greedy_without_cache(model, ids, n):
    ids = list(ids)
    for _ in range(n):
        ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    return ids


def greedy_with_cache(model, ids, n):
    cache = model.new_cache(64)
    x, out = torch.tensor([ids]), list(ids)
    for _ in range(n):
        out.append(int(model(x, cache=cache)[0, -1].argmax()))
        x = torch.tensor([[out[-1]]])
    return out


@torch.no_grad()
def test_greedy_with_cache_equals_without(model):
    prompt = [5, 17, 3, 44, 8]
    assert greedy_with_cache(model, prompt, 20) == greedy_without_cache(model, prompt, 20)


@torch.no_grad()
def test_cached_logits_match_full_forward(model):
    ids = torch.randint(0, 97, (1, 30))
    full = model(ids)
    cache = model.new_cache(64)
    parts = [model(ids[:, :12], cache=cache)] + [model(ids[:, i : i + 1], cache=cache) for i in range(12, 30)]
    assert cache.length == 30
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=0)


@torch.no_grad()
def test_truncate_rolls_back(model):
    ids = torch.randint(0, 97, (1, 20))
    cache = model.new_cache(64)
    model(ids[:, :10], cache=cache)
    model(torch.randint(0, 97, (1, 6)), cache=cache)  # speculative tokens, then rejected
    cache.truncate(10)
    again = model(ids[:, 10:], cache=cache)
    torch.testing.assert_close(again, model(ids)[:, 10:], atol=1e-5, rtol=0)
    with pytest.raises(ValueError):
        cache.truncate(99)


@torch.no_grad()
def test_keep_compacts_a_tree_path(model):
    """Verify a tiny token tree with a tree mask, keep one root-to-leaf path, continue: equals the plain chain."""
    prefix = torch.randint(0, 97, (1, 8))
    # Tree: node0 (root child) -> node1, node0 -> node2 -> node3. Depths 0,1,1,2 after the prefix.
    tokens = torch.tensor([[11, 22, 33, 44]])
    parent = [-1, 0, 0, 2]
    mask = torch.zeros(4, 4, dtype=torch.bool)
    for i in range(4):
        j = i
        while j >= 0:
            mask[i, j] = True
            j = parent[j]
    depth = torch.tensor([0, 1, 1, 2])
    cache = model.new_cache(64)
    model(prefix, cache=cache)
    tree_logits = model(tokens, position_ids=8 + depth, cache=cache, mask=mask)
    path = [0, 2, 3]
    chain = torch.cat([prefix, tokens[:, path]], dim=1)
    chain_logits = model(chain)
    # Every path node's logits equal the chain's at the same position.
    torch.testing.assert_close(tree_logits[:, path], chain_logits[:, 8:], atol=1e-5, rtol=0)
    cache.keep(list(range(8)) + [8 + i for i in path])
    assert cache.length == 11
    nxt = torch.tensor([[7]])
    after = model(nxt, cache=cache)
    torch.testing.assert_close(after, model(torch.cat([chain, nxt], dim=1))[:, -1:], atol=1e-5, rtol=0)


def test_keep_rejects_bad_slots(model):
    cache = model.new_cache(16)
    cache.length = 5
    with pytest.raises(ValueError):
        cache.keep([0, 2, 1])
    with pytest.raises(ValueError):
        cache.keep([0, 7])
    cache.keep([0, 1, 2])  # a pure prefix copies nothing
    assert cache.length == 3


def test_inference_linear_returns_row_major_rows():
    """(W·xᵀ)ᵀ is column-major; handed on like that, a multi-token q sends SDPA's CPU kernel to its slow
    reference path. The product must come back row-major, and equal x·Wᵀ. A single row (decoding) is one
    column of the doubled product: left strided, as nothing downstream needs it copied."""
    from explorer.models.decoder import inference_linear

    w, x = torch.randn(48, 16), torch.randn(1, 4, 16)
    one = inference_linear(x[:, :1], w)
    assert one.shape == (1, 1, 48) and one.stride()[-1] == 2
    torch.testing.assert_close(one, x[:, :1] @ w.T)
    out = inference_linear(x, w)
    assert out.is_contiguous()
    torch.testing.assert_close(out, x @ w.T)
    assert torch.equal(inference_linear(x[:, :1], w), inference_linear(x[:, :1].contiguous(), w))


def test_rms_norm_inference_path_equals_torch_rms_norm():
    """Without autograd the norm runs as five cheap ops; they must give F.rms_norm's numbers bit for bit."""
    import torch.nn.functional as F

    from explorer.models.decoder import RMSNorm

    torch.manual_seed(0)
    norm = RMSNorm(96, 1e-5)
    norm.weight.data = torch.randn(96)
    for shape in ((1, 1, 96), (1, 7, 96), (3, 5, 96)):
        x = torch.randn(shape) * 10
        with torch.inference_mode():
            fast = norm(x)
        assert torch.equal(fast, F.rms_norm(x, (96,), norm.weight, 1e-5))


def test_fused_weights_live_in_one_block_in_reading_order():
    """On the CPU, fusing moves every matrix a forward streams into one block (advised huge pages), layer by
    layer, q/k/v then o then gate/up then down, and the LM head last; the state dict keeps its names and values."""
    from explorer.models.checkpoint import default_model_dirs, load_model

    lm = load_model(default_model_dirs()["target"], dtype="float32", device="cpu")
    m = lm.model
    storage = m.lm_head.weight.untyped_storage().data_ptr()
    ptrs = []
    for layer in m.model.layers:
        a, f = layer.self_attn, layer.mlp
        for w in (a.qkv[0], a.o_proj.weight, f.gate_up[0], f.down_proj.weight):
            assert w.untyped_storage().data_ptr() == storage
            ptrs.append(w.data_ptr())
        assert a.q_proj.weight.data_ptr() == a.qkv[0].data_ptr()
    ptrs.append(m.lm_head.weight.data_ptr())
    assert ptrs == sorted(ptrs)
    assert all(p % 64 == 0 for p in ptrs)
    fresh = load_model(default_model_dirs()["target"], dtype="float32", device="cpu").model.state_dict()
    for key, value in m.state_dict().items():
        assert torch.equal(value, fresh[key]), key
