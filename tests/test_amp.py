"""Mixed-precision engine (explorer.amp.engine): scaler decisions, fp16 band counts, and the `amp` subcommand."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from explorer.amp.bands import BANDS, HIST_BINS, BandCounter
from explorer.amp.engine import AmpSettings, AmpTrainer, sample_batch
from explorer.amp.scalers import DeepSpeedScaler, LossScaleAtMinimum, MegatronScaler
from explorer.cli.amp import parse_spike
from explorer.cli.main import parse_args
from explorer.errors import ExplorerError
from explorer.models.decoder import CausalLM, ModelConfig

CFG = ModelConfig(
    model_type="llama",
    vocab_size=64,
    hidden_size=32,
    intermediate_size=64,
    num_layers=2,
    num_heads=2,
    num_kv_heads=1,
    head_dim=16,
    rope_scaling={"rope_type": "default"},
    max_position_embeddings=64,
)
TOKENS = np.random.default_rng(0).integers(0, CFG.vocab_size, 4000)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return CausalLM(CFG).train()


def run(steps=10, **kw):
    kw.setdefault("batch", 2)
    kw.setdefault("seq_len", 16)
    tr = AmpTrainer(tiny_model(), TOKENS, AmpSettings(steps=steps, **kw))
    records, stopped = tr.run()
    tr.close()
    return records, stopped, tr


def gradscaler_rule(scale, tracker, found_inf, growth=2.0, backoff=0.5, interval=2000):
    """torch.amp.GradScaler's documented update rule (ANCHORS: no clamp; growth kept only if finite)."""
    if found_inf:
        return scale * backoff, 0
    tracker += 1
    if tracker == interval:
        grown = scale * growth
        return (grown if math.isfinite(grown) else scale), 0
    return scale, tracker


def tiny_gradients_model():
    """The tiny model with its final norm shrunk 10^4 times: gradients small enough that fp16 backward loses some."""
    m = tiny_model()
    with torch.no_grad():
        m.model.norm.weight.mul_(1e-4)
    return m


def test_lost_counts_values_an_fp32_backward_keeps_and_the_fp16_backward_zeroes():
    tr = AmpTrainer(tiny_gradients_model(), TOKENS, AmpSettings(steps=1, policy="none", batch=2, seq_len=16))
    r = tr.step()
    tr.close()
    # an independent fp32 backward of the same batch on the same initial weights
    ref_model = tiny_gradients_model()
    x, y = sample_batch(TOKENS, 2, 16, np.random.default_rng(0))
    logits = ref_model(x)
    F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).backward()
    ref = dict(ref_model.named_parameters())
    lost = sum(int(((ref[n].grad != 0) & (p.grad == 0)).sum()) for n, p in zip(tr.param_names, tr.params, strict=True))
    assert lost > 1000 and int(r.param_lost.sum()) == lost
    # scale 1: the band counts barely see them (fp16 zeros count as "zero"; only a few fp32 sums are "flushed")
    assert r.param_unscaled[:, BANDS.index("flushed")].sum() < lost / 10
    assert r.param_lost.shape == (len(tr.groups),) and r.param_hist_reference.shape == r.param_hist_scaled.shape
    # the reference holds the values below 2^-24 that the fp16 histogram lacks
    below = HIST_BINS.index(-25) + 1
    assert r.param_hist_reference.sum(0)[:below].sum() > r.param_hist_unscaled.sum(0)[:below].sum()
    assert r.to_json(tr.groups)["param_lost"] == lost


def test_loss_scaling_rescues_what_the_fp16_backward_lost():
    def lost_with(**kw):
        tr = AmpTrainer(tiny_gradients_model(), TOKENS, AmpSettings(steps=1, batch=2, seq_len=16, **kw))
        r = tr.step()
        tr.close()
        return int(r.param_lost.sum())

    assert lost_with(policy="static", init_scale=2.0**16) < lost_with(policy="none") / 10
    tr = AmpTrainer(tiny_model(), TOKENS, AmpSettings(steps=1, batch=2, seq_len=16, reference=False))
    assert tr.step().param_lost is None  # without the reference pass nothing is claimed


