"""Tests of training/augment.py: torchaudio functional ops, so only where the `train` extra is
installed (CI's second venv, .venv-train); skipped in the default venv, which has no torchaudio."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest

torchaudio = pytest.importorskip("torchaudio")

import torch  # noqa: E402

from training import augment  # noqa: E402

pytestmark = pytest.mark.train

SR = augment.SAMPLE_RATE


def _tone(freq: float, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(SR * seconds)) / SR)).astype(np.float32)


def _peak_hz(x: np.ndarray) -> float:
    """Frequency of the strongest FFT bin (Hann window; 1 Hz bins for a 1 s clip)."""
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / SR)[np.argmax(spec)])


def _db(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(a**2) / np.mean(b**2)))


ALL_ON = augment.AugmentConfig(p_speed=1.0, p_pitch=1.0, p_rir=1.0, p_noise=1.0, p_band=1.0)


def test_augment_is_deterministic_per_seed_and_bounded() -> None:
    rng = np.random.default_rng(0)
    clean = _tone(300.0) * 1.8
    others = [rng.standard_normal(8000).astype(np.float32) * 0.1, _tone(200.0, 0.7)]
    for cfg in (augment.AugmentConfig(), ALL_ON):
        x = augment.augment(clean, np.random.default_rng(42), others, cfg)
        y = augment.augment(clean, np.random.default_rng(42), others, cfg)
        z = augment.augment(clean, np.random.default_rng(43), others, cfg)
        assert np.array_equal(x, y)
        assert not (x.size == z.size and np.allclose(x, z))
        assert 0.6 * clean.size < x.size < 2.5 * clean.size
    for seed in range(6):  # every step on, every branch of the draws
        x = augment.augment(clean, np.random.default_rng(seed), others, ALL_ON)
        assert x.dtype == np.float32 and x.ndim == 1
        assert np.isfinite(x).all() and np.max(np.abs(x)) <= 0.95 + 1e-6
        assert np.max(np.abs(x)) > 10 ** (-25.5 / 20) * 0.95  # the drawn level, not silence


@pytest.mark.parametrize("factor", [0.9, 1.13])
def test_speed_changes_length_and_pitch_by_the_factor(factor: float) -> None:
    x = torch.from_numpy(_tone(500.0))[None]
    y = augment.speed_perturb(x, factor)[0].numpy()
    assert abs(y.size - x.shape[-1] / factor) <= 1
    assert abs(_peak_hz(y[: SR // 2]) - 500.0 * factor) <= 2 / 0.5  # 2 Hz bins over 0.5 s


@pytest.mark.parametrize("semitones", [-2.0, 1.5])
def test_pitch_shift_keeps_length_and_moves_the_pitch(semitones: float) -> None:
    x = torch.from_numpy(_tone(1000.0))[None]
    y = augment.pitch_perturb(x, semitones)[0].numpy()
    assert y.shape == (x.shape[-1],)
    want = 1000.0 * 2 ** (semitones / 12)
    assert abs(_peak_hz(y) - want) < 0.01 * want  # 1 % = 0.17 semitone
    assert augment.pitch_perturb(x, 0.02) is x  # below 0.1 semitone: unchanged


@pytest.mark.parametrize("snr", [0.0, 12.0, 30.0])
def test_noise_at_the_drawn_snr_relative_to_the_speech(snr: float) -> None:
    clean = _tone(440.0)
    pad = np.zeros(4000, np.float32)  # silence around the speech must not change the SNR
    x = torch.from_numpy(np.concatenate([pad, clean, pad]))[None]
    speech = slice(pad.size, pad.size + clean.size)
    noise = augment.colored_noise(np.random.default_rng(1), x.shape[-1], "pink")
    y = augment.add_noise_at_snr(x, noise, snr, speech)[0].numpy()
    added = y - x[0].numpy()
    assert abs(_db(clean, added) - snr) < 0.5
    assert np.allclose(added / np.std(added), noise / np.std(noise), atol=1e-4)  # the noise given


def test_augment_end_to_end_snr_with_only_noise_on() -> None:
    cfg = augment.AugmentConfig(
        p_speed=0.0, p_pitch=0.0, p_rir=0.0, p_noise=1.0, snr_db=(15.0, 15.0), p_band=0.0,
        gain_db=(-6.0, -6.0), pad_s=(0.25, 0.25),
    )  # fmt: skip
    clean = _tone(440.0)
    pad = int(0.25 * SR)
    for seed in range(4):
        y = augment.augment(clean, np.random.default_rng(seed), (), cfg)
        assert y.size == clean.size + 2 * pad
        s = y[pad : pad + clean.size]
        g = float(np.dot(s, clean) / np.dot(clean, clean))  # the applied gain
        added = y - g * np.pad(clean, pad)
        assert abs(_db(g * clean, added) - 15.0) < 0.5
        assert abs(np.max(np.abs(y)) - 0.95 * 10 ** (-6 / 20)) < 1e-5


def test_telephone_band_attenuates_out_of_band() -> None:
    # a seed whose first draw is < 0.4: band_limit's first draw then picks the telephone band
    seed = next(s for s in range(100) if np.random.default_rng(s).random() < 0.4)
    for freq, lo, hi in [(6000.0, -np.inf, -20.0), (100.0, -np.inf, -20.0), (1000.0, -1.0, 0.5)]:
        x = _tone(freq)
        y = augment.band_limit(np.random.default_rng(seed), torch.from_numpy(x)[None])[0].numpy()
        # band_limit rescales to a 0.5 peak first; compare with that, after the transient
        ref = x * (0.5 / np.max(np.abs(x)))
        assert lo < _db(y[SR // 4 :], ref[SR // 4 :]) < hi, freq


def test_reverb_keeps_length_and_is_the_impulse_response() -> None:
    rir = augment.synthetic_rir(np.random.default_rng(1), rt60=0.3)
    x = np.zeros(SR, np.float32)
    x[100] = 1.0
    y = augment.reverberate(torch.from_numpy(x)[None], rir)[0].numpy()
    assert y.shape == x.shape
    assert np.allclose(y[100 : 100 + rir.size], rir[: SR - 100], atol=1e-5)
    assert np.all(np.abs(y[:100]) < 1e-5)


def test_colored_noise_spectra() -> None:
    rng = np.random.default_rng(0)
    n = 1 << 15
    slopes = {}
    for kind in ("white", "pink", "brown"):
        x = augment.colored_noise(rng, n, kind)
        assert abs(np.sqrt(np.mean(x**2)) - 1) < 1e-3
        p = np.abs(np.fft.rfft(x)) ** 2
        lo, hi = p[10:100].mean(), p[5000:10000].mean()
        slopes[kind] = lo / hi
    assert slopes["white"] < slopes["pink"] < slopes["brown"]


def test_rir_decays() -> None:
    rir = augment.synthetic_rir(np.random.default_rng(1), rt60=0.4)
    e = rir[1:] ** 2
    third = e.size // 3
    assert e[:third].sum() > 10 * e[2 * third :].sum()


@pytest.mark.parametrize("error", [ModuleNotFoundError, OSError])
def test_missing_or_broken_torchaudio_says_how_to_install(monkeypatch, error) -> None:  # noqa: ANN001
    class BrokenTorchaudio:
        """A meta path finder that fails torchaudio's import the way a broken install does."""

        @staticmethod
        def find_spec(name, path=None, target=None):  # noqa: ANN001, ANN205
            if name == "torchaudio" or name.startswith("torchaudio."):
                # OSError is what PyPI's CUDA torchaudio raises beside the CPU torch
                raise error("Could not load this library: _torchaudio.abi3.so")
            return None

    monkeypatch.delitem(sys.modules, "training.augment")  # restored after the test
    for name in [m for m in sys.modules if m == "torchaudio" or m.startswith("torchaudio.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [BrokenTorchaudio(), *sys.meta_path])
    with pytest.raises(ImportError) as info:
        importlib.import_module("training.augment")
    msg = str(info.value)
    assert "pip install torch==2.13.0 torchaudio==2.11.0" in msg
    assert "env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null" in msg
    assert "pip install -e '.[train]'" in msg
    assert isinstance(info.value.__cause__, error)
