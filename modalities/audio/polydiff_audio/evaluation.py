"""Sample quality for audio: pitch metrics on ``notes``, distribution distances, vocoding distances.

``polydiff evaluate RUN`` reports, under ``quality``:

- ``notes`` only — ``pitch_accuracy`` (share of clips whose YIN f0 lies within a quarter-tone of a
  data set pitch), ``pitch_coverage`` (share of the pitches hit), ``voiced`` and, for a
  class-conditional run, ``label_accuracy`` (nearest pitch = the requested class);
- ``kid``, ``precision``, ``recall`` (and ``fd`` when there are more samples than feature
  dimensions) against the test split, in the features of ``--features`` when given, else in
  *log-mel statistics* (per-band mean and standard deviation of the normalised log-mel over time:
  a fixed feature space that needs no trained network);
- mel-conditioned runs — ``cond_mel_l1`` (normalised log-mel of each sample against its
  condition) and, when every condition is the mel of a clip of the data (the default layout),
  ``mr_stft``, ``log_mel_l1`` and ``mcd`` against those clips.

``reference/…`` keys score a random subset of the train split of the samples' size in the same
way: the floor a perfect generator would reach with this many samples.

``polydiff evaluate RUN`` also reports, under ``classifier``, DiffWave's unconditional table
(:mod:`polydiff_audio.field_metrics`: ``fid``, ``is``, ``mis``, ``am``, ``ndb_k``) in the features
and class probabilities of the shipped ``notes`` classifier (:mod:`polydiff_audio.classifier`), or
of ``--features`` when given (``is``/``mis``/``am`` only when it returns probabilities too). The
reference is the run's *train* split, as in DiffWave's table; ``reference/…`` is the *test* set's
own row (for ``notes``, as many test clips as samples, at least the test split: the floor at the
same sample size) and ``train_set/…`` the train set's own row (``fid`` and ``ndb_k`` 0 by
construction). With a class-conditional run, ``class_accuracy`` is the share of samples the
classifier assigns the requested class. For a folder without ``--features`` the table holds only
a note.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from polydiff import metrics as M
from polydiff.config import data_source
from polydiff_audio.audio_io import clip_length, data_config, log_mel
from polydiff_audio.data import AudioDataset
from polydiff_audio.defaults import DEFAULT_CONFIG
from polydiff_audio.notes import midi_to_hz
from polydiff_audio.pitch import estimate_f0, pitch_scores
from polydiff_audio.spectral import log_mel_l1, mel_cepstral_distortion, mr_stft_distance

__all__ = ["classifier_table", "mel_statistics", "metrics_for_modality", "score_audio"]

PR_K = 3


def mel_statistics(x: Tensor, data: Mapping[str, Any]) -> Tensor:
    """``(B, 2 · n_mels)``: per-band mean and standard deviation over time of the normalised log-mel."""
    mel = log_mel(torch.as_tensor(x).float().mean(1), data)
    return torch.cat([mel.mean(-1), mel.std(-1)], dim=1)


def _stack(ds: AudioDataset) -> tuple[Tensor, Tensor | None]:
    items = [ds.full_item(i) for i in range(len(ds))]
    return torch.stack([it["x"] for it in items]), ds.labels


def _distribution(fake: Tensor, real: Tensor) -> dict[str, float]:
    out: dict[str, float] = {}
    if len(fake) > fake.shape[1] and len(real) > real.shape[1]:
        out["fd"] = M.frechet_distance(fake, real)
    if len(fake) > PR_K and len(real) > PR_K:
        out["kid"] = M.kernel_distance(fake, real)
        out["precision"], out["recall"] = M.precision_recall(real, fake, k=PR_K)
    return out


def _features(extractor: Any):
    def run(x: Tensor) -> Tensor:
        with torch.no_grad():
            out = extractor(x)
        out = out[0] if isinstance(out, (tuple, list)) else out
        return torch.as_tensor(out).float().flatten(1)

    return run


def score_audio(
    samples: Tensor, config: Mapping[str, Any], *, labels: Tensor | None = None, mel: Tensor | None = None,
    extractor: Any = None, extractor_name: str = "", train: AudioDataset | None = None,
    test: AudioDataset | None = None,
) -> dict[str, float | int | str]:
    """Every key of the module docstring for ``(B, C, T)`` samples of the run ``config``."""
    from polydiff_audio.data import build_dataset

    data = data_config(config)
    x = torch.as_tensor(samples).detach().float().cpu().clamp(-1.0, 1.0)
    if x.dim() != 3:
        raise ValueError(f"samples: expected (N, C, T) audio, got shape {tuple(x.shape)}")
    source = data_source(data)
    test = test or build_dataset(source, config, "test")
    train = train or build_dataset(source, config, "train")
    test_x, _ = _stack(test)
    gen = torch.Generator().manual_seed(int((config.get("sample") or {}).get("seed", 0)))
    pick = torch.randperm(len(train), generator=gen)[: len(x)]
    ref_items = [train.full_item(int(i)) for i in pick]
    ref_x = torch.stack([it["x"] for it in ref_items])
    ref_labels = None if train.labels is None else train.labels[pick]
    rate = int(data["sample_rate"])
    result: dict[str, float | int | str] = {"n_samples": len(x), "n_real": len(test_x)}
    if str(source) == "notes":
        hz = [float(midi_to_hz(p)) for p in data["pitches"]]
        result.update(pitch_scores(estimate_f0(x, rate), hz, labels))
        ref = pitch_scores(estimate_f0(ref_x, rate), hz, ref_labels if labels is not None else None)
        result.update({M.REFERENCE_PREFIX + k: v for k, v in ref.items()})
    if extractor is not None:
        feats = _features(extractor)
        result["features"] = extractor_name or "user features"
    else:
        def feats(clips: Tensor) -> Tensor:
            return mel_statistics(clips, data)

        result["features"] = "log-mel statistics"
    f_test = feats(test_x)
    result.update(_distribution(feats(x), f_test))
    result.update({M.REFERENCE_PREFIX + k: v for k, v in _distribution(feats(ref_x), f_test).items()})
    if mel is not None and bool((torch.as_tensor(mel).abs().flatten(1).sum(1) > 0).any()):
        result.update(_vocoding(x, torch.as_tensor(mel).float(), data, [train, test]))
    return result


def _vocoding(x: Tensor, mel: Tensor, data: Mapping[str, Any], pools: list[AudioDataset]) -> dict[str, float]:
    got = log_mel(x.mean(1), data)
    frames = min(got.shape[-1], mel.shape[-1])
    out = {"cond_mel_l1": float((got[..., :frames] - mel[..., :frames]).abs().mean())}
    # the clip each condition was computed from, when it is one of the data's
    refs: list[Tensor | None] = [None] * len(x)
    for ds in pools:
        clips = _stack(ds)[0]
        mels = log_mel(clips[:, 0], data)
        for i in range(len(x)):
            if refs[i] is None and mels.shape[1:] == mel.shape[1:]:
                err = (mels - mel[i]).abs().flatten(1).amax(1)
                j = int(err.argmin())
                if float(err[j]) < 1e-4:
                    refs[i] = clips[j]
    if all(r is not None for r in refs):
        ref = torch.stack(refs)  # type: ignore[arg-type]
        out["mr_stft"] = float(mr_stft_distance(x, ref, int(data["sample_rate"])).mean())
        out["log_mel_l1"] = float(log_mel_l1(x, ref, data).mean())
        out["mcd"] = float(mel_cepstral_distortion(x, ref, data).mean())
    return out


#: most test clips the notes test row generates (the floor at the samples' size)
MAX_TEST_ROW = 2000


_EMBEDDED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _embedded(dataset: Any, key: tuple, compute: Any, cache: bool) -> Any:
    """``compute()``, remembered per ``dataset`` object and ``key`` when ``cache``."""
    if not cache:
        return compute()
    try:
        per = _EMBEDDED.setdefault(dataset, {})
    except TypeError:  # not weak-referenceable
        return compute()
    if key not in per:
        per[key] = compute()
    return per[key]


def classifier_table(
    samples: Tensor, config: Mapping[str, Any], *, train: AudioDataset, test: AudioDataset,
    labels: Tensor | None = None, extractor: Any = None, extractor_name: str = "",
) -> dict[str, float | int | str]:
    """DiffWave's table for ``(B, C, T)`` samples; see the module docstring."""
    from polydiff.errors import UserError
    from polydiff_audio.classifier import classifier_problem, load_notes_classifier
    from polydiff_audio.field_metrics import NDBBins, field_scores

    data = data_config(config)
    source = data_source(data)
    x = torch.as_tensor(samples).detach().float().cpu().clamp(-1.0, 1.0)
    rate = int(data["sample_rate"])
    out: dict[str, float | int | str] = {}
    if extractor is not None:
        predict = M.batched_extractor(extractor, prob_dtype=torch.float64)
        out["features"] = extractor_name or "user features"
    else:
        problem = classifier_problem(data, source)
        if problem:
            return {"features": "none", "note": f"{problem}; name a feature extractor with --features"}
        try:
            clf = load_notes_classifier()
        except (OSError, ValueError) as exc:
            raise UserError(str(exc)) from None

        def predict(clips: Tensor) -> tuple[Tensor, Tensor | None]:
            return clf.predict(clips, rate)

        out["features"] = "notes-classifier"
    train_x, _ = _stack(train)
    if str(source) == "notes" and len(x) > len(test):
        from polydiff_audio.data import _notes_cached

        size = min(len(x), MAX_TEST_ROW)
        pitches = tuple(float(v) for v in data["pitches"])
        test_x = _notes_cached("test", size, pitches, rate, clip_length(data))[0][:, None]
    else:
        test_x, _ = _stack(test)
    # the shipped classifier is fixed: a data set's features are computed once per process
    cache = extractor is None
    f_train, p_train = _embedded(train, ("train", rate, len(train_x)), lambda: predict(train_x), cache)
    bins = NDBBins(f_train)
    f, p = predict(x)
    out.update(field_scores(f, p, f_train, p_train, bins))
    if p is not None and labels is not None:
        want = torch.as_tensor(labels).long().reshape(-1)
        if len(want) == len(p):
            out["class_accuracy"] = float((p.argmax(1) == want).double().mean())
    f_test, p_test = _embedded(test, ("test", rate, len(test_x)), lambda: predict(test_x), cache)
    out.update({M.REFERENCE_PREFIX + k: v for k, v in field_scores(f_test, p_test, f_train, p_train, bins).items()})
    out.update({"train_set/" + k: v for k, v in field_scores(f_train, p_train, f_train, p_train, bins).items()})
    out.update({"n_samples": len(x), "n_train": len(train_x), "n_test": len(test_x), "ndb_bins": bins.k})
    return out


