"""Waveform augmentation for synthetic training speech (torchaudio functional ops; deterministic
per seed).

Why: the model trains on synthetic voices and must work on real microphones and rooms. Each
augmentation stands for one way real recordings differ from clean TTS: speaking rate and vocal
tract length (speed perturbation), voice pitch and vocal tract length at an unchanged speaking
rate (pitch perturbation), reverberant rooms (synthetic impulse responses), background noise at
random SNR (white, pink, brown, babble of other utterances), cheap or telephone microphones
(band-limiting), level (gain) and silence around the utterance (padding).

The signals that are added or convolved (impulse responses, noise, babble) are generated here
with numpy; torchaudio's functional ops apply them (`speed`, `pitch_shift`, `fftconvolve`,
`add_noise`, `highpass_biquad` / `lowpass_biquad`, `gain`). Every random draw comes from the
numpy `rng` the caller passes, so one seed gives one output.

torchaudio is the `train` extra, never a runtime dependency: PyPI's torchaudio is a CUDA build
that fails to load beside the CPU torch, and a torchaudio that is installed but broken also
breaks transformers (`transformers.audio_utils`, which most model classes load, imports it
whenever it is installed). So it is installed as the matched pair (training/README.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

INSTALL_HINT = (
    "training.augment needs torchaudio, from the `train` extra. Install it as the pair matching "
    "torch (PyPI's torchaudio is a CUDA build; beside the CPU torch it fails to load, and then "
    "transformers' models fail to import too):\n"
    "    env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null "
    "pip install torch==2.13.0 torchaudio==2.11.0\n"
    "    pip install -e '.[train]'\n"
    "(`env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null` switches the local pip constraints and "
    "wheel folder off for the first command; see training/README.md)"
)

try:
    import torchaudio.functional as F
except (ImportError, OSError) as e:  # missing, or a CUDA build that cannot load its library
    raise ImportError(f"{INSTALL_HINT}\n(cause: {type(e).__name__}: {e})") from e

SAMPLE_RATE = 16000
# pitch_shift resamples from int(rate_base / ratio) to rate_base. At 16000 the ratio rarely
# reduces (e.g. 16279:16000), and torchaudio's sinc kernel is (new, old + width) floats: up to
# 14 s and +4 GB for one 2 s clip here. Its sample rate is used for nothing else, so a base of
# 200 gives the same shift to within 0.09 semitone (below the 0.1-semitone draw step) in ~4 ms
# per 1.5 s clip (1000: 0.02 semitone, ~13 ms); the output keeps the input's length.
_PITCH_RATE_BASE = 200
_PITCH_STEPS_PER_SEMITONE = 10  # pitch shifts are drawn in 0.1-semitone steps
_FILTER_HEADROOM = 0.5  # peak before the biquads, which clamp their output to [-1, 1]


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of each augmentation.

    `p_*` is the probability that a step runs. `speed` is the playback-rate range (drawn in
    steps of 0.01, which keeps the resampling ratio small), `pitch_semitones` the pitch shift
    range at unchanged duration (0.1-semitone steps), `rt60` the reverberation time of the
    synthetic room in seconds, `snr_db` the speech-to-noise ratio, `gain_db` the final peak
    level (0 dB = peak 0.95) and `pad_s` the silence added before and after the utterance.
    """

    p_speed: float = 0.8
    speed: tuple[float, float] = (0.85, 1.15)
    p_pitch: float = 0.3
    pitch_semitones: tuple[float, float] = (-2.0, 2.0)
    p_rir: float = 0.5
    rt60: tuple[float, float] = (0.1, 0.8)
    p_noise: float = 0.8
    snr_db: tuple[float, float] = (0.0, 30.0)
    p_band: float = 0.3
    gain_db: tuple[float, float] = (-25.0, 0.0)
    pad_s: tuple[float, float] = (0.05, 0.5)


