"""Tests for avvos.audio: windows that end at a time, resampling, cleaning, real files, the virtual microphone,
and frame/audio synchronisation through CameraSource + FileAudio."""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from avvos.audio import (
    SAMPLE_RATE,
    WINDOW_SECONDS,
    AudioBuffer,
    AudioWarning,
    FileAudio,
    MicrophoneSource,
    _StreamResampler,
    to_mono_16k,
)
from avvos.capture import CameraSource, now
from avvos.errors import InputError, SourceError
from tests.fake_devices import VirtualMicrophone, audio_stack_missing, refresh_portaudio, virtual_microphone

WINDOW = int(round(WINDOW_SECONDS * SAMPLE_RATE))


def _peak_hz(x: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[spectrum.argmax()])


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def _tone(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


# ---- AudioBuffer ---------------------------------------------------------------------------------


def test_window_has_the_exact_length_and_is_zero_before_anything_was_recorded() -> None:
    buffer = AudioBuffer()
    assert buffer.window(123.0).shape == (WINDOW,) and WINDOW == 15360
    assert not buffer.window(123.0).any()
    assert buffer.window(5.0, seconds=0.5).shape == (8000,)
    assert buffer.window(5.0, seconds=0.01).dtype == np.float32


def test_window_ends_at_the_time_asked_for() -> None:
    buffer = AudioBuffer()
    ramp = np.arange(1, 16001, dtype=np.float32)  # sample k has value k + 1
    buffer.append(ramp, end_time=10.0)  # the last sample (16000) was recorded at t = 10 s
    window = buffer.window(10.0, seconds=0.5)
    assert window[-1] == 16000 and window[0] == 16000 - 8000 + 1
    # Half a sample earlier the last sample is not there yet; one sample earlier everything shifts by one.
    assert buffer.window(10.0 - 0.5 / SAMPLE_RATE, seconds=0.5)[-1] == 15999
    assert buffer.window(10.0 - 1 / SAMPLE_RATE, seconds=0.5)[-1] == 15999
    # 0.25 s in the future: the last 4000 samples are zeros (not recorded yet), the rest is the newest audio.
    future = buffer.window(10.25, seconds=0.5)
    assert not future[-4000:].any() and future[-4001] == 16000
    # Before the start: left-padded with zeros.
    early = buffer.window(9.0 + 0.1, seconds=0.5)  # the first sample is at 9.0 + 1/16000
    assert not early[:6400].any() and early[6400] == 1 and early[-1] == 1600


def test_gaps_and_overlaps_between_chunks() -> None:
    buffer = AudioBuffer(snap=0.005)
    buffer.append(np.ones(1600, np.float32), end_time=1.0)
    buffer.append(np.full(1600, 2, np.float32), end_time=1.0 + 0.1 + 0.002)  # 2 ms late: jitter, contiguous
    assert buffer.samples_written == 3200 and buffer.end_time == pytest.approx(1.102)
    buffer.append(np.full(1600, 3, np.float32), end_time=buffer.end_time + 0.3)  # 0.2 s dropout: zeros
    window = buffer.window(buffer.end_time, seconds=0.6)
    assert np.array_equal(window[-1600:], np.full(1600, 3))
    assert not window[-1600 - 3200 : -1600].any()
    assert (window[-1600 - 3200 - 1600 : -1600 - 3200] == 2).all()
    buffer.append(np.full(1600, 4, np.float32), end_time=buffer.end_time + 0.05)  # starts 50 ms early
    window = buffer.window(buffer.end_time, seconds=0.2)
    assert (window[-1600:] == 4).all() and (window[-2400:-1600] == 3).all()  # the overlap was replaced
    assert buffer.samples_written == 3200 + 3200 + 1600 + 800


def test_the_ring_forgets_beyond_its_capacity() -> None:
    buffer = AudioBuffer(capacity=1.0)
    for i in range(30):  # 3 s in 0.1 s chunks, each filled with its number
        buffer.append(np.full(1600, i + 1, np.float32), end_time=(i + 1) * 0.1)
    window = buffer.window(3.0, seconds=2.0)
    assert not window[:16000].any() and (window[-1600:] == 30).all() and window[16000] == 21


def test_the_buffer_is_thread_safe() -> None:
    buffer, errors, done = AudioBuffer(capacity=2.0), [], threading.Event()

    def writer() -> None:
        for i in range(2000):
            buffer.append(np.full(160, i, np.float32), end_time=(i + 1) * 0.01)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not done.is_set():
        end = buffer.end_time
        if end is None:
            continue
        window = buffer.window(end, seconds=0.1)
        # Whatever the interleaving, a window is made of whole chunks in increasing order.
        if not (np.diff(window) >= 0).all() or len(window) != 1600:
            errors.append(window)
    thread.join()
    assert not errors


# ---- resampling and cleaning ---------------------------------------------------------------------


def test_44k_stereo_to_16k_mono_keeps_the_tone() -> None:
    left, right = _tone(1000.0, 44100, 2.0, 0.4), _tone(1000.0, 44100, 2.0, 0.2)
    out = to_mono_16k(np.stack([left, right], axis=1), 44100)
    assert out.dtype == np.float32 and out.ndim == 1 and len(out) == 32000
    assert abs(_peak_hz(out) - 1000.0) < 2
    assert _rms(out[1000:-1000]) == pytest.approx(0.3 / np.sqrt(2), rel=0.02)


def test_integer_pcm_is_scaled() -> None:
    pcm = (np.array([0.5, -0.5, 0.25]) * 32768).astype(np.int16)
    assert np.allclose(to_mono_16k(pcm, SAMPLE_RATE), [0.5, -0.5, 0.25])


def test_nan_inf_and_overrange_are_cleaned_with_a_warning() -> None:
    x = np.array([0.1, np.nan, np.inf, -np.inf, 1.5, -0.2], np.float32)
    with pytest.warns(AudioWarning, match=r"3 non-finite .* clipped 1"):
        out = to_mono_16k(x, SAMPLE_RATE)
    assert np.array_equal(out, np.array([0.1, 0, 0, 0, 1.0, -0.2], np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_mono_16k(np.zeros(10, np.float32), SAMPLE_RATE)  # clean input: no warning


def test_bad_rates_are_refused() -> None:
    with pytest.raises(InputError, match="sample rate"):
        to_mono_16k(np.zeros(10, np.float32), 0)
    with pytest.raises(InputError, match="sample rate"):
        to_mono_16k(np.zeros(10, np.float32), 22050.5)


@pytest.mark.parametrize("rate", [44100, 48000, 8000])
def test_block_resampling_equals_one_shot_resampling(rate: int) -> None:
    x = np.random.default_rng(rate).uniform(-0.5, 0.5, rate).astype(np.float32)
    resampler, outputs, start = _StreamResampler(rate), [], 0
    for size in np.random.default_rng(0).integers(1, 1500, 200):
        outputs.append(resampler.process(x[start : start + size]))
        start += size
    outputs.append(resampler.process(x[start:]))
    streamed, whole = np.concatenate(outputs), to_mono_16k(x, rate)
    assert len(whole) - len(streamed) < 0.02 * SAMPLE_RATE  # held back: the right context of the filter
    assert np.abs(streamed - whole[: len(streamed)]).max() < 5e-5  # float32 sums in another order


# ---- FileAudio on real files -------------------------------------------------------------------


def test_speech_ogg(shared_data: Path) -> None:
    audio = FileAudio(shared_data / "media/librispeech_198-209-0000.ogg")
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert audio.duration == pytest.approx(13.91, abs=0.02) and audio.source_rate == 16000
    assert 0.02 < _rms(audio.samples) < 0.2 and not audio.dropouts
    window = audio.window(5.0)
    assert len(window) == WINDOW and _rms(window) > 0.01
    assert np.array_equal(window, audio.samples[5 * 16000 - WINDOW + 1 : 5 * 16000 + 1])


def test_vorbis_44k_stereo_video_track(shared_data: Path) -> None:
    audio = FileAudio(shared_data / "media/big_buck_bunny_1s.webm")
    assert (audio.source_rate, audio.channels, audio.codec) == (44100, 2, "vorbis")
    assert audio.duration == pytest.approx(1.0, abs=0.02) and len(audio.samples) == pytest.approx(16000, abs=320)
    window = audio.window(0.5)
    assert np.abs(window[: WINDOW - 8000]).max() < 1e-4  # before the start of the file: zeros (and filter ringing)
    assert _rms(window[-8000:]) > 0.01


def test_mp3_track_of_a_video(shared_data: Path) -> None:
    audio = FileAudio(shared_data / "media/chaplin.mp4")
    assert audio.codec.startswith("mp3") and audio.duration == pytest.approx(9.61, abs=0.05)
    assert _rms(audio.samples) > 0.05 and not audio.dropouts
    assert not audio.window(20.0).any()  # after the end: zeros


def test_an_all_zero_track_is_reported(shared_data: Path) -> None:
    with pytest.warns(AudioWarning, match="digital silence from start to end"):
        audio = FileAudio(shared_data / "media/sam2_coffee_silent_track.mp4")
    assert audio.duration == pytest.approx(9.56, abs=0.05) and not audio.samples.any()


def test_a_dropout_midway_becomes_silence_with_a_warning(shared_data: Path) -> None:
    with pytest.warns(AudioWarning, match=r"digital silence \(a dropout\?\) at 4\.6"):
        audio = FileAudio(shared_data / "media/video_with_failing_audio.mp4")
    assert audio.duration == pytest.approx(11.23, abs=0.05)
    start, end = audio.dropouts[0]
    assert 4.5 < start < 5.0 and end == pytest.approx(audio.duration, abs=0.01)
    assert _rms(audio.window(3.0)) > 0.005
    assert not audio.window(8.0).any() and len(audio.window(8.0)) == WINDOW


def test_a_file_without_audio_is_a_clear_error(shared_data: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="has no audio track"):
        FileAudio(shared_data / "cutie-examples/example.mp4")
    with pytest.raises(InputError, match="audio file not found"):
        FileAudio(tmp_path / "missing.wav")
    (tmp_path / "junk.wav").write_bytes(b"this is not audio" * 10)
    with pytest.raises(InputError, match="cannot open"):
        FileAudio(tmp_path / "junk.wav")


def _write_audio(path: Path, signal: np.ndarray, rate: int, codec: str, fmt: str, options: dict | None = None) -> None:
    with av.open(str(path), mode="w", format=fmt, options=options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono"
        for start in range(0, len(signal), 1024):
            frame = av.AudioFrame.from_ndarray(signal[None, start : start + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_a_truncated_file_keeps_what_was_decoded_and_pads_with_silence(tmp_path: Path) -> None:
    whole = tmp_path / "tone.mp4"
    _write_audio(whole, _tone(440.0, 48000, 4.0), 48000, "aac", "mp4", {"movflags": "faststart"})
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])  # the header still announces 4 s
    with pytest.warns(AudioWarning, match=r"ended early at 1\.\d+ s of 4\.0\d s; the rest is silence"):
        audio = FileAudio(cut)
    assert audio.duration == pytest.approx(4.0, abs=0.02)
    assert abs(_peak_hz(audio.window(1.5)) - 440) < 2
    assert not audio.window(3.5, 0.5).any()


def test_damaged_packets_midway_become_silence(tmp_path: Path) -> None:
    path = tmp_path / "tone.mp4"
    _write_audio(path, _tone(440.0, 48000, 4.0), 48000, "aac", "mp4", {"movflags": "faststart"})
    data = bytearray(path.read_bytes())
    third = len(data) // 3
    data[third : third + len(data) // 5] = np.random.default_rng(0).integers(0, 256, len(data) // 5, np.uint8).tobytes()
    path.write_bytes(bytes(data))
    with pytest.warns(AudioWarning, match="damaged packets were skipped"):
        audio = FileAudio(path)
    assert audio.damaged_packets > 0 and audio.duration == pytest.approx(4.0, abs=0.02)
    assert abs(_peak_hz(audio.window(0.9, 0.5)) - 440) < 2 and abs(_peak_hz(audio.window(3.9, 0.5)) - 440) < 2


# ---- synchronisation: a flash in the video, a click in the audio ---------------------------------

FPS, AUDIO_RATE, FLASHES = 25, 48000, (12, 40, 70)


def _flash_and_click_video(path: Path, frames: int = 100) -> None:
    """H.264 + AAC mp4: white frames at FLASHES; a 20 ms 2 kHz click centred on each flash frame's time."""
    audio = np.random.default_rng(0).normal(0, 1e-3, int(AUDIO_RATE * frames / FPS)).astype(np.float32)
    click = int(0.02 * AUDIO_RATE)
    for k in FLASHES:
        start = round(k / FPS * AUDIO_RATE) - click // 2
        audio[start : start + click] = _tone(2000.0, AUDIO_RATE, 0.02, 0.6)
    with av.open(str(path), mode="w", format="mp4") as container:
        video = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=FPS)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        sound = container.add_stream("aac", rate=AUDIO_RATE)
        sound.layout = "mono"
        position = 0
        for i in range(frames):
            image = np.full((120, 160, 3), 255 if i in FLASHES else 20, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
            while position < min((i + 1) * AUDIO_RATE / FPS, len(audio)):
                frame = av.AudioFrame.from_ndarray(
                    audio[None, position : position + 1024], format="fltp", layout="mono"
                )
                frame.sample_rate, frame.pts = AUDIO_RATE, position
                for packet in sound.encode(frame):
                    container.mux(packet)
                position += 1024
        for stream in (video, sound):
            for packet in stream.encode(None):
                container.mux(packet)


def test_each_frame_gets_the_audio_that_ends_at_its_time(tmp_path: Path) -> None:
    path = tmp_path / "flash_click.mp4"
    _flash_and_click_video(path)
    audio = FileAudio(path)
    with CameraSource(path, realtime=False) as source:
        frames = list(source)
    flashes = [f for f in frames if f.image.mean() > 200]
    assert [f.index for f in flashes] == list(FLASHES)
    errors = []
    for flash in flashes:
        window = audio.window(flash.time - source.origin)
        loud = np.flatnonzero(np.abs(window) > 0.2)
        assert len(loud), f"no click in the window of frame {flash.index}"
        onset = flash.time - (WINDOW - 1 - loud[0]) / SAMPLE_RATE  # when the window says the click began
        expected = flash.index / FPS - 0.01
        errors.append(onset - expected)
        assert (WINDOW - 1 - loud[0]) / SAMPLE_RATE <= 1 / FPS  # the click is at the end of the window
        before = frames[flash.index - 1]  # causal: the frame before the flash does not hear the click
        assert np.abs(audio.window(before.time - source.origin)).max() < 0.2
    assert max(abs(e) for e in errors) < 1 / FPS
    print(f"sync error (click onset vs flash frame time): {[round(float(e) * 1000, 2) for e in errors]} ms")


# ---- the microphone (a PulseAudio virtual microphone) --------------------------------------------


def _need_audio_stack() -> None:
    reason = audio_stack_missing()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the microphone tests: {reason}")
        pytest.skip(reason)


@pytest.fixture
def vmic() -> Iterator[VirtualMicrophone]:
    _need_audio_stack()
    with virtual_microphone() as mic:
        yield mic


def _wait_for_audio(mic: MicrophoneSource, seconds: float, timeout: float = 8.0) -> None:
    """Wait until ``seconds`` of audio were recorded (the null sink's monitor starts ~1-2 s late)."""
    deadline = time.monotonic() + timeout
    while mic.buffer.samples_written < seconds * SAMPLE_RATE:
        assert time.monotonic() < deadline, f"no audio from the virtual microphone: {mic.status}"
        time.sleep(0.05)


@pytest.mark.parametrize("samplerate", [None, 44100])
def test_the_microphone_records_a_tone_on_the_shared_clock(vmic: VirtualMicrophone, samplerate: int | None) -> None:
    vmic.play(_tone(440.0, 48000, 8.0, 0.5), 48000)
    with MicrophoneSource(samplerate=samplerate) as mic:
        _wait_for_audio(mic, 1.1)
        assert mic.status == "recording" and mic.ok
        end = mic.buffer.end_time
        assert end is not None and 0 <= now() - end < 1.0  # stamped on now()'s clock, a little in the past
        window = mic.window(end)
        overflows = mic.overflows
    assert mic.samplerate == (samplerate or SAMPLE_RATE)
    peak, rms = _peak_hz(window), _rms(window)
    assert len(window) == WINDOW and abs(peak - 440) < 3, peak
    assert 0.3 < rms < 0.4, rms  # 0.5 / sqrt(2)
    print(
        f"microphone at {mic.samplerate} Hz: peak {peak:.1f} Hz, RMS {rms:.3f}, age of the last sample "
        f"{(now() - end) * 1000:.0f} ms at the check, overflows {overflows}"
    )


def test_a_microphone_that_stops_gives_silence_and_says_so(vmic: VirtualMicrophone) -> None:
    vmic.play(_tone(440.0, 48000, 8.0, 0.5), 48000)
    with MicrophoneSource(stale_after=0.3) as mic:
        _wait_for_audio(mic, 1.2)
        vmic.kill()  # the sound server (so the microphone) goes away
        time.sleep(1.1)
        with pytest.warns(AudioWarning, match="microphone"):
            window = mic.window(now())
        assert not window.any() and len(window) == WINDOW
        assert not mic.ok and mic.status.startswith(("stopped", "silent")), mic.status
        assert _rms(mic.window(mic.buffer.end_time)) > 0.3  # what was recorded before is kept


def test_overflows_are_counted_and_leave_a_gap(vmic: VirtualMicrophone) -> None:
    # PulseAudio buffers tens of seconds, so a real overflow cannot be provoked here: once the stream is
    # closed, drive the callback as PortAudio does, with sounddevice's own flag and time structures.
    import sounddevice as sd

    with MicrophoneSource() as mic:
        pass
    timing = sd._ffi.new("PaStreamCallbackTimeInfo*")  # no ADC time: blocks are stamped at the callback
    for i, (overflow, pause) in enumerate([(True, 0.02), (False, 0.5), (True, 0.02), (False, 0.0)]):
        flags = sd.CallbackFlags()
        flags.input_overflow = overflow
        mic._callback(np.full((320, 1), 0.1 * (i + 1), np.float32), 320, timing, flags)
        time.sleep(pause)  # 0.5 s of input lost between the second and the third block
    assert mic.overflows == 2
    window = mic.window(mic.buffer.end_time, seconds=0.6)
    assert np.allclose(window[-640:], np.repeat([0.3, 0.4], 320))
    gap = np.flatnonzero(window[:-640] == 0)
    assert 0.45 * SAMPLE_RATE < len(gap) < 0.56 * SAMPLE_RATE  # the lost half second is silence
    assert np.allclose(window[:-640][window[:-640] != 0][-320:], 0.2)


def test_no_microphone_is_a_clear_error(vmic: VirtualMicrophone, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SourceError, match="no microphone 'no-such-mic'"):
        MicrophoneSource(device="no-such-mic")
    # No sound server at all (PulseAudio pointed at nothing): PortAudio finds no input device.
    monkeypatch.setenv("PULSE_SERVER", "unix:/nonexistent")
    refresh_portaudio()
    try:
        with pytest.raises(SourceError, match="no microphone: PortAudio finds no audio input device"):
            MicrophoneSource()
    finally:
        monkeypatch.undo()
        refresh_portaudio()