# ---------------------------------------------------------------- torch policy is GradScaler


def test_torch_policy_scale_trajectory_equals_a_plain_gradscaler_loop():
    settings = dict(init_scale=2.0**32, growth_interval=3, lr=1e-3, batch=2, seq_len=16, seed=3)
    records, _, _ = run(steps=20, **settings)

    model = tiny_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**32, growth_interval=3)
    rng = np.random.default_rng(3)
    ref_scales, ref_losses = [], []
    for _ in range(20):
        x, y = sample_batch(TOKENS, 2, 16, rng)
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.float16):
            logits = model(x)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
        ref_scales.append(scaler.get_scale())
        ref_losses.append(loss.item())
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    ref_scales.append(scaler.get_scale())

    assert [r.scale for r in records] == ref_scales[:-1]
    assert [r.next_scale for r in records] == ref_scales[1:]
    assert [r.loss for r in records] == ref_losses  # instrumentation reads, never changes, the numbers
    assert any(r.found_inf for r in records) and any(r.event == "growth" for r in records)


def test_done_when_init_2_32_overflows_at_once_backs_off_then_grows_on_schedule():
    records, _, _ = run(steps=24, init_scale=2.0**32, growth_interval=2, dtype="float16")
    assert records[0].found_inf and records[0].skipped and records[0].event == "backoff"
    assert records[0].first_overflow == "lm_head"  # the logits' gradient is the first one backward computes
    assert records[1].found_inf and records[1].scale == 2.0**31  # step by step
    scale, tracker = 2.0**32, 0
    for r in records:  # every decision is GradScaler's documented rule
        assert r.scale == scale
        scale, tracker = gradscaler_rule(scale, tracker, r.found_inf, interval=2)
        assert (r.next_scale, r.growth_tracker) == (scale, tracker)
        assert r.skipped == r.found_inf
        assert r.event == ("backoff" if r.found_inf else ("growth" if r.next_scale > r.scale else None))
    first_clean = next(i for i, r in enumerate(records) if not r.found_inf)
    assert first_clean >= 5  # many backoffs before the scale fits
    assert records[first_clean + 1].event == "growth" or records[first_clean + 1].found_inf


def test_spike_forces_overflow_skip_and_backoff():
    records, _, _ = run(steps=5, init_scale=2.0**8, spike=(3, 1e12))
    assert not any(r.found_inf for r in records[:3])
    r = records[3]
    assert r.loss_factor == 1e12 and r.found_inf and r.skipped and r.event == "backoff"
    assert r.next_scale == 2.0**7
    assert r.param_scaled[:, BANDS.index("inf_nan")].sum() > 0


def test_bf16_run_reports_no_overflow():
    for policy in ("none", "torch"):
        records, _, _ = run(steps=4, dtype="bfloat16", policy=policy)
        assert not any(r.found_inf or r.skipped for r in records)
        assert all(r.first_overflow is None for r in records)
        assert all(r.param_scaled[:, BANDS.index("inf_nan")].sum() == 0 for r in records)


def test_records_shapes_and_scaling_moves_values_out_of_the_flush_band():
    records, _, tr = run(steps=2, init_scale=2.0**12)
    r = records[0]
    G = len(tr.groups)
    assert tr.groups[0] == "embed" and tr.groups[-1] == "head" and G == CFG.num_layers + 2
    assert r.act_scaled.shape == r.act_unscaled.shape == r.param_scaled.shape == (G, len(BANDS))
    assert r.act_hist_scaled.shape == r.param_hist_unscaled.shape == (G, len(HIST_BINS))
    n_params = sum(p.numel() for p in tr.params)
    assert r.param_scaled.sum() == r.param_unscaled.sum() == n_params
    # the histogram holds every finite non-zero value
    finite_nonzero = r.param_scaled.sum() - r.param_scaled[:, [0, BANDS.index("zero")]].sum()
    assert r.param_hist_scaled.sum() == finite_nonzero
    # a 2^12 scale shifts the log2 histogram by exactly 12 bins
    hs, hu = r.param_hist_scaled.sum(0), r.param_hist_unscaled.sum(0)
    assert np.array_equal(hs[13:-1], hu[1:-13])
    flushed = BANDS.index("flushed")
    assert r.act_unscaled[:, flushed].sum() >= r.act_scaled[:, flushed].sum()
    json.dumps(r.to_json())