def speed_perturb(audio: torch.Tensor, factor: float) -> torch.Tensor:
    """Play `factor` times faster: tempo and pitch together (Kaldi-style speed perturbation),
    so a 0.9 factor is a slower, lower voice and a 1.1 factor a faster, higher one.

    `factor` should be a multiple of 0.01: F.speed resamples 16000 * factor : 16000, which then
    reduces to at most ~115:100 (cheap); an arbitrary float may not reduce at all.
    """
    if abs(factor - 1.0) < 1e-3:
        return audio
    out, _ = F.speed(audio, SAMPLE_RATE, factor)  # (1, T) -> (1, ~T / factor)
    return out


def pitch_perturb(audio: torch.Tensor, semitones: float) -> torch.Tensor:
    """Shift the pitch (and the formants with it) by `semitones` at the same duration: another
    voice height without the speaking-rate change that speed perturbation brings along.

    `semitones` is rounded to 0.1 semitone. The phase vocoder and the resampling ratio run on
    a 200 Hz time base (see `_PITCH_RATE_BASE`); the output has exactly the input's length.
    """
    steps = int(round(semitones * _PITCH_STEPS_PER_SEMITONE))
    if steps == 0:
        return audio
    return F.pitch_shift(  # (1, T) -> (1, T)
        audio, _PITCH_RATE_BASE, steps, bins_per_octave=12 * _PITCH_STEPS_PER_SEMITONE
    )


def synthetic_rir(rng: np.random.Generator, rt60: float) -> np.ndarray:
    """A room impulse response: direct path, then exponentially decaying Gaussian noise whose
    energy falls 60 dB in `rt60` seconds, with a short pre-delay before the reverb tail."""
    n = int(SAMPLE_RATE * min(1.2, rt60 * 1.2)) + 1
    t = np.arange(n) / SAMPLE_RATE
    decay = np.exp(-6.9078 * t / rt60)  # amplitude: 60 dB energy drop at rt60
    tail = rng.standard_normal(n) * decay
    predelay = int(rng.uniform(0.002, 0.02) * SAMPLE_RATE)
    tail[:predelay] = 0.0
    drr = 10 ** (rng.uniform(-3.0, 12.0) / 20)  # direct-to-reverberant ratio
    tail /= np.sqrt(np.sum(tail**2)) + 1e-9
    tail[0] = drr
    return tail.astype(np.float32)


def reverberate(audio: torch.Tensor, rir: np.ndarray) -> torch.Tensor:
    """Convolve with a room impulse response, keeping the input's length (the reverb tail that
    runs past the end is cut, as a recording that stops on time would)."""
    h = torch.from_numpy(rir)[None]  # (1, M)
    return F.fftconvolve(audio, h)[..., : audio.shape[-1]]  # (1, T + M - 1) -> (1, T)


