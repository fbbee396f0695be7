"""Every task through the command line on a tiny model: unconditional/class-conditional sampling,
vocoding (--cond mel=FILE), inpainting (--inpaint --mask), evaluation, and bad inputs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from polydiff.cli import app

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from _cliassert import assert_one_line_error  # noqa: E402

TOML = """
[data]
sample_rate = 8000
clip_seconds = 0.25
n_fft = 256
hop_length = 64
n_mels = 20
train_crop = 640
train_size = 16
test_size = 8
[model]
residual_layers = 3
residual_channels = 8
dilation_cycle = 3
embedding_dim = 16
mel = true
[train]
steps = 3
batch_size = 4
log_every = 1
threads = 1
[sample]
n = 3
steps = 2
inpaint_steps = 2
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny class- and mel-conditioned model, trained once for the module."""
    root = tmp_path_factory.mktemp("audio-cli")
    (root / "tiny.toml").write_text(TOML)
    t = np.arange(6000) / 12000
    sf.write(root / "clip.wav", np.stack([0.3 * np.sin(2 * np.pi * 330 * t)] * 2, axis=1), 12000)
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    result = CliRunner().invoke(
        app, ["train", "-m", "audio", "--config", str(root / "tiny.toml"), "--out", str(root / "run")]
    )
    assert result.exit_code == 0, result.output
    return root


def _invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_training_wrote_whole_clips(run):
    audio, rate = sf.read(run / "run" / "samples" / "sample_0000.wav")
    assert rate == 8000 and audio.shape == (2000,)  # whole clips, though trained on 640-sample crops
    assert (run / "run" / "samples" / "sample_grid.png").is_file()


def test_class_conditional_sampling(run):
    result = _invoke("sample", run / "run", "--class", "3", "--guidance", "2", "--out", run / "cls")
    assert result.exit_code == 0, result.output
    assert len(list((run / "cls").glob("sample_*.wav"))) == 3
    result = _invoke("sample", run / "run", "--class", "none", "--cond", "mel=none", "--out", run / "uncond")
    assert result.exit_code == 0, result.output  # the unconditional model (null label and mel)
    assert len(list((run / "uncond").glob("sample_*.wav"))) == 3


def test_vocoding_a_file(run):
    result = _invoke("sample", run / "run", "--cond", f"mel={run / 'clip.wav'}", "--n", "2", "--out", run / "voc")
    assert result.exit_code == 0, result.output
    from PIL import Image

    with Image.open(run / "voc" / "sample_grid.png") as grid, Image.open(run / "voc" / "sample_0000.png") as one:
        assert grid.width > 2 * one.width  # input and output side by side
    # the mel projection (sample.mel_projection_iters, on by default) brings even this 3-step
    # network's output to the input's spectrogram; the network alone scores above 7 here
    import torch
    from polydiff_audio.inputs import read_clip
    from polydiff_audio.spectral import log_mel_l1

    from polydiff.cli.runs import open_record

    cfg = open_record(run / "run")[0]
    wave, _ = sf.read(run / "voc" / "sample_0000.wav")
    given = read_clip(run / "clip.wav", cfg)
    assert float(log_mel_l1(torch.tensor(wave, dtype=torch.float32)[None], given, cfg["data"])) < 1.5


def test_inpainting_keeps_the_known_part(run):
    result = _invoke("sample", run / "run", "--inpaint", run / "clip.wav", "--mask", "0.4:0.6",
                     "--cond", "mel=none", "--n", "2", "--out", run / "inp")
    assert result.exit_code == 0, result.output
    given, _ = sf.read(run / "inp" / "inpaint_input.wav")
    done, _ = sf.read(run / "inp" / "inpaint_0000.wav")
    keep = np.ones(2000, dtype=bool)
    keep[800:1200] = False
    assert np.abs(done[keep] - given[keep]).max() < 2e-4  # 16-bit rounding only
    assert np.abs(given[~keep]).max() == 0 and np.abs(done[~keep]).max() > 0
    assert (run / "inp" / "inpaint_panel.png").is_file()


def test_evaluate_reports_pitch_and_vocoding(run):
    result = _invoke("evaluate", run / "run", "--n", "8")
    assert result.exit_code == 0, result.output
    for key in ("pitch_accuracy", "pitch_coverage", "kid", "cond_mel_l1", "mr_stft", "mcd"):
        assert key in result.output
    # DiffWave's table in the shipped classifier's features, with the train set's own row
    for key in ("notes-classifier", "fid", "mis", "am", "ndb_k", "train_set/fid"):
        assert key in result.output


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--inpaint", "broken.wav", "--mask", "0.4:0.6"], ["broken.wav", "not a readable audio file"]),
        (["--inpaint", "clip.wav", "--mask", "0.4-0.6"], ["--mask 0.4-0.6", "START:END"]),
        (["--inpaint", "clip.wav", "--mask", "0.6:1.5"], ["fractions must lie in [0, 1]"]),
        (["--cond", "mel=broken.wav"], ["broken.wav", "not a readable audio file"]),
        (["--cond", "mel=missing.wav"], ["missing.wav", "no such file"]),
    ],
    ids=["corrupt-input", "bad-mask", "mask-range", "corrupt-mel", "missing-mel"],
)
def test_bad_inputs_are_one_line(run, args, needles):
    args = [a.replace("mel=", f"mel={run}/") if a.startswith("mel=") else str(run / a) if a.endswith(".wav") else a
            for a in args]
    assert_one_line_error(_invoke("sample", run / "run", *args), *needles)


def test_mel_condition_needs_a_mel_model(tmp_path):
    from polydiff_audio import AudioModality

    from polydiff.errors import UserError

    with pytest.raises(UserError, match="not mel-conditioned"):
        AudioModality().read_condition("mel", "x.wav", {"model": {"mel": False}}, 2)


def test_bad_training_folder_is_one_line(run, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.wav").write_bytes(b"")
    result = _invoke("train", "-m", "audio", "--data", tmp_path / "data", "--config", run / "tiny.toml",
                     "--out", tmp_path / "r")
    # the core prints the run header first; the error itself is one line naming the file
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if "x.wav" in ln]
    assert len(lines) == 1 and "not a readable audio file" in lines[0], result.output


@pytest.mark.parametrize("section, value, needles", [
    ("model", "residual_layers = 0", ["model.residual_layers", "[1, 256]"]),
    ("model", "embedding_dim = 127", ["model.embedding_dim", "even"]),
    ("data", "clip_seconds = -1.0", ["data.clip_seconds"]),
    ("model", "context_channels = -4", ["model.context_channels"]),
])
def test_out_of_range_settings_are_one_line(tmp_path, section, value, needles):
    """Declared in the plugin's config_schema (or checked where the network is built): one line,
    exit 2, and no run folder left behind."""
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f"[{section}]\n{value}\n")
    out = tmp_path / "run"
    assert_one_line_error(_invoke("train", "--modality", "audio", "--config", str(cfg), "--steps", "1",
                                  "--out", str(out)), *needles)
    assert not out.exists()


def test_classifier_floor_script_refuses_a_folder_that_is_not_a_run(tmp_path):
    import subprocess

    script = Path(__file__).resolve().parents[1] / "scripts" / "classifier_floor.py"
    done = subprocess.run([sys.executable, str(script), "--run", str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "not a run folder" in done.stderr
    assert "Traceback" not in done.stderr


def test_classifier_floor_script_decomposes_a_runs_fid_by_noise_level(run):
    """``--from-sigma``: test clips noised to a level, brought back by the run's denoiser, scored;
    the noise left is reported. The tiny net barely denoises (an EDM net starts as c_skip · x), so
    what is left of sigma 0.01 is about -40 dBFS: the level reached the clips at the right scale."""
    import re
    import subprocess

    script = Path(__file__).resolve().parents[1] / "scripts" / "classifier_floor.py"
    done = subprocess.run([sys.executable, str(script), "--run", str(run / "run"), "--n", "4", "--no-samples",
                           "--from-sigma", "0.01"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    row = re.search(r"4 test clips noised to sigma 0.01 and denoised \((-?[0-9.]+) dBFS rms left; "
                    r"one call removes (-?[0-9.]+) dB\) \| ([0-9.]+) \|", done.stdout)
    assert row, done.stdout
    assert -43.0 < float(row.group(1)) < -37.0
    assert -3.0 < float(row.group(2)) < 3.0
    # group 3 is the FID; on 4 clips it is small-sample bias, so it is not compared
    assert "samples of" not in done.stdout  # --no-samples


@pytest.mark.parametrize("levels", ["abc", "0.01,-1", "0"])
def test_classifier_floor_script_refuses_bad_levels_in_one_line(levels, tmp_path):
    """A bad --from-sigma is refused before the run is opened or anything is sampled."""
    import subprocess

    script = Path(__file__).resolve().parents[1] / "scripts" / "classifier_floor.py"
    done = subprocess.run([sys.executable, str(script), "--run", str(tmp_path), "--from-sigma", levels],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0 and "--from-sigma" in done.stderr
    assert "Traceback" not in done.stderr


def test_long_preset_resolves_to_the_default_with_more_steps_and_a_cosine():
    """presets/long.toml passes the config checks `polydiff train --config` makes, and changes
    only the two keys its comment names."""
    from polydiff_audio import modality

    from polydiff.config import defaults_for, resolve

    preset = Path(__file__).resolve().parents[1] / "presets" / "long.toml"
    cfg, base = resolve(modality, preset), defaults_for(modality)
    assert (cfg["train"]["steps"], cfg["train"]["lr_schedule"]) == (2500, "cosine")
    cfg["train"]["steps"], cfg["train"]["lr_schedule"] = base["train"]["steps"], base["train"]["lr_schedule"]
    assert cfg == base


def _script(name: str):
    """A module of ``modalities/audio/scripts``, imported from its file."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_classifier_floor_detunes_the_test_clips_themselves():
    """The detuned probe redraws the test split: at 0 cents it is the split, sample for sample."""
    import torch

    floor = _script("classifier_floor")
    assert torch.equal(floor._detuned(0.0, 9), floor._clips("test", 9))
    assert not torch.equal(floor._detuned(10.0, 9), floor._clips("test", 9))


