"""Audio for the live path: microphone and file audio as mono float32 16 kHz, in windows that end at a frame's time.

Convention for the audio encoder: for the frame captured at time ``t`` the model gets the window of
``WINDOW_SECONDS`` (0.96 s) of audio that *ends* at ``t`` (causal: nothing recorded after the frame),
exactly ``round(seconds * 16000)`` samples, with zeros wherever no audio exists (before the start, in a
gap or dropout, after the source stopped, in the future). Sample ``k`` of a source has a time; the
window holds the latest samples whose time is at or before ``t``.

* ``MicrophoneSource``: a sounddevice (PortAudio) input stream whose callback writes into an
  ``AudioBuffer`` stamped on ``avvos.capture.now()``'s clock: pair with ``LiveFrame.time``.
* ``FileAudio``: the decoded audio track of a file (wav, ogg, mp3, a video's own track...), on the
  file's timeline (seconds from its start): pair with ``frame.time - source.origin``.

Audio that cannot be had never stops the live path: a missing microphone raises ``SourceError`` at
open (the app may then run without audio), a microphone that stops gives silence and a warning.
"""

from __future__ import annotations

import math
import threading
import warnings
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
import torchaudio.functional as AF
import torchaudio.transforms as AT

from avvos.capture import now
from avvos.closing import Closeable
from avvos.errors import InputError, SourceError

SAMPLE_RATE = 16000
WINDOW_SECONDS = 0.96
_EPS = 1e-6  # in samples: frame times like 12/25 s must not fall one sample short by rounding


class AudioWarning(UserWarning):
    """Audio that had to be repaired or replaced by silence (non-finite samples, dropouts, a stopped microphone)."""


def _as_float(samples: np.ndarray) -> np.ndarray:
    """Samples as float32 in [-1, 1] scale, from float or integer PCM."""
    samples = np.asarray(samples)
    if samples.dtype.kind == "f":
        return samples.astype(np.float32, copy=False)
    if samples.dtype == np.uint8:
        return (samples.astype(np.float32) - 128.0) / 128.0
    if samples.dtype.kind == "i":
        return samples.astype(np.float32) / float(2 ** (8 * samples.dtype.itemsize - 1))
    raise InputError(f"unsupported audio sample type {samples.dtype}: expected float or integer PCM")


