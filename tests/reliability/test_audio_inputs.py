"""Bad and unusual audio input: each case gets a clear AudioError or a correct result.

Covers issue 7's audio list: 0-byte file, header with no samples, 1 sample, all zeros, NaN/Inf,
clipped, DC offset, 8/24/32-bit and float WAV, 8-96 kHz, 1-8 channels, wrong extension,
truncated and damaged FLAC, MP3 with ID3 tags, a directory, unreadable paths, a 10-minute
recording (slow), and property-based tests over random arrays and random/mutated bytes.
"""

from __future__ import annotations

import logging
import os
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from voice_router.audio.io import chunk_audio, load_audio
from voice_router.errors import AudioError

PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# ----------------------------------------------------------------------------- empty / no samples


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty.wav: the file is empty \(0 bytes\)"):
        load_audio(p)


def test_zero_bytes():
    with pytest.raises(AudioError, match=r"<bytes>: the audio data is empty \(0 bytes\)"):
        load_audio(b"")


@pytest.mark.parametrize("fmt", ["WAV", "OGG", "AIFF"])
def test_header_but_no_samples(tmp_path, kit, fmt):
    data = kit.encode(np.zeros(0), 16000, fmt)
    assert len(data) > 0
    p = tmp_path / f"header_only.{fmt.lower()}"
    p.write_bytes(data)
    with pytest.raises(AudioError, match="header is valid but the file has no audio samples"):
        load_audio(p)


def _flac_metadata_end(data: bytes) -> int:
    """Offset of the first audio frame: after "fLaC" and the metadata blocks (FLAC format)."""
    assert data[:4] == b"fLaC"
    pos = 4
    while True:
        last, length = data[pos] & 0x80, int.from_bytes(data[pos + 1 : pos + 4], "big")
        pos += 4 + length
        if last:
            return pos


def test_flac_header_without_frames(real_clip_bytes):
    # libsndfile writes no FLAC at all for 0 samples; a real header with its frames cut off is
    # what a recorder killed right after starting leaves behind.
    header = real_clip_bytes[: _flac_metadata_end(real_clip_bytes)]
    with pytest.raises(AudioError, match=r"truncated or corrupt .*: only 0 of 16000 samples"):
        load_audio(header)


def test_wav_header_cut_off_before_its_data(kit, real_audio):
    data = kit.encode(real_audio, 16000, "WAV", "PCM_16")
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(data[:44])  # the 44-byte header promises 16000 samples that are not there


def test_truncated_wav_gives_the_samples_that_are_there(kit, real_audio):
    data = kit.encode(real_audio, 16000, "WAV", "PCM_16")
    out = load_audio(data[: 44 + 2 * 6000])
    assert out.size == 6000
    ref = real_audio[:6000]
    np.testing.assert_allclose(out, ref - ref.mean(), atol=1e-4)


def test_one_sample(kit):
    out = load_audio(kit.encode(np.array([0.25]), 16000, "WAV", "FLOAT"))
    np.testing.assert_array_equal(out, np.array([0.25], np.float32))
    out = load_audio((np.array([0.25], np.float32), 8000))
    assert out.size == 2 and np.isfinite(out).all()
    with pytest.raises(AudioError, match="too short"):
        load_audio((np.array([0.25], np.float32), 44100))  # 1/44100 s is no sample at 16 kHz


# ----------------------------------------------------------------------------- sample values


@pytest.mark.parametrize("source", ["file", "array"])
def test_all_zeros_is_silent(kit, source):
    zeros = np.zeros(16000)
    src = kit.encode(zeros, 16000, "WAV", "PCM_16") if source == "file" else (zeros, 16000)
    with pytest.raises(AudioError, match=r"audio is silent \(peak < -80 dBFS\): check the mic"):
        load_audio(src)


def test_constant_dc_without_sound_is_silent(kit):
    with pytest.raises(AudioError, match="silent"):
        load_audio(kit.encode(np.full(16000, 0.3), 16000, "WAV", "PCM_16"))


def test_quiet_but_real_speech_is_kept(real_audio):
    quiet = real_audio * 10 ** (-50 / 20) / np.abs(real_audio).max()  # peak -50 dBFS
    out = load_audio((quiet.astype(np.float32), 16000))
    assert 0 < np.abs(out).max() < 0.01


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_in_a_float_wav(kit, real_audio, bad):
    x = real_audio.copy()
    x[5000] = bad
    with pytest.raises(AudioError, match="NaN or infinite samples"):
        load_audio(kit.encode(x, 16000, "WAV", "FLOAT"))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_in_an_array(real_audio, bad):
    x = real_audio.astype(np.float32)
    x[-1] = bad
    with pytest.raises(AudioError, match="NaN or infinite samples"):
        load_audio((x, 16000))


