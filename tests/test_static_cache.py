"""The static key/value cache and compiled decode step give what transformers' dynamic cache gives."""
import pytest
import torch

from vmas_lightning.errors import VMASError
from vmas_lightning.generation import GenerationConfig, MusicGenerator
from vmas_lightning.models.vmas import VMASModel
from vmas_lightning.sequence import SequenceConfig

SEQUENCE = SequenceConfig(duration_s=2.5, frame_size=64)  # 125-token windows over 24 frames
ENCODER = {"name": "efficient_hiera", "size": "tiny", "q_strides": [[1, 4, 4], [1, 2, 2], [1, 2, 2]]}
PLAIN = {"name": "musicgen", "size": "tiny"}
ALIGNED = {"name": "musicgen", "size": "tiny", "time_embedding": True, "aligned_condition": True,  # as configs/demo.yaml
           "aligned_upsample": 2, "aligned_interpolation": "linear"}


def tiny_model(decoder: dict) -> VMASModel:
    torch.manual_seed(0)
    model = VMASModel(encoder=ENCODER, decoder=decoder, codec={"name": "encodec", "size": "tiny"}, sequence=SEQUENCE).eval()
    with torch.no_grad():  # random weights barely listen to the video: make the condition count
        model.null_condition.normal_()
        model.decoder.cond_proj.weight.mul_(50)
    return model


@pytest.fixture(scope="module", params=[PLAIN, ALIGNED], ids=["plain", "aligned"])
def model(request):
    return tiny_model(request.param)


def clips(seconds: float, batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, SEQUENCE.frames_for(seconds), 64, 64, generator=torch.Generator().manual_seed(0))


def test_static_logits_equal_the_decoder_forward_prefilled_and_step_by_step(model):
    decoder = model.decoder
    cond = torch.randn(3, 10, model.encoder.out_dim)  # a short last window: 10 of the 12 condition steps
    ids = torch.randint(0, decoder.pad_token_id + 1, (3, 4, 40))
    with torch.no_grad():
        reference, _ = decoder(ids, cond)
        static = decoder.static_decoder(3, 64, 12)
        static.reset(torch.randn(3, 12, model.encoder.out_dim))  # a previous window's state must not leak
        static.reset(cond)
        prefilled = static(ids[:, :, :25], torch.arange(25))
        stepped = [static(ids[:, :, j : j + 1], torch.arange(j, j + 1)) for j in range(25, 40)]
    torch.testing.assert_close(prefilled, reference[:, :, :25], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.cat(stepped, dim=2), reference[:, :, 25:], rtol=1e-4, atol=1e-4)
    assert decoder.static_decoder(3, 64, 12) is static  # kept for the next window of that shape
    assert not any("static" in name for name in model.state_dict())  # a cache, not weights


@pytest.mark.parametrize("temperature", [0.0, 1.0], ids=["greedy", "seeded"])
def test_static_cache_gives_the_dynamic_cache_tokens_across_windows(model, temperature):
    """6 s over 2.5-s windows: prompts carried between windows, a shorter last condition."""
    config = dict(seed=3, overlap_s=1.0, temperature=temperature, top_k=50)
    video = clips(6.0)
    dynamic = MusicGenerator(model, GenerationConfig(**config)).generate(video, duration_s=6.0)
    static = MusicGenerator(model, GenerationConfig(**config, static_cache=True)).generate(video, duration_s=6.0)
    assert dynamic.shape == (2, 4, 300)
    assert torch.equal(static, dynamic)
    other = MusicGenerator(model, GenerationConfig(**{**config, "seed": 4}, static_cache=True)).generate(video, duration_s=6.0)
    assert temperature == 0.0 or not torch.equal(other, static)  # the seed still decides sampled music


@pytest.mark.slow
def test_compiled_step_gives_the_eager_tokens():
    """torch.compile of the one-position step (inductor on CPU; CUDA graphs on a GPU: benchmarks/generate.py)."""
    model = tiny_model(ALIGNED)
    config = dict(seed=5, top_k=50, static_cache=True)
    eager = MusicGenerator(model, GenerationConfig(**config)).generate(clips(2.5), duration_s=2.5)
    compiled = MusicGenerator(model, GenerationConfig(**config, decode_step="torch_compile")).generate(clips(2.5), duration_s=2.5)
    assert torch.equal(compiled, eager)


def test_static_cache_settings_are_checked():
    with pytest.raises(VMASError, match="static_cache needs use_cache"):
        GenerationConfig(use_cache=False, static_cache=True)
    with pytest.raises(VMASError, match="decode_step torch_compile needs static_cache"):
        GenerationConfig(decode_step="torch_compile")
    with pytest.raises(VMASError, match="decode_step must be one of eager, cuda_graph, torch_compile"):
        GenerationConfig(static_cache=True, decode_step="graph")


def test_under_autocast_it_computes_as_autocast_does_and_follows_weight_updates(model):
    """Generation under bf16 autocast (CUDA's, here CPU's): the cache computes with a copy whose linear
    weights are bf16 (norms, embeddings and the residual stream float32, as autocast keeps them), so
    its logits are the dynamic path's under autocast; the copy is refreshed at each window, so a
    decoder still training is never read stale."""
    decoder = model.decoder
    cond = torch.randn(2, 12, model.encoder.out_dim)
    ids = torch.randint(0, decoder.pad_token_id, (2, 4, 20))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        static = decoder.static_decoder(2, 32, 12, torch.bfloat16)
        assert static.net is not decoder and static.net.lm.lm_heads[0].weight.dtype == torch.bfloat16
        assert static.net.lm.model.decoder.layers[0].final_layer_norm.weight.dtype == torch.float32
        static.reset(cond)
        before = static(ids, torch.arange(20)).float()
        reference = decoder(ids, cond)[0].float()
        torch.testing.assert_close(before, reference, rtol=0.02, atol=0.02)  # bf16 rounding of the same operations
        assert (before.argmax(-1) == reference.argmax(-1)).float().mean() > 0.98
        original = decoder.lm.lm_heads[0].weight.clone()
        decoder.lm.lm_heads[0].weight.mul_(-1)  # an optimizer step, say
        try:
            static.reset(cond)
            after = static(ids, torch.arange(20)).float()
            torch.testing.assert_close(after[:, 0], -before[:, 0])
            torch.testing.assert_close(after[:, 1:], before[:, 1:])
        finally:
            decoder.lm.lm_heads[0].weight.copy_(original)
    assert next(decoder.parameters()).dtype == torch.float32  # the model itself is left as it was
    decoder.release_static_decoders()


def test_caches_made_under_inference_mode_work_outside_it(model):
    """`vmas test` generates under Lightning's inference mode; the kept cache must serve later windows too."""
    video = clips(1.0, batch=1)
    config = GenerationConfig(seed=1, top_k=50, static_cache=True)
    with torch.inference_mode():
        inside = MusicGenerator(model, config).generate(video)
    outside = MusicGenerator(model, config).generate(video)
    assert torch.equal(inside, outside)


def test_cuda_graph_step_without_cuda_is_one_line(model):
    if torch.cuda.is_available():
        pytest.skip("CUDA is here: benchmarks/generate.py checks the graphed step's tokens")
    config = GenerationConfig(static_cache=True, decode_step="cuda_graph")
    with pytest.raises(VMASError, match="decode_step cuda_graph needs a CUDA device"):
        MusicGenerator(model, config).generate(clips(1.0, batch=1))
