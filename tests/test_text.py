"""Text and video together: the text conditioners, captions from the data to the decoder, guidance by both,
`vmas generate --text`, `vmas test`'s text_from, and video-only checkpoints as before."""
import dataclasses
import json

import numpy as np
import pytest
import torch
from litdata import StreamingDataset

from helpers import TINY_CONFIG, fit_tiny, one_line_error
from vmas_lightning.cli.main import main
from vmas_lightning.config_file import load_config
from vmas_lightning.data.demo import CAPTION_WORDS, STYLES, clip_caption, synthesize_clip
from vmas_lightning.errors import VMASError
from vmas_lightning.generation.checkpoint import load_for_inference
from vmas_lightning.generation.generator import GuidanceRow, MusicGenerator, guidance_rows
from vmas_lightning.lit_module import VMASModule
from vmas_lightning.registry import TEXT_CONDITIONERS
from vmas_lightning.sequence import SequenceConfig

CAPTIONS = ["fast 140 bpm, short hollow square-wave plucks", "slow tempo, 80 bpm, gentle sine tones"]


def tiny_text_module(**changes) -> VMASModule:
    run = load_config([TINY_CONFIG], overrides=["--model.text", "words"], trainer=False)
    torch.manual_seed(0)
    return VMASModule(**{**vars(run.model), **changes}).eval()


def test_words_are_hashed_the_same_everywhere_and_padding_is_masked():
    encoder = TEXT_CONDITIONERS.build({"name": "words", "dim": 32, "num_heads": 2, "max_tokens": 6})
    ids = encoder.token_ids(["Fast, fast 140 BPM!", "", "one two three four five six seven"])
    assert ids[0, 0] == ids[0, 1] and ids[0, 3] > 0 and ids[0, 4:].eq(0).all()  # case and punctuation ignored
    assert ids[1].eq(0).all() and ids[2].gt(0).all()  # empty; cut at max_tokens
    features, mask = encoder(["Fast, fast 140 BPM!", "", "one two three four five six seven"])
    assert features.shape == (3, 6, 32) and torch.isfinite(features).all()
    assert mask.tolist()[0] == [True] * 4 + [False] * 2 and not mask[1].any()


def test_memory_of_a_missing_or_dropped_caption_is_the_null_text():
    model = tiny_text_module().model
    memory = model.text_memory([CAPTIONS[0], "", CAPTIONS[1]], 3, drop=torch.tensor([False, False, True]))
    null = model.text.null_memory(1)[0]
    assert memory.shape == (3, model.text.max_tokens, model.decoder.width)
    torch.testing.assert_close(memory[1], null)
    torch.testing.assert_close(memory[2], null)
    assert not torch.allclose(memory[0], null)
    assert memory[0, 8:].abs().max() == 0 and memory[0, 7].abs().max() > 0  # padding after its 8 words: zeroed (as MusicGen)
    torch.testing.assert_close(model.text_memory(None, 2), null.expand(2, -1, -1))
    for caption in ("!!! ...", "音乐"):  # no word `words` keeps (letters a-z and digits): no caption
        torch.testing.assert_close(model.text_memory([caption], 1)[0], null)
    assert tiny_text_module(text=None).model.text_memory(CAPTIONS, 2) is None  # a video-only model has none


def test_the_decoder_hears_the_caption_and_training_drops_each_condition_on_its_own():
    module = tiny_text_module()
    model = module.model
    video = torch.rand(2, 3, 96, 64, 64)
    tokens = torch.randint(0, model.codec.codebook_size, (2, 4, 50))
    features = model.encode_video(video)
    with torch.no_grad():
        given = model(features, tokens, captions=CAPTIONS)
        swapped = model(features, tokens, captions=CAPTIONS[::-1])
        none = model(features, tokens)
        dropped = model(features, tokens, captions=CAPTIONS, drop_text=torch.tensor([True, True]))
    assert not torch.allclose(given, swapped, atol=1e-4)
    torch.testing.assert_close(none, dropped)
    model.train()
    drops = []
    forward_text = model.text.forward
    model.text.forward = lambda captions, batch, drop=None: drops.append(drop) or forward_text(captions, batch, drop)
    for rate in (1.0, 0.0):
        model.text_dropout = rate
        with torch.no_grad():
            model(features, tokens, captions=CAPTIONS, drop_condition=torch.tensor([False, False]))
    assert drops[0].tolist() == [True, True] and drops[1].tolist() == [False, False]  # drawn in training, apart from the video's