def test_clipped_input_decodes_within_range(kit, real_audio):
    clipped = np.clip(real_audio * 20, -1, 1)  # hard-clipped at full scale, as a hot mic does
    assert np.mean(np.abs(clipped) == 1) > 0.05
    for rate in (16000, 44100):
        x = clipped if rate == 16000 else np.repeat(clipped, 1)  # same samples, other rate
        out = load_audio(kit.encode(x, rate, "WAV", "PCM_16"))
        assert np.isfinite(out).all() and np.abs(out).max() <= 1.0
        assert out.size == round(x.size * 16000 / rate)


def test_dc_offset_is_removed_and_the_speech_kept(kit, real_audio):
    offset = np.clip(real_audio + 0.3, -1, 1)
    out = load_audio(kit.encode(offset, 16000, "WAV", "PCM_16"))
    assert abs(float(out.mean())) < 1e-4
    assert kit.best_correlation(out.astype(np.float64), real_audio, max_lag=0) > 0.999


# ----------------------------------------------------------------------------- formats, rates


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_wav_sample_formats_of_real_speech(kit, real_audio, subtype):
    out = load_audio(kit.encode(real_audio, 16000, "WAV", subtype))
    assert out.dtype == np.float32 and out.size == real_audio.size
    tol = 0.99 if subtype == "PCM_U8" else 0.99999
    assert kit.best_correlation(out.astype(np.float64), real_audio, max_lag=0) > tol


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000])
def test_sample_rates_8k_to_96k(kit, rate):
    out = load_audio(kit.encode(kit.sine(1.5, rate, freq=1000.0), rate, "WAV", "PCM_16"))
    assert abs(out.size - 24000) <= 1
    assert abs(kit.dominant_hz(out, 16000) - 1000.0) < 2.0


def test_real_speech_resampled_up_and_back_is_the_same_speech(real_audio):
    import soxr

    up = soxr.resample(real_audio, 16000, 44100)
    out = load_audio((up.astype(np.float32), 44100))
    assert abs(out.size - real_audio.size) <= 1
    assert np.corrcoef(out[100:-100], real_audio[100 : out.size - 100])[0, 1] > 0.999


@pytest.mark.parametrize("channels", [1, 2, 3, 4, 5, 6, 7, 8])
def test_one_to_eight_channels(kit, real_audio, channels):
    # Speech in every channel at different gains: the mean keeps the speech.
    gains = np.linspace(1.0, 0.3, channels)
    multi = real_audio[:, None] * gains[None, :]  # (n, channels)
    out = load_audio(kit.encode(multi, 48000, "WAV", "PCM_24"))
    assert out.ndim == 1 and abs(out.size - real_audio.size / 3) <= 1
    back = load_audio((multi.astype(np.float32), 16000))
    np.testing.assert_allclose(back.std(), (real_audio * gains.mean()).std(), rtol=1e-3)


@pytest.mark.parametrize("ext", [".wav", ".mp3", ".txt", ""])
def test_wrong_extension_decodes_by_content(tmp_path, real_clip_path, real_audio, ext):
    p = tmp_path / f"actually_flac{ext}"
    p.write_bytes(real_clip_path.read_bytes())
    out = load_audio(p)
    np.testing.assert_allclose(out, real_audio - real_audio.mean(), atol=1e-6)


def test_text_file_named_wav(tmp_path):
    p = tmp_path / "notes.wav"
    p.write_text("this is not audio\n" * 20)
    with pytest.raises(AudioError, match=r"notes.wav: not a readable audio file \(.*\): expected"):
        load_audio(p)


def test_mp3_with_id3v2_and_id3v1_tags(real_audio, real_mp3_path):
    data = real_mp3_path.read_bytes()
    assert data[:3] == b"ID3" and data[-128:-125] == b"TAG"
    out = load_audio(real_mp3_path)
    assert abs(out.size - real_audio.size) <= 1200
    # The tags are skipped, the speech decodes (lossy: correlation allowing the codec delay).
    n = min(out.size, real_audio.size)
    corr = max(np.corrcoef(out[lag:n], real_audio[: n - lag])[0, 1] for lag in range(0, 1200, 1))
    assert corr > 0.9