def metrics_for_modality(modality: Any) -> dict[str, Any]:
    """``{"quality": fn}`` for :meth:`AudioModality.metrics`."""

    def quality(samples: Any, config: Mapping[str, Any], *, mask: Any = None, cond: Any = None) -> dict[str, Any]:
        cfg = dict(config)
        cfg["data"] = {**DEFAULT_CONFIG["data"], **(config.get("data") or {})}
        source = data_source(cfg["data"])
        train = modality.build_dataset(source, cfg, "train")
        test = modality.build_dataset(source, cfg, "test")
        spec = (config.get("eval") or {}).get("features")
        extractor = (config.get("eval") or {}).get("extractor")
        if spec and extractor is None:
            from polydiff.metrics import load_feature_extractor

            extractor = load_feature_extractor(str(spec))
        cond = cond or {}
        from polydiff_audio import resolve_num_classes

        # an unconditional network ignores the layout's labels: nothing to score them against
        labels = cond.get("label") if resolve_num_classes(cfg) > 0 else None
        return score_audio(
            samples, cfg, labels=labels, mel=cond.get("mel"), extractor=extractor,
            extractor_name=str(spec or ""), train=train, test=test,
        )

    def classifier(samples: Any, config: Mapping[str, Any], *, cond: Any = None) -> dict[str, Any]:
        cfg = dict(config)
        cfg["data"] = {**DEFAULT_CONFIG["data"], **(config.get("data") or {})}
        source = data_source(cfg["data"])
        spec = (config.get("eval") or {}).get("features")
        extractor = (config.get("eval") or {}).get("extractor")
        if spec and extractor is None:
            from polydiff.metrics import load_feature_extractor

            extractor = load_feature_extractor(str(spec))
        from polydiff_audio import resolve_num_classes

        labels = (cond or {}).get("label") if resolve_num_classes(cfg) > 0 else None
        return classifier_table(
            samples, cfg, train=modality.build_dataset(source, cfg, "train"),
            test=modality.build_dataset(source, cfg, "test"), labels=labels, extractor=extractor,
            extractor_name=str(spec or ""),
        )

    return {"quality": quality, "classifier": classifier}