def test_guidance_rows_run_only_what_the_scales_need():
    assert guidance_rows(1.0, 3.0, with_text=False) == [GuidanceRow(True, False, 1.0)]
    assert guidance_rows(1.5, 3.0, with_text=False) == [GuidanceRow(True, False, 1.5), GuidanceRow(False, False, 0.0)]
    assert guidance_rows(1.5, 2.0, with_text=True) == [GuidanceRow(True, False, 1.5), GuidanceRow(False, True, 2.0),
                                                       GuidanceRow(False, False, 0.0)]
    assert guidance_rows(0.0, 2.0, with_text=True) == [GuidanceRow(False, True, 2.0), GuidanceRow(False, False, 0.0)]


def test_composed_guidance_is_the_sum_of_each_conditions_pull():
    """One step's guided logits, from the generator, against the formula on three separate forwards."""
    model = tiny_text_module().model
    video = torch.rand(1, 3, 96, 64, 64)
    features = model.encode_video(video)
    config = dataclasses.replace(model_generation(), cfg_scale=1.5, text_cfg_scale=2.5, temperature=0.0, use_cache=False)
    generator = MusicGenerator(model, config)
    seen = []
    real_decode = generator.decode_function

    def recording(cond, length, text=None):
        run = real_decode(cond, length, text)

        def wrapped(input_ids, start):
            logits = run(input_ids, start)
            seen.append((input_ids.clone(), logits.clone()))
            return logits
        return wrapped

    generator.decode_function = recording
    generator.generate_window(features, torch.zeros(1, 4, 0, dtype=torch.long), 2, text=model.text_memory(CAPTIONS[:1], 1))
    inputs, logits = seen[0]
    assert inputs.shape[0] == 3  # video, text, null
    null_video = model.null_features(1, features.shape[1])
    with torch.no_grad():
        def forward(cond, text):
            return model.decoder(inputs[:1], cond, text=text)[0][:, :, -1]
        video_row = forward(features, model.text_memory(None, 1))
        text_row = forward(null_video, model.text_memory(CAPTIONS[:1], 1))
        null_row = forward(null_video, model.text_memory(None, 1))
    torch.testing.assert_close(logits[:, :, -1], torch.cat([video_row, text_row, null_row]), atol=1e-5, rtol=1e-5)


def model_generation():
    return load_config([TINY_CONFIG], trainer=False).model.generation


@pytest.mark.parametrize("captions", [CAPTIONS, ["", ""]])
def test_static_and_dynamic_caches_give_the_same_music_with_text(captions):
    model = tiny_text_module().model
    video = torch.rand(2, 3, 12, 64, 64)  # 1.25 s: 63 tokens
    config = dataclasses.replace(model_generation(), seed=3, cfg_scale=1.5, text_cfg_scale=2.0)
    dynamic = MusicGenerator(model, config).generate(video, captions=captions)
    static = MusicGenerator(model, dataclasses.replace(config, static_cache=True)).generate(video, captions=captions)
    uncached = MusicGenerator(model, dataclasses.replace(config, use_cache=False)).generate(video, captions=captions)
    assert torch.equal(dynamic, static) and torch.equal(dynamic, uncached)
    without = MusicGenerator(model, config).generate(video)
    assert torch.equal(dynamic, without) == (captions == ["", ""])  # empty captions: video only
    ignored = MusicGenerator(model, dataclasses.replace(config, text_cfg_scale=0.0)).generate(video, captions=CAPTIONS)
    assert torch.equal(ignored, without)  # text guidance 0: the caption is not run


def test_a_long_video_makes_the_null_text_once_for_all_its_windows():
    model = tiny_text_module().model
    config = dataclasses.replace(model_generation(), seed=3, cfg_scale=1.5, text_cfg_scale=2.0, window_s=1.0, overlap_s=0.5)
    generator = MusicGenerator(model, config)
    assert len(generator.plan_windows(model.sequence.tokens_for(2.0))) == 3
    calls = []
    text_memory = model.text_memory
    model.text_memory = lambda captions, batch, drop=None: calls.append(captions) or text_memory(captions, batch, drop)
    made = generator.generate(torch.rand(1, 3, 20, 64, 64), duration_s=2.0, captions=CAPTIONS[:1])
    assert calls == [CAPTIONS[:1], None]  # the caption and the null text, each once for the three windows
    assert made.shape == (1, 4, model.sequence.tokens_for(2.0))


def test_a_video_only_model_refuses_captions():
    model = tiny_text_module(text=None).model
    with pytest.raises(VMASError, match="no text conditioning"):
        MusicGenerator(model, model_generation()).generate(torch.rand(1, 3, 20, 64, 64), captions=CAPTIONS[:1])


