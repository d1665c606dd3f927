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
    records, _, _ = run(steps=5, init_scale=2.0**8, spike=(4, 1e12))  # step 4 of 5: records[3]
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
        steps=10, policy="deepspeed", init_scale=1.0, min_scale=1.0, hysteresis=1, spike=(3, 1e38)
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


# ---------------------------------------------------------------- the runner and its words (Qt-free)


def tiny_lm():
    """What the runner reads of a loaded model: its path, tokenizer, config and weights."""
    from types import SimpleNamespace

    return SimpleNamespace(path="tiny", encode=lambda text: [ord(c) % CFG.vocab_size for c in text], config=CFG,
                           model=tiny_model())  # fmt: skip


def test_settings_from_values_are_the_views_and_the_clis():
    from explorer.amp.engine import settings_from_values
    from explorer.amp.options import VIEW

    view = settings_from_values({**VIEW.defaults(), "spike_step": 3})
    assert view.init_scale == 2.0**16 and view.growth_interval == 4 and view.spike == (3, 1e6)
    assert view.device == "cpu" and view.lr == 1e-4 and view.batch == 2  # the rest: the schema's defaults
    cli = settings_from_values({"init_scale": 8.0, "steps": 5}, device="cuda")
    assert cli.init_scale == 8.0 and cli.spike is None and cli.device == "cuda" and cli.growth_interval is None
    with pytest.raises(ExplorerError, match="the loss spike at step 5 would never happen"):
        settings_from_values({"steps": 3, "spike_step": 5})
    with pytest.raises(ExplorerError, match="steps must be an integer in 1..2000"):
        settings_from_values({"steps": 0})


def test_training_job_fills_its_meta_as_it_runs():
    from explorer.amp.engine import settings_from_values
    from explorer.amp.job import training_job

    values = {"steps": 10, "policy": "deepspeed", "init_scale": 1.0, "hysteresis": 1, "spike_step": 3,
              "spike_factor": 1e38, "seq_len": 16}  # fmt: skip
    settings = settings_from_values(values)
    job = training_job(tiny_lm(), settings, "x" * 400)
    assert job.meta.groups is None and job.meta.to_json() == {
        "model": "tiny", "settings": dict(vars(settings)), "stopped": None}  # fmt: skip
    records = []
    for r in job.records():
        assert job.meta.groups == ["embed", "layers.0", "layers.1", "head"]
        assert (job.meta.stopped is not None) == (r.event == "stop")  # known before the last record arrives
        records.append(r)
    assert [r.step for r in records] == [0, 1, 2] and "already at minimum" in job.meta.stopped
    assert list(job.meta.to_json()) == ["model", "settings", "stopped", "groups"]  # the export's keys, in order
    json.dumps(job.meta.to_json())


def test_training_job_records_equal_the_trainers():
    from explorer.amp.engine import settings_from_values, text_tokens, trainable_copy
    from explorer.amp.job import training_job

    lm, text = tiny_lm(), "some text to train on, " * 20
    settings = settings_from_values({"steps": 3, "seq_len": 16, "seed": 4})
    via_job = list(training_job(lm, settings, text).records())
    torch.manual_seed(4)
    trainer = AmpTrainer(trainable_copy(lm), text_tokens(lm.encode, text, 16), settings)
    direct, _ = trainer.run()
    trainer.close()
    assert [(r.loss, r.scale, r.skipped) for r in via_job] == [(r.loss, r.scale, r.skipped) for r in direct]