# ----------------------------------------------------------------------------- damaged FLAC


def test_truncated_flac_keeps_the_decodable_part_with_a_warning(
    real_clip_bytes, real_audio, caplog
):
    cut = real_clip_bytes[: int(len(real_clip_bytes) * 0.9)]
    with caplog.at_level(logging.WARNING, logger="voice_router.audio.io"):
        out = load_audio(cut)
    n = out.size
    assert 0.5 * real_audio.size <= n < real_audio.size
    ref = real_audio[:n]
    np.testing.assert_allclose(out, ref - ref.mean(), atol=1e-5)  # the first n samples, exactly
    assert "damaged audio" in caplog.text and f"using the {n} of 16000 samples" in caplog.text


def test_flac_cut_to_a_third_is_an_error(real_clip_bytes):
    with pytest.raises(AudioError, match=r"truncated or corrupt .* only \d+ of 16000 samples"):
        load_audio(real_clip_bytes[: len(real_clip_bytes) // 3])


def test_flac_cut_inside_its_header(real_clip_bytes):
    with pytest.raises(AudioError, match="not a readable audio file|truncated or corrupt"):
        load_audio(real_clip_bytes[:30])


def test_flac_with_bytes_flipped_in_the_middle(real_clip_bytes, real_audio):
    damaged = bytearray(real_clip_bytes)
    mid = len(damaged) // 2
    for i in range(mid, mid + 64):
        damaged[i] ^= 0xFF
    # Decoding stops at the damage, before half of the clip: an error that says so.
    with pytest.raises(AudioError, match=r"truncated or corrupt \(.*lost sync.*\): only"):
        load_audio(bytes(damaged))


def test_flac_with_a_flipped_byte_late_keeps_the_good_part(real_clip_bytes, real_audio):
    damaged = bytearray(real_clip_bytes)
    damaged[int(len(damaged) * 0.95)] ^= 0xFF
    out = load_audio(bytes(damaged))
    assert 0.5 * real_audio.size <= out.size <= real_audio.size
    assert np.isfinite(out).all()


# ----------------------------------------------------------------------------- paths


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match=r"nope.wav: file not found: check the path"):
        load_audio(tmp_path / "nope.wav")


def test_directory(tmp_path):
    with pytest.raises(AudioError, match="is a directory, not an audio file"):
        load_audio(tmp_path)


def test_path_through_a_file(tmp_path, real_clip_path):
    # Meaningful as root too: no permission bypasses "a parent is not a folder".
    with pytest.raises(AudioError, match="a parent in the path is a file"):
        load_audio(real_clip_path / "inner.wav")


def test_fifo_is_refused_without_blocking(tmp_path):
    p = tmp_path / "pipe.wav"
    os.mkfifo(p)  # opening it for reading would block forever
    with pytest.raises(AudioError, match="not a regular file"):
        load_audio(p)


def test_device_file_is_refused():
    with pytest.raises(AudioError, match="not a regular file"):
        load_audio("/dev/zero")  # would otherwise stream zeros forever


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path, real_clip_path):
    p = tmp_path / "secret.flac"
    p.write_bytes(real_clip_path.read_bytes())
    p.chmod(0)
    try:
        with pytest.raises(AudioError, match="permission denied"):
            load_audio(p)
    finally:
        p.chmod(0o644)


def test_unreadable_file_as_any_user(tmp_path, real_clip_path, monkeypatch):
    # The same code path for root: make open() fail the way it does for other users.
    p = tmp_path / "secret.flac"
    p.write_bytes(real_clip_path.read_bytes())
    real_open = open

    def deny(path, *a, **k):
        if str(path) == str(p):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **k)

    import voice_router.audio.io

    # `open` as the audio module sees it (its own global shadows the builtin), not process-wide
    monkeypatch.setattr(voice_router.audio.io, "open", deny, raising=False)
    with pytest.raises(AudioError, match=r"secret.flac: permission denied: make the file readable"):
        load_audio(p)


# ----------------------------------------------------------------------------- long recordings