def colored_noise(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """Unit-RMS noise of `n` samples: "white", "pink" (1/f) or "brown" (1/f^2)."""
    white = rng.standard_normal(n)
    if kind == "white":
        out = white
    else:
        spec = np.fft.rfft(white)
        f = np.fft.rfftfreq(n)
        f[0] = f[1] if n > 1 else 1.0
        spec /= f ** (0.5 if kind == "pink" else 1.0)
        out = np.fft.irfft(spec, n)
    return (out / (np.sqrt(np.mean(out**2)) + 1e-9)).astype(np.float32)


def babble(rng: np.random.Generator, n: int, others: Sequence[np.ndarray]) -> np.ndarray:
    """Unit-RMS babble: 2-4 other utterances, looped/cropped to `n` samples, summed."""
    out = np.zeros(n, np.float32)
    k = int(rng.integers(2, 5))
    for _ in range(k):
        o = others[int(rng.integers(len(others)))]
        if o.size == 0:
            continue
        reps = int(np.ceil((n + o.size) / o.size))
        tiled = np.tile(o, reps)
        start = int(rng.integers(o.size))
        out += tiled[start : start + n] / (np.sqrt(np.mean(o**2)) + 1e-9)
    return out / (np.sqrt(np.mean(out**2)) + 1e-9)


def add_noise_at_snr(
    audio: torch.Tensor, noise: np.ndarray, snr_db: float, speech: slice = slice(None)
) -> torch.Tensor:
    """Add `noise` (same length) scaled so that the mean power of `audio[..., speech]` over the
    mean power of the added noise is `snr_db`.

    The SNR is relative to the speech, not to the whole clip: F.add_noise measures the clip,
    whose silence padding would otherwise make the noise louder than the drawn SNR says.
    """
    n = torch.from_numpy(np.asarray(noise, np.float32))[None]  # (1, T)
    p_clip = audio.pow(2).mean() + 1e-12
    p_speech = audio[..., speech].pow(2).mean() + 1e-12
    # F.add_noise gives noise power p_clip * 10^(-snr/10); shift the SNR so it is p_speech's.
    snr_clip = snr_db + 10.0 * torch.log10(p_clip / p_speech)
    return F.add_noise(audio, n, snr_clip.reshape(1))  # (1, T), snr (1,)


def band_limit(rng: np.random.Generator, audio: torch.Tensor) -> torch.Tensor:
    """Telephone band (300-3400 Hz) or a random low-pass (3-7 kHz) / high-pass (100-400 Hz).

    Cascaded Butterworth biquads: two per edge (4th order, ~24 dB/octave) for the telephone band
    and the low-pass, one (2nd order) for the high-pass. The biquads clamp to [-1, 1], so the
    input is first scaled to a peak of 0.5 (the final gain step sets the level anyway).
    """
    x = audio * (_FILTER_HEADROOM / (audio.abs().max() + 1e-9))
    choice = rng.random()
    if choice < 0.4:
        for _ in range(2):
            x = F.highpass_biquad(x, SAMPLE_RATE, 300.0)  # (1, T)
        for _ in range(2):
            x = F.lowpass_biquad(x, SAMPLE_RATE, 3400.0)
    elif choice < 0.8:
        cutoff = float(rng.uniform(3000, 7000))
        for _ in range(2):
            x = F.lowpass_biquad(x, SAMPLE_RATE, cutoff)
    else:
        x = F.highpass_biquad(x, SAMPLE_RATE, float(rng.uniform(100, 400)))
    return x


def augment(
    audio: np.ndarray,
    rng: np.random.Generator,
    others: Sequence[np.ndarray] = (),
    cfg: AugmentConfig = AugmentConfig(),
) -> np.ndarray:
    """One random augmentation of a clean 16 kHz utterance -> float32 in [-1, 1].

    Order: speed -> pitch -> silence padding -> room -> noise at random SNR (relative to the
    speech power) -> band-limit -> gain with peak limiting. `others` (other clean utterances)
    feed babble. numpy in and out, so the corpus workers and the trainer need no torch code.
    """
    x = torch.from_numpy(np.ascontiguousarray(audio, np.float32))[None]  # (1, T)
    if rng.random() < cfg.p_speed:
        x = speed_perturb(x, round(float(rng.uniform(*cfg.speed)), 2))
    if rng.random() < cfg.p_pitch:
        x = pitch_perturb(x, float(rng.uniform(*cfg.pitch_semitones)))
    pre = int(rng.uniform(*cfg.pad_s) * SAMPLE_RATE)
    post = int(rng.uniform(*cfg.pad_s) * SAMPLE_RATE)
    x = torch.nn.functional.pad(x, (pre, post))  # (1, pre + T + post)
    speech = slice(pre, x.shape[-1] - post)
    if rng.random() < cfg.p_rir:
        x = reverberate(x, synthetic_rir(rng, float(rng.uniform(*cfg.rt60))))
    n = x.shape[-1]
    if rng.random() < cfg.p_noise:
        kinds = ["white", "pink", "brown", "babble"] if others else ["white", "pink", "brown"]
        kind = kinds[int(rng.integers(len(kinds)))]
        noise = babble(rng, n, others) if kind == "babble" else colored_noise(rng, n, kind)
        x = add_noise_at_snr(x, noise, float(rng.uniform(*cfg.snr_db)), speech)
    else:
        x = add_noise_at_snr(x, colored_noise(rng, n, "white"), 60.0, speech)  # mic self-noise
    if rng.random() < cfg.p_band:
        x = band_limit(rng, x)
    x = x * (0.95 / (x.abs().max() + 1e-9))  # peak 0.95, then the drawn level
    x = F.gain(x, float(rng.uniform(*cfg.gain_db)))
    return x.clamp(-1.0, 1.0)[0].numpy().astype(np.float32)
