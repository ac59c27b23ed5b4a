"""`MusicGenerator` on a tiny real `VMASModel`: lengths, windows, KV cache, seeds, guidance."""
import pytest
import torch

from helpers import ROOT
from vmas_lightning.errors import VMASError
from vmas_lightning.generation import GenerationConfig, MusicGenerator
from vmas_lightning.generation.generator import Window
from vmas_lightning.models.codecs.delay import apply_delay
from vmas_lightning.models.vmas import VMASModel
from vmas_lightning.sequence import SequenceConfig

# 2.5-s training window: 24 frames of 64x64, 125 tokens; 1-s overlap -> windows every 1.5 s.
SEQUENCE = SequenceConfig(duration_s=2.5, frame_size=64)
TINY = dict(
    encoder={"name": "efficient_hiera", "size": "tiny", "q_strides": [[1, 4, 4], [1, 2, 2], [1, 2, 2]]},
    decoder={"name": "musicgen", "size": "tiny"},
    codec={"name": "encodec", "size": "tiny"},
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = VMASModel(**TINY, sequence=SEQUENCE).eval()
    with torch.no_grad():  # random weights barely listen to the video: make the condition count
        model.null_condition.normal_()
        model.decoder.cond_proj.weight.mul_(50)
    return model


def video(seconds, seed=0, batch=1):
    return torch.rand(batch, 3, SEQUENCE.frames_for(seconds), 64, 64, generator=torch.Generator().manual_seed(seed))


def test_window_plan(model):
    generator = MusicGenerator(model, GenerationConfig(overlap_s=1.0))
    assert generator.plan_windows(300) == [Window(0, 125, 0), Window(75, 200, 50), Window(150, 275, 50), Window(175, 300, 100)]
    assert generator.plan_windows(125) == [Window(0, 125, 0)]
    assert generator.plan_windows(50) == [Window(0, 50, 0)]
    with pytest.raises(VMASError, match="overlap_s"):
        MusicGenerator(model, GenerationConfig(overlap_s=3.0)).plan_windows(300)


def test_one_second_video_gives_one_second_of_codes(model):
    tokens = MusicGenerator(model, GenerationConfig(seed=0)).generate(video(1.0), duration_s=1.0)
    as_bytes = (video(1.0) * 255).round().to(torch.uint8)
    from_bytes = MusicGenerator(model, GenerationConfig(seed=0)).generate(as_bytes, duration_s=1.0)
    assert torch.equal(from_bytes, MusicGenerator(model, GenerationConfig(seed=0)).generate(as_bytes / 255, duration_s=1.0))
    assert tokens.shape == (1, 4, 50)
    assert 0 <= tokens.min() and tokens.max() < model.codec.codebook_size  # every code sampled, no pad left
    assert model.codec.decode(tokens).shape == (1, 1, 50 * SEQUENCE.hop_length)


@pytest.mark.slow
def test_kv_cache_gives_the_same_tokens_as_full_recompute(model):
    clip = video(6.0, batch=2)
    cached = MusicGenerator(model, GenerationConfig(seed=3, overlap_s=1.0)).generate(clip, duration_s=6.0)
    full = MusicGenerator(model, GenerationConfig(seed=3, overlap_s=1.0, use_cache=False)).generate(clip, duration_s=6.0)
    assert cached.shape == (2, 4, 300)
    assert torch.equal(cached, full)


def test_same_seed_same_music_different_seed_different_music(model):
    clip = video(2.0)
    first, again, other = (MusicGenerator(model, GenerationConfig(seed=s)).generate(clip) for s in (1, 1, 2))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_guidance_scale_0_is_the_learned_null_condition_alone(model):
    def tokens(scale, seed):
        return MusicGenerator(model, GenerationConfig(seed=0, cfg_scale=scale)).generate(video(1.0, seed=seed))

    assert torch.equal(tokens(0.0, seed=1), tokens(0.0, seed=2))  # the video is ignored
    assert not torch.equal(tokens(1.0, seed=1), tokens(1.0, seed=2))  # conditional only


def test_windows_slide_the_video_and_continue_the_previous_tokens(model):
    clip = torch.arange(SEQUENCE.frames_for(6.0)).float().div(100).view(1, 1, -1, 1, 1).expand(1, 3, -1, 64, 64)
    encoder_inputs, decoder_inputs = [], []
    hooks = [
        model.encoder.register_forward_pre_hook(lambda m, args: encoder_inputs.append(args[0][0, 0, :, 0, 0] * 100)),
        model.decoder.register_forward_pre_hook(lambda m, args: decoder_inputs.append(args[0])),
    ]
    try:
        tokens = MusicGenerator(model, GenerationConfig(seed=0, overlap_s=1.0)).generate(clip, duration_s=6.0)
    finally:
        for hook in hooks:
            hook.remove()
    # Window starts 0, 1.5, 3.0, 3.5 s -> first frames 0, 14, 29, 34; 24 frames each.
    assert [round(x[0].item()) for x in encoder_inputs] == [0, 14, 29, 34]
    assert all(torch.equal(x.round(), x[0].round() + torch.arange(24.0)) for x in encoder_inputs)
    # Each later window's first decoder call is fed BOS + the previous window's tail tokens (delayed).
    prefill = [x for x in decoder_inputs if x.shape[2] > 1]
    assert [x.shape[2] for x in prefill] == [51, 51, 101]
    for window, x in zip([Window(75, 200, 50), Window(150, 275, 50), Window(175, 300, 100)], prefill):
        expected = apply_delay(tokens[:, :, window.start : window.start + window.prompt], model.decoder.pad_token_id)
        assert torch.equal(x[:1, :, 1:], expected[:, :, : window.prompt])


def test_window_longer_than_the_encoder_input_is_an_error(model):
    with pytest.raises(VMASError, match="window_s 5.0 exceeds"):
        MusicGenerator(model, GenerationConfig(window_s=5.0, overlap_s=1.0)).generate(video(6.0))


def test_benchmark_reports_each_decode_path(capsys):
    import importlib.util
    import json

    path = ROOT / "benchmarks" / "generate.py"
    spec = importlib.util.spec_from_file_location("benchmark_generate", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    result = benchmark.main(["--steps", "20", "--batches", "1,3", "--modes", "no_cache,dynamic,static",
                             "--agreement-tokens", "20", "--device", "cpu"])
    assert json.loads(capsys.readouterr().out) == result
    assert (result["tokens"], result["steps"], result["layers"], result["width"]) == (20, 23, 2, 64)
    assert [run["batch"] for run in result["runs"]["no_cache"]["by_batch"]] == [1]  # the slow reference: batch 1 only
    for mode in ("dynamic", "static"):
        one, three = result["runs"][mode]["by_batch"]
        assert (one["batch"], three["batch"]) == (1, 3)
        assert three["seconds_per_clip"] == pytest.approx(three["seconds"] / 3, rel=0.01)
        assert one["real_time_factor"] == pytest.approx(one["seconds"] / 0.4, rel=0.05)
    assert all(runs["same_greedy_tokens"] == 1.0 for runs in result["runs"].values())  # fp32: the same tokens
    assert set(result["speedup_at_batch_1_over_dynamic"]) == {"no_cache", "dynamic", "static"}


def test_per_clip_seeds_make_each_clip_independent_of_its_batch(model):
    """`vmas test` on 1 or N devices: a clip's music depends on its seed, not on its batch mates."""
    from vmas_lightning.generation.sampling import clip_seed

    clips = video(1.0, seed=3, batch=2)
    seeds = [clip_seed(0, "a"), clip_seed(0, "b")]
    generator = MusicGenerator(model, GenerationConfig(top_k=50))
    together = generator.generate(clips, seeds=seeds)
    alone = [generator.generate(clips[i : i + 1], seeds=seeds[i : i + 1]) for i in range(2)]
    torch.testing.assert_close(together, torch.cat(alone), rtol=0, atol=0)
    assert not torch.equal(together[0], together[1])
    assert clip_seed(0, "a") != clip_seed(1, "a")