def test_demo_captions_describe_the_music_not_the_picture():
    seq = SequenceConfig(frame_size=32)
    colours = {"blue", "green", "red", "orange", "black", "purple", "teal", "yellow", "white", "dark", "warm", "colour", "color"}
    for index in range(12):
        clip = synthesize_clip(0, "test", index, seq)
        style = clip["meta"]["style"]
        words = set(clip["caption"].replace(",", " ").split())
        assert not words & colours, clip["caption"]
        for aspect, phrases in CAPTION_WORDS[style].items():  # one phrase of each aspect of its own style
            assert sum(phrase in clip["caption"] for phrase in phrases) == 1, (aspect, clip["caption"])
        assert clip["caption"] == clip_caption(0, "test", index)
    other = next(s.name for s in STYLES if s.name != style)
    assert any(phrase in clip_caption(0, "test", 11, other) for phrase in CAPTION_WORDS[other]["key"])
    # the caption has its own random stream: frames and music are those of a clip without one
    again = synthesize_clip(0, "test", 11, seq)
    assert np.array_equal(again["frames"], clip["frames"]) and np.array_equal(again["audio"], clip["audio"])


def test_demo_shards_hold_captions_and_batches_carry_them(demo_data):
    from vmas_lightning.data.datamodule import VMASDataModule

    stored = StreamingDataset(str(demo_data / "test"))[0]
    assert stored["caption"] == clip_caption(0, "test", 0)
    run = load_config([TINY_CONFIG], overrides=["--data.root", str(demo_data), "--data.num_workers", "0"], trainer=False)
    data = VMASDataModule(**vars(run.data))
    data.setup("test")
    batch = next(iter(data.test_dataloader()))
    assert batch["caption"] == [clip_caption(0, "test", index) for index in range(len(batch["id"]))]


@pytest.fixture(scope="module")
def text_ckpt(demo_data, tmp_path_factory):
    """The tiny config with the `words` conditioner, 2 steps on the demo data (with captions)."""
    return fit_tiny(demo_data, tmp_path_factory.mktemp("text_fit"), "--model.text", "words")


def test_generate_with_text_and_the_video_only_path_unchanged(text_ckpt, tiny_ckpt, tmp_path, capsys):
    from media import make_video

    video = make_video(tmp_path / "clip.mp4", 2.0, 24)
    model, _, config = load_for_inference(text_ckpt)
    assert model.text is not None and config.text_cfg_scale == 3.0
    args = ["generate", "--ckpt", str(text_ckpt), "--video", str(video), "--seed", "0", "--no-video"]
    assert main([*args, "--out", str(tmp_path / "text"), "--text", CAPTIONS[0], "--text-guidance", "2"]) == 0
    assert main([*args, "--out", str(tmp_path / "other"), "--text", CAPTIONS[1], "--text-guidance", "2"]) == 0
    assert main([*args, "--out", str(tmp_path / "none")]) == 0
    assert main([*args, "--out", str(tmp_path / "text_only"), "--text", CAPTIONS[0], "--cfg-scale", "0"]) == 0
    import soundfile
    wavs = {name: soundfile.read(tmp_path / f"{name}.wav")[0] for name in ("text", "other", "none", "text_only")}
    assert len({wav.tobytes() for wav in wavs.values()}) == 4  # each condition its own music
    # a checkpoint without text: loads and runs as before, and refuses a caption in one line
    assert main(["generate", "--ckpt", str(tiny_ckpt), "--video", str(video), "--out", str(tmp_path / "plain"), "--no-video"]) == 0
    capsys.readouterr()
    assert main(["generate", "--ckpt", str(tiny_ckpt), "--video", str(video), "--out", str(tmp_path / "x"), "--text", "fast"]) == 2
    assert "has no text conditioning" in one_line_error(capsys)
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.slow
def test_vmas_test_text_from_captions_or_none(text_ckpt, demo_data, tmp_path):
    results = {}
    for source in ("captions", "none"):
        out = tmp_path / source
        assert main(["test", "--config", str(TINY_CONFIG), "--model.text", "words", "--ckpt_path", str(text_ckpt),
                     "--data.root", str(demo_data), "--data.num_workers", "0", "--trainer.default_root_dir", str(out),
                     "--model.evaluation.text_from", source, "--model.evaluation.output_dir", str(out / "test"),
                     "--model.evaluation.reference_rows", "false", "--model.evaluation.mv_align_source", "false",
                     "--model.generation.seed", "0"]) == 0
        results[source] = json.loads((out / "test" / "metrics.json").read_text())
        assert results[source]["text_from"] == source
    wav = sorted((tmp_path / "captions" / "test" / "audio").glob("*.wav"))[0]
    assert wav.read_bytes() != (tmp_path / "none" / "test" / "audio" / wav.name).read_bytes()