def test_oracle_filter_script_matches_the_wiener_gain_of_one_tap():
    """One tap is a scalar gain: on a sine of power P in noise of variance s^2 the least-squares
    gain removes 10 log10(1 + s^2/P) dB of the noise (4.77 dB for P = 0.125, s = 0.5)."""
    module = _script("oracle_filter")
    sine = 0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    got = module.removed_db(sine, 0.5, 1, np.random.default_rng(0))
    assert abs(got - 10 * np.log10(3.0)) < 0.15
    # a longer filter is a band-pass around the tone: it removes what a gain cannot (0.003 dB here)
    assert module.removed_db(sine, 0.01, 65, np.random.default_rng(0)) > 5.0


def test_context_model_trains_on_whole_clips_and_sees_past_its_receptive_field(tmp_path):
    """The long-context option through the CLI (whole-clip training, sampling), then the trained
    network's output at the first sample moves with audio far beyond the WaveNet's receptive field."""
    import torch
    from polydiff_audio.wavenet import build_wavenet

    from polydiff.cli.runs import load_denoiser, open_record

    cfg = tmp_path / "ctx.toml"
    cfg.write_text(TOML.replace("mel = true", "mel = false\ncontext_channels = 4\ncontext_layers = 5")
                   .replace("train_crop = 640", "train_crop = 0"))
    result = _invoke("train", "-m", "audio", "--config", cfg, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    audio, _ = sf.read(tmp_path / "run" / "samples" / "sample_0000.wav")
    assert audio.shape == (2000,)
    record, _, plugin = open_record(tmp_path / "run")
    net = load_denoiser(tmp_path / "run", plugin, record, device="cpu").denoiser.net
    assert net.context is not None and net.receptive_field < 1000
    x = torch.randn(1, 1, 2000)
    far = x.clone()
    far[..., 1000:] += 1.0  # far past the WaveNet's receptive field, inside the branch's 31 frames
    with torch.no_grad():
        got = net(x, torch.zeros(1)), net(far, torch.zeros(1))
    # the zero-initialised output layer after 3 steps: small, but exactly 0 without the branch
    assert not torch.equal(got[0][..., 0], got[1][..., 0])
    plain = build_wavenet({**record["model"], "context_channels": 0}, record["data"], 0)
    with torch.no_grad():  # without the branch the first sample cannot see that far
        assert torch.equal(plain(x, torch.zeros(1))[..., 0], plain(far, torch.zeros(1))[..., 0])
