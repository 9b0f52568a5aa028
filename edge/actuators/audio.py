"""Audio outputs of the speaker, chosen by ``speaker.backend`` through :data:`AUDIO_OUTPUTS`.

An :class:`AudioOutput` plays one buffer at a time and says when the first buffer started.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from edge.config.actuators import SpeakerConfig


class AudioUnavailable(Exception):
    """The configured output cannot be opened; the message names the device and the key."""


@dataclass(frozen=True)
class Playback:
    """What one play call did: monotonic start of the first buffer (at the DAC when PortAudio says) and end."""

    start_mono: float
    end_mono: float
    frames: int
    device: str


class AudioOutput:
    """Base of the audio backends: ``open()`` then ``play()`` from one thread, ``close()``."""

    name: ClassVar[str] = "base"
    rate: int = 16000
    channels: int = 1
    device_name: str = ""

    def __init__(self, cfg: SpeakerConfig):
        self.cfg = cfg

    def open(self) -> None:
        raise NotImplementedError

    def play(self, samples: np.ndarray) -> Playback:
        raise NotImplementedError

    def interrupt(self) -> None:
        """Cut the prompt in progress short (shutdown); safe from any thread."""

    def cut(self) -> None:
        """Stop the prompt in progress now (another rider's prompt takes over); safe from any thread. A cut before
        ``play`` starts stops that prompt at once, unless :meth:`clear_cut` came between."""

    def clear_cut(self) -> None:
        """Forget a :meth:`cut` (called before the next prompt is chosen)."""

    def close(self) -> None:
        pass


class SoundDeviceOutput(AudioOutput):
    """PortAudio through ``sounddevice``: one output stream per prompt (nothing spins while idle).

    The stream is fed from a callback; the first callback's time plus PortAudio's own estimate of
    the output delay (``outputBufferDacTime - currentTime``, at least the stream's reported output
    latency: PortAudio pre-fills the device buffer with silence) is the moment the prompt starts. The call returns once
    PortAudio finished *and* the prompt's duration has passed since its start, so prompts never
    overlap even on sinks that do not keep time (ALSA ``null``/``file``).
    """

    name = "sounddevice"

    def __init__(self, cfg: SpeakerConfig):
        super().__init__(cfg)
        self._sd: Any = None
        self._device: int | None = None
        self._interrupted = threading.Event()  # closing: every prompt from now on stops at once
        self._cut = threading.Event()  # this prompt stops (set with _interrupted too)

    def open(self) -> None:
        try:
            import sounddevice as sd
        except OSError as e:  # libportaudio2 missing
            raise AudioUnavailable(
                f"speaker.backend: PortAudio library not found ({e}); install libportaudio2"
            ) from None
        if self._sd is not None:  # re-open: re-scan the devices (a USB speaker plugged in later)
            sd._terminate()
            sd._initialize()
        self._sd = sd
        want = self.cfg.device
        try:
            if want is None:
                info = sd.query_devices(kind="output")
            else:
                info = sd.query_devices(want, kind="output")
        except (ValueError, sd.PortAudioError) as e:
            names = [d["name"] for d in sd.query_devices() if d["max_output_channels"] > 0]
            what = "no default output device" if want is None else f"no output device {want!r}"
            raise AudioUnavailable(
                f"speaker.device: {what} ({e}); output devices: {names or 'none'}"
            ) from None
        self._device = int(info["index"])
        self.device_name = str(info["name"])
        self.rate = int(self.cfg.sample_rate or info["default_samplerate"])
        if self.cfg.channels:
            self.channels = self.cfg.channels
        else:
            self.channels = 1
            try:
                sd.check_output_settings(
                    device=self._device, channels=1, samplerate=self.rate, dtype="float32"
                )
            except sd.PortAudioError:
                self.channels = min(2, int(info["max_output_channels"])) or 1
        try:
            sd.check_output_settings(
                device=self._device, channels=self.channels, samplerate=self.rate, dtype="float32"
            )
        except sd.PortAudioError as e:
            raise AudioUnavailable(
                f"speaker.sample_rate/channels: device {self.device_name!r} refuses {self.rate} Hz x {self.channels} ch ({e})"
            ) from None

    def play(self, samples: np.ndarray) -> Playback:
        sd = self._sd
        if sd is None or self._device is None:
            raise AudioUnavailable("speaker: output not open")
        pos = 0
        first: list[float] = []
        done = threading.Event()
        channels = self.channels

        def callback(outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
            nonlocal pos
            if not first:
                dac, cur = time_info.outputBufferDacTime, time_info.currentTime
                first.append(time.monotonic())
                first.append(dac - cur if dac > 0 and cur > 0 and 0 <= dac - cur < 2.0 else 0.0)
            chunk = samples[pos : pos + frames]
            n = len(chunk)
            outdata[:n] = chunk[:, None] if channels > 1 else chunk.reshape(-1, 1)
            outdata[n:] = 0
            pos += n
            if self._cut.is_set():
                raise sd.CallbackAbort
            if n < frames:
                raise sd.CallbackStop

        duration = len(samples) / self.rate
        try:
            stream = sd.OutputStream(
                device=self._device,
                samplerate=self.rate,
                channels=channels,
                dtype="float32",
                latency=self.cfg.latency,
                callback=callback,
                finished_callback=done.set,
                prime_output_buffers_using_stream_callback=True,
            )
        except sd.PortAudioError as e:
            raise AudioUnavailable(f"speaker.device: cannot open {self.device_name!r}: {e}") from None
        try:
            stream.start()
            if not done.wait(timeout=duration + 5.0):
                stream.abort()
                raise AudioUnavailable(f"speaker.device: {self.device_name!r} stopped consuming audio")
        finally:
            stream.close()
        # PortAudio fills the device buffer with silence before the first callback's data: the prompt
        # is heard at the callback plus PortAudio's own estimate of the output delay (the buffer's
        # DAC time where the device reports it, else the stream's nominal output latency, which on
        # ALSA is about one period shorter than the silence actually pre-filled: ~5 ms at 'low',
        # ~25 ms at 'high', measured into the null sink).
        start = first[0] + max(first[1], float(stream.latency)) if first else time.monotonic()
        rest = start + duration - time.monotonic()
        if rest > 0:
            self._cut.wait(rest)
        end = time.monotonic() if self._cut.is_set() else max(time.monotonic(), start + duration)
        return Playback(start, end, pos, self.device_name)

    def interrupt(self) -> None:
        self._interrupted.set()
        self._cut.set()

    def cut(self) -> None:
        self._cut.set()

    def clear_cut(self) -> None:
        if not self._interrupted.is_set():
            self._cut.clear()

    def close(self) -> None:
        self._sd = None


#: ``speaker.backend`` -> output class; ``none`` has no output (the speaker reports "off")
AUDIO_OUTPUTS: dict[str, type[AudioOutput]] = {SoundDeviceOutput.name: SoundDeviceOutput}