def test_a_video_only_checkpoint_starts_a_model_with_text(demo_data, tiny_ckpt, tmp_path, capsys):
    """`init_from` a video-only model: every one of its weights is taken, the text parts start untrained; a
    checkpoint that lacks other weights is still refused in one line."""
    tuned = fit_tiny(demo_data, tmp_path / "tuned", "--model.text", "words", "--model.init_from", str(tiny_ckpt),
                     "--model.optim.lr", "1e-12")
    given = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)["state_dict"]
    tuned = torch.load(tuned, map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.allclose(tuned[k].float(), given[k].float(), atol=1e-5) for k in given if given[k].is_floating_point())
    assert any(key.startswith("model.text.") for key in tuned)
    capsys.readouterr()
    args = ["fit", "--config", str(TINY_CONFIG), "--model.text", "words", "--data.root", str(demo_data),
            "--trainer.default_root_dir", str(tmp_path / "bad"), "--trainer.max_steps", "1", "--data.num_workers", "0",
            "--model.init_from", str(tiny_ckpt), "--model.decoder.width", "32"]
    assert main(args) == 2
    assert "its weights do not fit this config's model" in one_line_error(capsys)


def test_print_config_shows_every_text_setting(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(TINY_CONFIG), "--model.text", "words", "--print_config"])
    out = capsys.readouterr().out
    for line in ("  text:\n    name: words\n    dim: 128\n", "  text_dropout: 0.3\n", "    text_cfg_scale: 3.0\n",
                 "    text_from: captions\n"):
        assert line in out, line
    assert main(["fit", "--config", str(TINY_CONFIG), "--model.evaluation.text_from", "other"]) == 2
    assert "model.evaluation.text_from" in one_line_error(capsys)


def test_serve_takes_a_caption_for_a_model_with_text_and_refuses_one_otherwise(text_ckpt, tiny_ckpt, tmp_path):
    import sqlite3
    import time

    import requests
    from media import make_video
    from served import serve_in_thread
    from vmas_lightning.generation.pipeline import Generation, GenerationOptions
    from vmas_lightning.serve.app import create_app
    from vmas_lightning.serve.jobs import SCHEMA, JobQueue
    from vmas_lightning.serve.settings import ServeSettings
    from vmas_lightning.serve.study import StudyStore

    video = make_video(tmp_path / "clip.mp4", 2.0, 24).read_bytes()
    old = tmp_path / "with_text" / "jobs.sqlite"  # a jobs database of the version before captions
    old.parent.mkdir()
    with sqlite3.connect(old) as db:
        db.executescript(SCHEMA.replace(", text TEXT NOT NULL DEFAULT ''", ""))
    for ckpt, folder in ((text_ckpt, "with_text"), (tiny_ckpt, "video_only")):
        queue = JobQueue(Generation(GenerationOptions(ckpt=str(ckpt), device="cpu")), tmp_path / folder, max_bytes=10**6,
                         max_video_s=3.0, keep_s=600.0)
        app = create_app(ServeSettings(ckpt=str(ckpt), admin_token="x" * 8), queue, StudyStore(tmp_path / f"{folder}.sqlite"))
        with serve_in_thread(app) as url:
            page = requests.get(url, timeout=30).text
            assert ('id="text"' in page) == (folder == "with_text")
            if folder == "video_only":
                response = requests.post(f"{url}/api/jobs?name=clip.mp4&text=fast", data=video, timeout=60)
                assert response.status_code == 422 and "no text conditioning" in response.json()["error"]
                continue
            response = requests.post(f"{url}/api/jobs?name=clip.mp4&text={'a' * 501}", data=video, timeout=60)
            assert response.status_code == 422 and "at most 500 characters" in response.json()["error"]
            assert [p.name for p in (tmp_path / folder).iterdir()] == ["jobs.sqlite"], "nothing was received"
            wavs = []
            for query in (f"text={CAPTIONS[0]}&text_cfg_scale=2", ""):
                job = requests.post(f"{url}/api/jobs?name=clip.mp4&seed=3&{query}", data=video, timeout=60).json()
                deadline = time.time() + 120
                while (status := requests.get(f"{url}/api/jobs/{job['id']}", timeout=30).json())["state"] != "done":
                    assert time.time() < deadline and status["state"] in ("queued", "running"), status
                    time.sleep(0.2)
                wavs.append(requests.get(f"{url}/api/jobs/{job['id']}/wav", timeout=30).content)
            assert queue._execute("SELECT text FROM jobs")[0]["text"] in (CAPTIONS[0], "")
            assert wavs[0][:4] == b"RIFF" and wavs[0] != wavs[1]  # the caption changed the music