# ---------------------------------------------------------------- band counts are numpy's float16 cast


def numpy_bands(x32: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = x32.astype(np.float16)
    finite = np.isfinite(x32)
    ah = np.abs(h.astype(np.float32))
    return np.array(
        [
            (~finite).sum(),
            (finite & np.isinf(h)).sum(),
            (finite & np.isfinite(h) & (ah >= 2.0**-14)).sum(),
            ((ah > 0) & (ah < 2.0**-14)).sum(),
            ((x32 != 0) & (h == 0)).sum(),
            (x32 == 0).sum(),
        ]
    )


def numpy_hist(x32: np.ndarray) -> np.ndarray:
    a = np.abs(x32[np.isfinite(x32) & (x32 != 0)]).astype(np.float64)
    k = np.floor(np.log2(a)).astype(int)
    idx = np.clip(k + 41, 0, len(HIST_BINS) - 1)
    return np.bincount(idx, minlength=len(HIST_BINS))


def edge_values() -> np.ndarray:
    edges = [
        0.0,
        2.0**-26,
        2.0**-25,
        np.nextafter(np.float32(2.0**-25), 1),
        2.0**-24,
        1.5 * 2.0**-24,
        1023 * 2.0**-24,
        1023.4 * 2.0**-24,
        1023.5 * 2.0**-24,
        2.0**-14,
        1.0,
        65504.0,
        65505.0,
        65519.0,
        65519.996,
        65520.0,
        65536.0,
        1e30,
        np.inf,
        np.nan,
        1e-40,
        2.0**-41,
        2.0**-40,
        2.0**20,
        2.0**21,
    ]
    rng = np.random.default_rng(1)
    rand = np.exp(rng.uniform(np.log(1e-12), np.log(1e8), 20000)) * rng.choice([-1, 1], 20000)
    x = np.concatenate([edges, [-e for e in edges], rand]).astype(np.float32)
    x[rng.integers(0, len(x), 300)] = 0.0
    return x


@pytest.mark.parametrize("scale", [1.0, 2.0**10, 2.0**-3, 1000.0])
def test_band_counts_equal_numpy_float16_casting(scale):
    x = edge_values()
    counter = BandCounter()
    bs, bu, hs, hu = counter.count(torch.from_numpy(x), (len(x),), scale)
    assert np.array_equal(bs[0], numpy_bands(x))
    assert np.array_equal(hs[0], numpy_hist(x))
    if math.frexp(scale)[0] == 0.5:
        unscaled = (x.astype(np.float64) / scale).astype(np.float32)  # exact for a power of two
    else:
        unscaled = x * np.float32(1.0 / scale)  # what the engine (and GradScaler's unscale) computes
    assert np.array_equal(bu[0], numpy_bands(unscaled))
    assert np.array_equal(hu[0], numpy_hist(unscaled))


def test_band_counts_per_segment_and_for_fp16_input():
    x = edge_values()
    counter = BandCounter()
    sizes = (100, 5000, len(x) - 5100)
    bs, _, _, _ = counter.count(torch.from_numpy(x), sizes)
    starts = np.cumsum((0,) + sizes)
    for i in range(3):
        assert np.array_equal(bs[i], numpy_bands(x[starts[i] : starts[i + 1]]))
    h = torch.from_numpy(x).half()  # already fp16: nothing can be flushed or above 65504 any more
    bh, _, _, _ = counter.count(h, (h.numel(),))
    assert bh[0, BANDS.index("flushed")] == 0 and bh[0, BANDS.index("overflow")] == 0
    assert np.array_equal(bh[0], numpy_bands(h.float().numpy()))


# ---------------------------------------------------------------- deepspeed and megatron rules


def test_deepspeed_policy_follows_its_rules():
    ds = DeepSpeedScaler(init_scale=16, window=3, hysteresis=2, min_scale=1)
    script = [True, True, True, False, False, False, True, False, False, False]
    scales, skipped = [], []
    for found in script:
        skipped.append(ds.update(found))
        scales.append(ds.scale)
    # first overflow only uses the hysteresis; later ones halve; growth 3 iterations after the last overflow
    assert scales == [16, 8, 4, 4, 4, 8, 8, 8, 8, 16]
    assert skipped == script


def test_deepspeed_policy_stops_at_the_minimum():
    ds = DeepSpeedScaler(init_scale=2, window=1000, hysteresis=2, min_scale=1)
    ds.update(True)  # hysteresis 2 -> 1
    ds.update(True)  # 2 -> 1
    assert ds.scale == 1
    with pytest.raises(LossScaleAtMinimum, match="Current loss scale already at minimum"):
        ds.update(True)
    assert issubclass(LossScaleAtMinimum, ExplorerError)


def test_deepspeed_stop_ends_the_run_with_its_record():
    records, stopped, _ = run(
        steps=10, policy="deepspeed", init_scale=1.0, min_scale=1.0, hysteresis=1, spike=(2, 1e38)
    )
    assert stopped and "already at minimum" in stopped
    assert records[-1].step == 2 and records[-1].event == "stop" and records[-1].skipped


def test_megatron_policy_follows_its_rules():
    mg = MegatronScaler(init_scale=16, growth_interval=3, hysteresis=2, min_scale=4)
    script = [True, True, True, True, False, False, False, True, True]
    scales = []
    for found in script:
        assert mg.update(found) == found
        scales.append(mg.scale)
    assert scales == [16, 8, 4, 4, 4, 4, 8, 8, 4]  # clamped at 4 silently; growth restores the hysteresis


def test_static_and_none_policies():
    records, _, _ = run(steps=3, policy="static", init_scale=2.0**40)
    assert all(r.found_inf and r.skipped and r.scale == r.next_scale == 2.0**40 for r in records)
    records, _, _ = run(steps=3, policy="none")
    assert all(r.scale == 1.0 and not r.skipped for r in records)


# ---------------------------------------------------------------- CLI


def amp_args(*argv):
    return parse_args(["amp", *argv])


def test_cli_json_on_the_demo_target(capsys):
    args = amp_args("--steps", "2", "--batch", "2", "--seq-len", "32", "--init-scale", "4294967296", "--json")
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    steps = out["steps"]
    assert len(steps) == 2
    for key in ("loss", "scale", "next_scale", "found_inf", "skipped", "event", "growth_tracker", "first_overflow"):
        assert key in steps[0]
    assert steps[0]["scale"] == 2.0**32 and steps[0]["found_inf"] and steps[0]["next_scale"] == 2.0**31
    assert steps[1]["scale"] == 2.0**31
    assert out["summary"]["overflow_steps"] >= 1 and out["summary"]["policy"] == "torch"


def test_cli_errors_are_explorer_errors(tmp_path):
    with pytest.raises(ExplorerError, match="STEP:FACTOR"):
        parse_spike("oops")
    args = amp_args("--text", str(tmp_path / "missing.txt"))
    with pytest.raises(ExplorerError, match="text file not found"):
        args.func(args)
    args = amp_args("--init-scale", "0")
    with pytest.raises(ExplorerError, match="--init-scale must be a finite number above 0"):
        args.func(args)