@pytest.mark.slow
def test_ten_minute_recording_decodes_with_bounded_memory(tmp_path, real_audio):
    """10 min of 48 kHz stereo speech (FLAC) -> 16 kHz mono, memory ~ the output, not the source."""
    import soxr

    seconds, rate = 600, 48000
    clip48 = soxr.resample(real_audio, 16000, rate)  # (48000,) 1 s of speech
    p = tmp_path / "long.flac"
    with sf.SoundFile(p, "w", rate, 2, format="FLAC", subtype="PCM_16") as f:
        block = np.stack([clip48, 0.5 * clip48], axis=1)  # (48000, 2)
        for _ in range(seconds):
            f.write(block)
    out_bytes = seconds * 16000 * 4  # 38.4 MB of float32 output
    source_bytes = seconds * rate * 2 * 4  # 230 MB if the source were decoded whole as float32
    tracemalloc.start()
    try:
        out = load_audio(p)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert abs(out.size - seconds * 16000) <= 1
    assert np.isfinite(out).all() and np.abs(out).max() <= 1.0
    # Measured: 42.6 MB for 38.4 MB of output (one preallocated buffer, no full-size temporaries).
    assert peak < 1.5 * out_bytes + 8e6, f"peak {peak / 1e6:.0f} MB"
    assert peak < source_bytes / 2
    pieces = chunk_audio(out, 30.0)
    assert len(pieces) == 20 and all(p.size <= 30 * 16000 for p in pieces)


# ----------------------------------------------------------------------------- properties


@PROPERTY
@given(
    n=st.integers(0, 3000),
    rate=st.one_of(st.sampled_from([8000, 16000, 44100, 48000, 96000]), st.integers(1000, 200000)),
    channels=st.integers(1, 8),
    dtype=st.sampled_from([np.float32, np.float64]),
    data=st.data(),
)
def test_any_float_array_decodes_or_raises_audio_error(n, rate, channels, dtype, data):
    shape = (n,) if channels == 1 and data.draw(st.booleans()) else (n, channels)
    x = data.draw(hnp.arrays(dtype, shape, elements=st.floats(width=np.finfo(dtype).bits)))
    try:
        out = load_audio((x, rate))
    except AudioError as e:
        assert str(e)
        return
    assert out.dtype == np.float32 and out.ndim == 1
    assert np.isfinite(out).all() and np.abs(out).max() <= 1.0
    assert abs(out.size - n * 16000 / rate) <= 1


@PROPERTY
@given(
    n=st.integers(1, 2000),
    rate=st.sampled_from([8000, 22050, 44100, 96000]),
    channels=st.integers(1, 8),
    subtype=st.sampled_from(["PCM_16", "PCM_24", "FLOAT"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_encoded_wav_decodes_to_the_expected_length(n, rate, channels, subtype, seed, kit):
    x = np.random.default_rng(seed).uniform(-1, 1, (n, channels))
    try:
        out = load_audio(kit.encode(x, rate, "WAV", subtype))
    except AudioError as e:
        assert "too short" in str(e) or "silent" in str(e)
        return
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert abs(out.size - n * 16000 / rate) <= 1


@PROPERTY
@given(st.binary(max_size=4096))
def test_random_bytes_never_raise_anything_but_audio_error(data):
    try:
        out = load_audio(data)
    except AudioError:
        return
    assert out.dtype == np.float32 and np.isfinite(out).all()


@PROPERTY
@given(
    fmt=st.sampled_from(["flac", "mp3", "wav"]),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), max_size=8),
    cut=st.floats(0.0, 1.0),
)
def test_mutated_real_files_never_raise_anything_but_audio_error(
    fmt, flips, cut, real_clip_bytes, kit, real_audio, real_mp3_path
):
    base = {
        "flac": real_clip_bytes,
        "mp3": real_mp3_path.read_bytes(),
        "wav": kit.encode(real_audio, 16000, "WAV", "PCM_16"),
    }[fmt]
    data = bytearray(base[: max(1, int(len(base) * cut))] if cut < 1 else base)
    for where, xor in flips:
        data[int(where * len(data))] ^= xor
    try:
        out = load_audio(bytes(data))
    except AudioError:
        return
    assert out.dtype == np.float32 and out.ndim == 1 and out.size >= 1
    assert np.isfinite(out).all() and np.abs(out).max() <= 1.0


def test_fuzz_harness_runs_clean(tmp_path, capsys):
    """A short, seeded run of the documented fuzz harness (fuzz_decoder.py) finds no failure."""
    import runpy
    from pathlib import Path

    harness = runpy.run_path(str(Path(__file__).with_name("fuzz_decoder.py")), run_name="fuzz")
    status = harness["main"](["--iterations", "150", "--seed", "1", "--crash-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "150 inputs, 0 failures" in out
    assert status == 0
    assert list(tmp_path.iterdir()) == []  # no crash files, last-input.bin removed