def step_record(**kw):
    from explorer.amp.records import StepRecord

    groups, counts = 3, np.zeros((3, len(BANDS)), np.int64)
    unscaled, scaled = counts.copy(), counts.copy()
    unscaled[:, BANDS.index("flushed")] = [10, 0, 0]
    unscaled[:, BANDS.index("normal")] = 90
    scaled[:, BANDS.index("normal")] = [100, 90, 90]
    scaled[2, BANDS.index("inf_nan")] = 10
    hist = np.ones((groups, len(HIST_BINS)), np.int64)
    base = dict(step=1, loss=2.5, loss_factor=1.0, scale=2.0**16, next_scale=2.0**15, found_inf=True, skipped=True,
                event="backoff", growth_tracker=0, hysteresis=None, first_overflow="lm_head", seconds=0.25,
                act_scaled=scaled, act_unscaled=unscaled, act_hist_scaled=hist, act_hist_unscaled=hist,
                param_scaled=scaled, param_unscaled=unscaled, param_hist_scaled=hist, param_hist_unscaled=hist,
                param_lost=np.array([5, 0, 0]), param_hist_reference=hist)  # fmt: skip
    return StepRecord(**{**base, **kw})


def test_describe_words():
    from explorer.amp import describe

    r = step_record()
    assert describe.status_word(r) == "overflow → step skipped" and describe.event_word(r) == "back off ×½"
    clean = step_record(found_inf=False, skipped=False, event=None)
    assert describe.status_word(clean) == "clean" and describe.event_word(clean, "none") == "none"
    assert describe.scale_text(2.0**29) == "2^29" and describe.scale_text(3.0) == "3"
    assert [describe.pct(1, 3), describe.pct(1, 300), describe.pct(1, 30000)] == ["33%", "0.3%", "0.00%"]
    assert [describe.nice_top(x) for x in (0.5, 1.5, 3, 7, 40)] == [1.0, 2, 5, 10, 50]
    assert describe.group_label("layers.12") == "L12"
    assert describe.thinned_rows(32, 4)[:3] == [0, 4, 8] and describe.thinned_rows(32, 4)[-1] == 31
    assert 28 not in describe.thinned_rows(32, 4)  # the last label never crowds its neighbour


def test_describe_header_bands_and_captions():
    from explorer.amp import describe

    r = step_record()
    g = describe.gradients(r, activation=False)
    header = describe.header_html(r, 5, "torch", "float16", None, g, muted="#777", seconds=True)
    assert "step 2 of 5" in header and "torch scaler, float16 autocast" in header and "scale 2^16 →" in header
    assert "first overflow in <b>lm_head</b>" in header and "0.25 s" in header and "lost to zero" in header
    quiet = describe.header_html(r, 5, "torch", "float16", "stopped here", g, muted="#777", seconds=False)
    assert " s</span>" not in quiet and "stopped here" in quiet
    act = describe.gradients(r, activation=True)
    assert act.lost is None and "flushed to zero: 3.57%" in describe.loss_line(act, r.scale)
    bands = describe.band_html(g, r.scale, "#f00")
    assert "scaled g × 2^16" in bands and "lost in the fp16 backward" in bands
    assert "lost in the fp16" not in describe.band_html(act, r.scale, "#f00")
    assert describe.nonfinite_note(g) == "3.6% inf/NaN\nnot drawn"
    assert len(describe.hist_title_variants(True, "a", "b", "c")) == 2
    assert "fp32" not in describe.hist_title_variants(False, "a", "b", "c")[0]
    fields = describe.caption_fields(r, [step_record(step=0), r], activation=False)
    assert fields["skipped"] == 2 and fields["scale_log2"] == 16 and fields["next_scale_log2"] == 15
    assert fields["flushed_unscaled"] == pytest.approx(100 * 10 / 280) and fields["flushed_scaled"] == 0


def test_describe_layer_shares():
    from explorer.amp import describe

    records = [step_record(step=0), step_record(step=1)]
    over, lost = describe.layer_shares(records, activation=False, columns=4)
    assert over.shape == lost.shape == (3, 4) and not over[:, 2:].any()
    assert over[2, 0] == pytest.approx(100 * 10 / 100) and over[0, 0] == 0
    assert lost[0, 0] == pytest.approx(100 * 15 / 100)  # flushed by g / S and lost in the fp16 backward
    _, act_lost = describe.layer_shares(records, activation=True, columns=4)
    assert act_lost[0, 0] == pytest.approx(100 * 10 / 100)