def _mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels of (frames,) or (frames, channels) samples."""
    samples = _as_float(samples)
    if samples.ndim == 2:
        return samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    if samples.ndim != 1:
        raise InputError(f"audio must be (frames,) or (frames, channels), got shape {samples.shape}")
    return samples


def _clean(samples: np.ndarray, where: str = "audio") -> np.ndarray:
    """Replace NaN/inf by 0 and clip to [-1, 1], with an AudioWarning saying how many samples it changed."""
    finite = np.isfinite(samples)
    bad = int(samples.size - np.count_nonzero(finite))
    if bad:
        samples = np.where(finite, samples, np.float32(0.0))
    over = int(np.count_nonzero(np.abs(samples) > 1.0))
    if over:
        samples = np.clip(samples, -1.0, 1.0)
    if bad or over:
        warnings.warn(
            f"{where}: replaced {bad} non-finite (NaN/inf) samples by 0 and clipped {over} samples to [-1, 1]",
            AudioWarning,
            stacklevel=3,
        )
    return samples.astype(np.float32, copy=False)


def _check_rate(rate: float) -> int:
    if not np.isfinite(rate) or rate <= 0 or abs(rate - round(rate)) > 1e-6:
        raise InputError(f"the audio sample rate must be a positive whole number of Hz, got {rate}")
    return int(round(rate))


def to_mono_16k(samples: np.ndarray, rate: float) -> np.ndarray:
    """Mono float32 at 16 kHz from (frames,) or (frames, channels) samples at ``rate`` Hz.

    Channels are averaged, integer PCM is scaled to [-1, 1], the rate is converted with
    ``torchaudio.functional.resample`` (windowed sinc), NaN/inf become 0 and the result is clipped to
    [-1, 1] (with an AudioWarning when that changed anything).
    """
    rate = _check_rate(rate)
    mono = _clean(_mono(samples))
    if rate != SAMPLE_RATE and mono.size:
        mono = AF.resample(torch.from_numpy(np.ascontiguousarray(mono)), rate, SAMPLE_RATE).numpy()
        mono = np.clip(mono, -1.0, 1.0)  # the sinc filter can overshoot full-scale inputs slightly
    return np.ascontiguousarray(mono, dtype=np.float32)


class _StreamResampler:
    """``torchaudio.functional.resample`` for a signal arriving in blocks, sample-exact with the one-shot result.

    Output period i (``new`` samples per ``orig`` input samples, after dividing both by their gcd)
    depends on input samples [i*orig - width, (i+1)*orig + width): it is computed once those have
    arrived, so the output lags the input by ``width`` plus less than one period of input samples.
    Output sample k is at input time k / new_rate.
    """

    def __init__(self, orig_rate: int, new_rate: int = SAMPLE_RATE) -> None:
        self.orig_rate, self.new_rate = orig_rate, new_rate
        gcd = math.gcd(orig_rate, new_rate)
        self.period_in, self.period_out = orig_rate // gcd, new_rate // gcd
        # torchaudio's own filter (as in torchaudio.functional.resample), computed once; applied with numpy
        # because small torch convolutions cost ~50 ms per block on a busy 2-core machine (thread pool).
        self.width, self._kernel = 0, np.zeros((0, 0), np.float32)
        if orig_rate != new_rate:
            resample = AT.Resample(orig_rate, new_rate)
            self.width = int(resample.width)
            self._kernel = resample.kernel[:, 0, :].numpy().T.copy()  # (taps, period_out)
        self.context = math.ceil(self.width / self.period_in) * self.period_in  # whole periods, >= width
        # Input history starts at absolute input index self.start (negative: zeros before the stream).
        self.history = np.zeros(self.context, np.float32)
        self.start = -self.context
        self.next_period = 0
        self.produced = 0  # output samples so far

    def process(self, block: np.ndarray) -> np.ndarray:
        """Feed input samples; return the output samples that became computable."""
        if self.orig_rate == self.new_rate:
            self.produced += len(block)
            return block
        self.history = np.concatenate([self.history, block.astype(np.float32, copy=False)])
        available = self.start + len(self.history)
        end_period = (available - self.width) // self.period_in  # periods whose inputs have all arrived
        if end_period <= self.next_period:
            return np.zeros(0, np.float32)
        seg_start = self.next_period * self.period_in - self.context
        seg_end = end_period * self.period_in + self.context
        segment = self.history[seg_start - self.start : seg_end - self.start]
        if len(segment) < seg_end - seg_start:  # right context not all there: zero-pad (beyond width only)
            segment = np.pad(segment, (0, seg_end - seg_start - len(segment)))
        # Output period j of the segment uses segment[j*P - width : (j+1)*P + width] (P = period_in); only the
        # periods whose inputs all lie inside the segment are computed: from context/P on.
        first = self.context // self.period_in
        count = end_period - self.next_period
        offset = first * self.period_in - self.width
        taps = self._kernel.shape[0]
        frames = np.lib.stride_tricks.sliding_window_view(segment[offset:], taps)[:: self.period_in][:count]
        out = (frames @ self._kernel).reshape(-1)
        self.next_period = end_period
        keep_from = end_period * self.period_in - self.context
        self.history = self.history[keep_from - self.start :]
        self.start = keep_from
        self.produced += len(out)
        return np.clip(out, -1.0, 1.0).astype(np.float32, copy=False)


class AudioBuffer:
    """Thread-safe ring buffer of the latest ``capacity`` seconds of mono 16 kHz audio, stamped by its last sample.

    ``append(chunk, end_time)`` adds samples whose last one was recorded at ``end_time`` (on
    ``avvos.capture.now()``'s clock, or any clock shared with the callers of ``window``). A chunk that
    starts within ``snap`` seconds of where the buffer ends is taken as contiguous (clock jitter); a
    later start leaves a gap of zeros; an earlier one replaces the samples from its start on (the
    newest chunk defines the timeline).
    """

    def __init__(self, capacity: float = 10.0, snap: float = 0.01) -> None:
        self.capacity = max(1, int(round(capacity * SAMPLE_RATE)))
        self.snap = snap
        self._data = np.zeros(self.capacity, np.float32)
        self._count = 0  # samples written since the start (absolute index of the next sample)
        self._end_time: float | None = None  # time of sample self._count - 1
        self._lock = threading.Lock()

    @property
    def end_time(self) -> float | None:
        """Clock time of the last sample (None before the first append)."""
        return self._end_time

    @property
    def samples_written(self) -> int:
        """Samples appended so far, gaps (zeros) included."""
        return self._count

    def _write(self, chunk: np.ndarray) -> None:
        """Write at the head of the ring (caller holds the lock)."""
        if len(chunk) >= self.capacity:
            self._count += len(chunk) - self.capacity
            chunk = chunk[-self.capacity :]
        pos = self._count % self.capacity
        first = min(len(chunk), self.capacity - pos)
        self._data[pos : pos + first] = chunk[:first]
        self._data[: len(chunk) - first] = chunk[first:]
        self._count += len(chunk)

    def append(self, chunk: np.ndarray, end_time: float, *, contiguous: bool = False) -> None:
        """Add mono 16 kHz samples; ``end_time`` is the time of the last one.

        ``contiguous=True`` says the chunk directly follows the previous one whatever ``end_time`` says:
        the buffer is re-stamped (its earlier samples move with it) instead of gaining a gap or overlap.
        """
        chunk = np.asarray(chunk, np.float32).reshape(-1)
        if not len(chunk):
            return
        with self._lock:
            if self._end_time is not None and not contiguous:
                start = end_time - (len(chunk) - 1) / SAMPLE_RATE
                gap = start - (self._end_time + 1 / SAMPLE_RATE)
                if gap > self.snap:
                    self._write(np.zeros(min(int(round(gap * SAMPLE_RATE)), self.capacity), np.float32))
                elif gap < -self.snap:
                    back = min(int(round(-gap * SAMPLE_RATE)), self._count, self.capacity)
                    self._count -= back  # overwrite the overlapped tail
            self._write(chunk)
            self._end_time = float(end_time)

    def window(self, end_time: float, seconds: float = WINDOW_SECONDS) -> np.ndarray:
        """The ``round(seconds * 16000)`` samples that end at ``end_time``, zeros where nothing was recorded."""
        size = int(round(seconds * SAMPLE_RATE))
        out = np.zeros(size, np.float32)
        with self._lock:
            if self._end_time is None or size <= 0:
                return out
            last = self._count - 1 + math.floor((end_time - self._end_time) * SAMPLE_RATE + _EPS)
            first = last - size + 1
            lo, hi = max(first, self._count - self.capacity, 0), min(last + 1, self._count)
            if lo < hi:
                idx = np.arange(lo, hi) % self.capacity
                out[lo - first : hi - first] = self._data[idx]
        return out


def _slice_padded(samples: np.ndarray, last: int, size: int) -> np.ndarray:
    """samples[last - size + 1 : last + 1] with zeros for indices outside the array."""
    out = np.zeros(size, np.float32)
    first = last - size + 1
    lo, hi = max(first, 0), min(last + 1, len(samples))
    if lo < hi:
        out[lo - first : hi - first] = samples[lo:hi]
    return out


class MicrophoneSource(Closeable):
    """Records a microphone into an ``AudioBuffer`` on ``now()``'s clock, for ``window(frame.time)``.

    ``device``: a PortAudio device index or name (None: the default input). ``samplerate``: what to
    ask the device for (None: 16 kHz when the device accepts it, else its default rate, resampled).

    Time stamps: samples are counted, so blocks stay contiguous, and the count is tied to ``now()``
    at the callbacks: the last sample of a block cannot be younger than its callback, so the count
    follows the earliest callbacks (late callbacks, bursts and clock drift do not move it). The stamp
    is therefore late by the part of the input latency the host does not show (PortAudio's period
    and the sound server's fragment: at least one block; it cannot be measured without a hardware
    loopback). PortAudio's ``inputBufferAdcTime``
    is not used: on PulseAudio its age swung from 0.7 s to 0.02 s within a second while the samples
    stayed contiguous (measured on the virtual microphone). An overflow, or a count that stays more
    than ``MAX_LAG`` behind the clock for ``MAX_LAG_FOR`` seconds (input lost unflagged), restarts
    the count at the clock: the lost time is a gap of zeros.

    ``overflows`` counts blocks PortAudio flagged as lost input. If no audio arrives for ``stale_after``
    seconds, windows are silent there, ``status`` says so and an AudioWarning is issued once.
    """

    MAX_LAG = 0.25
    MAX_LAG_FOR = 0.5

    def __init__(
        self,
        device: int | str | None = None,
        samplerate: float | None = None,
        block_seconds: float = 0.02,
        *,
        capacity: float = 10.0,
        stale_after: float = 0.5,
    ) -> None:
        sd = _sounddevice()
        self.device = device
        self.block_seconds = block_seconds
        self.stale_after = stale_after
        self.buffer = AudioBuffer(capacity)
        self.overflows = 0
        self.blocks = 0
        self._lock = threading.Lock()
        self._resampler: _StreamResampler | None = None
        self._anchor = 0.0  # clock time of input sample 0 since the last re-stamp
        self._inputs = 0  # input samples since the last re-stamp
        self._last_callback: float | None = None
        self._lagging_since: float | None = None
        self._fresh = True  # the next chunk starts a new count (not contiguous with the buffer)
        self._finished: str | None = None
        self._warned_stale = False
        self._closed = False
        info = self._input_device(sd, device)
        self.device_name = str(info["name"])
        self.samplerate = self._pick_rate(sd, info, samplerate)
        self._started_at = now()
        # Mono when the device offers it; else its first two channels, averaged in the callback.
        layouts = [1] + ([min(2, int(info["max_input_channels"]))] if info["max_input_channels"] > 1 else [])
        for attempt, channels in enumerate(layouts):
            stream = None
            try:
                stream = sd.InputStream(
                    device=info["index"],
                    samplerate=self.samplerate,
                    channels=channels,
                    dtype="float32",
                    blocksize=max(1, int(round(block_seconds * self.samplerate))),
                    callback=self._callback,
                    finished_callback=self._on_finished,
                )
                stream.start()
                self._stream = stream
                break
            except (sd.PortAudioError, ValueError) as exc:
                if stream is not None:
                    stream.close(ignore_errors=True)
                if attempt + 1 < len(layouts):
                    continue
                raise SourceError(f"cannot record from the microphone {self.device_name!r}: {exc}") from exc

    # ---- opening -------------------------------------------------------------------------------

    @staticmethod
    def _input_device(sd: Any, device: int | str | None) -> dict[str, Any]:
        try:
            devices = sd.query_devices()
        except sd.PortAudioError as exc:
            raise SourceError(f"no microphone: PortAudio cannot list audio devices ({exc})") from exc
        inputs = [d for d in devices if d["max_input_channels"] > 0]
        if not inputs:
            raise SourceError(
                "no microphone: PortAudio finds no audio input device (no sound card, or no sound server "
                "such as PulseAudio/PipeWire running); continuing without audio is possible"
            )
        try:
            info = sd.query_devices(device, kind="input")
        except (sd.PortAudioError, ValueError) as exc:
            names = ", ".join(f"{d['index']}: {d['name']}" for d in inputs)
            what = "no default microphone" if device is None else f"no microphone {device!r}"
            raise SourceError(f"{what} ({exc}); input devices: {names}") from exc
        if info["max_input_channels"] < 1:
            raise SourceError(f"the audio device {device!r} ({info['name']}) has no input channel")
        return dict(info)

    @staticmethod
    def _pick_rate(sd: Any, info: dict[str, Any], samplerate: float | None) -> int:
        if samplerate is not None:
            return _check_rate(samplerate)
        try:
            sd.check_input_settings(device=info["index"], samplerate=SAMPLE_RATE, channels=1, dtype="float32")
            return SAMPLE_RATE
        except (sd.PortAudioError, ValueError):
            return _check_rate(info["default_samplerate"])

    # ---- PortAudio thread ----------------------------------------------------------------------

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """Runs on PortAudio's thread for each block: stamp it, convert it to 16 kHz, append it."""
        called = now()
        try:
            overflow = bool(status.input_overflow)
            with self._lock:
                self.blocks += 1
                self.overflows += overflow
                self._last_callback = called
                self._warned_stale = False
                # How far the callback comes after the sample count's time for this block's last sample.
                lag = called - (self._anchor + (self._inputs + frames - 1) / self.samplerate)
                if self._resampler is None or overflow:
                    self._restart(called, frames)
                elif lag < 0:  # the count ran ahead of the clock: samples cannot be recorded in the future
                    self._anchor += lag
                elif lag > self.MAX_LAG:  # the count fell behind: unflagged loss if it lasts (not a backlog)
                    self._lagging_since = self._lagging_since or called
                    if called - self._lagging_since > self.MAX_LAG_FOR:
                        self._restart(called, frames)
                else:  # creep towards the earliest callbacks: follows clock drift, ignores late callbacks
                    self._lagging_since = None
                    self._anchor += 0.002 * lag
                self._inputs += frames
                assert self._resampler is not None
                out = self._resampler.process(_clean(_mono(indata), "microphone"))
                if len(out):
                    end = self._anchor + (self._resampler.produced - 1) / SAMPLE_RATE
                    self.buffer.append(out, end, contiguous=not self._fresh)
                    self._fresh = False
        except Exception as exc:  # nothing may escape into PortAudio's thread
            self._finished = f"audio callback failed: {type(exc).__name__}: {exc}"
            raise _sounddevice().CallbackAbort from exc

    def _restart(self, called: float, frames: int) -> None:
        """Start a new sample count whose block ends at the callback time (after a loss: a gap of zeros)."""
        self._resampler = _StreamResampler(self.samplerate)
        self._inputs = 0
        self._anchor = called - (frames - 1) / self.samplerate
        self._lagging_since = None
        self._fresh = True

    def _on_finished(self) -> None:
        if self._finished is None and not self._closed:
            self._finished = "the microphone stream stopped"

    # ---- consumer side -------------------------------------------------------------------------

    def window(self, end_time: float, seconds: float = WINDOW_SECONDS) -> np.ndarray:
        """Mono 16 kHz audio ending at ``end_time`` (a ``now()`` time); silence where the microphone gave none."""
        self._check_stale()
        return self.buffer.window(end_time, seconds)

    @property
    def status(self) -> str:
        """ "recording", "waiting for audio", "silent: ..." (no audio lately) or "stopped: ..." / "closed"."""
        if self._closed:
            return "closed"
        if self._finished is not None:
            return f"stopped: {self._finished}; audio windows are silent"
        last = self._last_callback
        age = now() - (last if last is not None else self._started_at)
        if age > self.stale_after:
            what = "no audio yet" if last is None else "no audio"
            return f"silent: {what} from {self.device_name!r} for {age:.1f} s; audio windows are silent"
        return "waiting for audio" if last is None else "recording"

    @property
    def ok(self) -> bool:
        """True while audio arrives as it should."""
        return self.status in ("recording", "waiting for audio")

    def _check_stale(self) -> None:
        status = self.status
        if status.startswith(("silent", "stopped")) and not self._warned_stale:
            self._warned_stale = True
            warnings.warn(f"microphone: {status}", AudioWarning, stacklevel=3)

    def close(self) -> None:
        """Stop recording (the buffer keeps what was recorded)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._stream.abort(ignore_errors=True)
            self._stream.close(ignore_errors=True)
        except Exception:  # a device that vanished may fail to close; nothing to keep
            pass


def _sounddevice() -> Any:
    """The sounddevice module, or a SourceError saying what to install."""
    try:
        import sounddevice
    except ImportError as exc:
        raise SourceError("microphone input needs the Python package sounddevice: pip install sounddevice") from exc
    except OSError as exc:
        raise SourceError(
            f"microphone input needs the PortAudio library ({exc}): on Debian/Ubuntu apt-get install libportaudio2"
        ) from exc
    return sounddevice


class FileAudio:
    """The audio track of a file (anything PyAV opens: wav, ogg, mp3, a video's own track) as mono 16 kHz.

    ``samples`` holds the whole track on the file's timeline: sample k is at ``k / 16000`` seconds
    from the start of the file (audio that starts late is preceded by zeros). ``duration`` covers
    the longer of the decoded audio and the length the file declares. A track that cannot be decoded
    to its end keeps what was decoded, is padded with silence and gives an AudioWarning; so do
    dropouts (stretches of exact digital zeros of 1 s or more, listed in ``dropouts``).
    """

    MIN_DROPOUT = 1.0

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"audio file not found: {self.path}")
        try:
            container = av.open(str(self.path), mode="r")
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise InputError(f"cannot open {self.path}: the file is corrupt or not a media file ({exc})") from exc
        try:
            if not container.streams.audio:
                raise InputError(
                    f"{self.path} has no audio track (streams: "
                    f"{', '.join(s.type for s in container.streams) or 'none'}): it cannot give audio"
                )
            stream = container.streams.audio[0]
            origin = container.start_time / av.time_base if container.start_time is not None else 0.0
            declared = self._declared_duration(container, stream)
            self.source_rate = int(stream.rate or 0)
            self.channels = int(stream.channels or 0)
            self.codec = stream.codec_context.name
            native, rate, failure = self._decode(container, stream, origin)
        finally:
            container.close()
        self.samples = to_mono_16k(native, rate) if len(native) else np.zeros(0, np.float32)
        decoded = len(self.samples) / SAMPLE_RATE
        self.duration = max(decoded, declared)
        problems = []
        if self.damaged_packets:
            problems.append(f"{self.damaged_packets} damaged packets were skipped (silence in their place)")
        if failure is not None or (declared - decoded) > 0.1:
            why = f"decoding failed ({failure})" if failure else "the track ended early"
            problems.append(f"{why} at {decoded:.2f} s of {self.duration:.2f} s; the rest is silence")
        if problems:
            warnings.warn(f"the audio of {self.path}: {'; '.join(problems)}", AudioWarning, stacklevel=2)
        self.dropouts = self._find_dropouts()
        if self.dropouts:
            spans = ", ".join(f"{a:.2f}-{b:.2f} s" for a, b in self.dropouts[:5])
            total = len(self.samples) / SAMPLE_RATE
            if len(self.dropouts) == 1 and self.dropouts[0][1] - self.dropouts[0][0] >= total - 1e-3:
                message = f"the audio track of {self.path} is digital silence from start to end"
            else:
                message = f"the audio track of {self.path} is digital silence (a dropout?) at {spans}"
            warnings.warn(message, AudioWarning, stacklevel=2)

    @staticmethod
    def _declared_duration(container: av.container.InputContainer, stream: av.audio.AudioStream) -> float:
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return container.duration / av.time_base
        return 0.0

    def _decode(
        self, container: av.container.InputContainer, stream: av.audio.AudioStream, origin: float
    ) -> tuple[np.ndarray, int, str | None]:
        """Decode the track as (frames, channels) float32 at its own rate, placed on the file's timeline."""
        resampler: av.AudioResampler | None = None
        rate = int(stream.rate or 0)
        chunks: list[np.ndarray] = []
        position = 0  # samples placed so far, at `rate`
        failure: str | None = None
        errors = 0
        self.damaged_packets = 0
        packets = container.demux(stream)
        while True:
            try:
                # PyAV ends the demuxing with an empty packet that flushes the decoder.
                packet = next(packets, None)
            except (av.error.FFmpegError, OSError, ValueError) as exc:  # the file cannot be read further
                failure = str(exc)
                break
            if packet is None:
                break
            try:
                frames = packet.decode()
            except (av.error.FFmpegError, OSError, ValueError) as exc:
                errors += 1  # a damaged packet: skip it; its time becomes silence (placed by time stamps)
                self.damaged_packets += 1
                if errors > 50:
                    failure = f"{errors} packets in a row could not be decoded: {exc}"
                    break
                continue
            errors = 0
            for frame in frames:
                if resampler is None:
                    rate = frame.sample_rate
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout.name, rate=rate)
                for converted in resampler.resample(frame):
                    data = converted.to_ndarray().T  # (frames, channels)
                    if converted.pts is not None and converted.time_base is not None:
                        at = int(round((float(converted.pts * converted.time_base) - origin) * rate))
                        if not chunks and at < 0:  # audio that starts before the file's origin
                            data = data[min(-at, len(data)) :]
                        elif at > position + (rate // 20 if chunks else 0):  # late start or a gap > 50 ms
                            chunks.append(np.zeros((at - position, data.shape[1]), np.float32))
                            position = at
                    chunks.append(data)
                    position += len(data)
        if not chunks:
            return np.zeros((0, 1), np.float32), rate or SAMPLE_RATE, failure
        width = max(c.shape[1] for c in chunks)
        native = np.concatenate([c if c.shape[1] == width else np.repeat(c[:, :1], width, 1) for c in chunks])
        return native, rate, failure

    def _find_dropouts(self) -> list[tuple[float, float]]:
        """(start, end) seconds of runs of exact zeros lasting MIN_DROPOUT or more."""
        zero = self.samples == 0
        if not zero.any():
            return []
        edges = np.flatnonzero(np.diff(np.concatenate([[0], zero.astype(np.int8), [0]])))
        starts, ends = edges[::2], edges[1::2]
        keep = (ends - starts) >= self.MIN_DROPOUT * SAMPLE_RATE
        return [(s / SAMPLE_RATE, e / SAMPLE_RATE) for s, e in zip(starts[keep], ends[keep], strict=True)]

    def window(self, t: float, seconds: float = WINDOW_SECONDS) -> np.ndarray:
        """The ``round(seconds * 16000)`` samples ending at ``t`` seconds from the start of the file (zeros outside)."""
        last = math.floor(t * SAMPLE_RATE + _EPS)
        return _slice_padded(self.samples, last, int(round(seconds * SAMPLE_RATE)))
