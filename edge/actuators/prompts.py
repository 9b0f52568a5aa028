"""Prompt packs: one folder per language, one WAV per message (layout: audio_prompts/README.md).

Installers may drop in their own recordings at any sample rate, mono or stereo, 8/16/24/32-bit
integer or float WAV: :func:`load_wav` downmixes to mono and resamples to the output rate.
"""

from __future__ import annotations

import warnings
import wave
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np

from anqi_contract.paths import audio_prompts_dir
from edge.config.actuators import SpeakerConfig
from edge.config.rules import RulesConfig

#: messages of a complete pack
MESSAGES = ("no_helmet", "wrong_way", "red_light", "passenger", "generic")
#: the message each violation type plays; a site pack recorded without ``passenger.wav`` plays ``generic`` for it
MESSAGE_FOR_VIOLATION = {
    "no_helmet": "no_helmet",
    "wrong_way": "wrong_way",
    "red_light": "red_light",
    "passenger": "passenger",
}
FALLBACK_MESSAGE = "generic"


def first_clause_end_s(
    samples: np.ndarray,
    rate: int,
    min_speech_s: float = 1.0,
    min_pause_s: float = 0.1,
    window_s: float = 0.02,
    quiet: float = 0.05,
) -> float:
    """Where the prompt's first clause ends: the start of its first pause of at least ``min_pause_s`` (20 ms
    windows whose mean level is below ``quiet`` of the loudest window) after ``min_speech_s`` of sound; the whole
    prompt when it has no such pause. "请戴好安全头盔，安全骑行。" -> 2.0 s (the comma), of 3.6 s."""
    n = int(window_s * rate)
    if n <= 0 or len(samples) < n:
        return len(samples) / rate
    level = np.abs(samples[: len(samples) // n * n]).reshape(-1, n).mean(axis=1)
    loud = level >= quiet * float(level.max())
    if not loud.any():
        return len(samples) / rate
    onset = int(np.argmax(loud))
    need = max(1, int(round(min_pause_s / window_s)))
    run = 0
    for i in range(onset + int(round(min_speech_s / window_s)), len(loud)):
        run = 0 if loud[i] else run + 1
        if run >= need:
            return (i - need + 1) * window_s
    return len(samples) / rate


class PromptError(Exception):
    """A pack or WAV that cannot be used; the message names the file."""


@dataclass(frozen=True)
class PromptPacks:
    """Where the language packs are looked for (in order) and the messages the site's enabled rules need."""

    dirs: tuple[Path, ...]
    required: frozenset[str]

    @classmethod
    def for_site(cls, speaker: SpeakerConfig, rules: RulesConfig, base_dir: Path) -> PromptPacks:
        """``base_dir``: the config file's folder (``speaker.prompts_dir`` may be relative to it)."""
        return cls(tuple(search_dirs(speaker, base_dir)), frozenset(required_messages(rules)))


def search_dirs(speaker: SpeakerConfig, base_dir: Path) -> list[Path]:
    """Folders searched for language packs, in order: ``speaker.prompts_dir`` (relative to ``base_dir``, the
    config file's folder) then the shipped packs."""
    if not speaker.prompts_dir:
        return [audio_prompts_dir()]
    own = Path(speaker.prompts_dir).expanduser()
    return [own if own.is_absolute() else (base_dir / own).resolve(), audio_prompts_dir()]


def find_pack(lang: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        if (d / lang).is_dir():
            return d / lang
    return None


def message_file(pack: Path, message: str) -> Path | None:
    """The WAV of ``message`` in ``pack`` (``passenger`` falls back to ``generic``), or None."""
    for name in (message, FALLBACK_MESSAGE) if message == "passenger" else (message,):
        p = pack / f"{name}.wav"
        if p.is_file():
            return p
    return None


def required_messages(rules: RulesConfig) -> list[str]:
    """Messages the enabled rules need, plus ``generic`` (passenger and the installer's self-test)."""
    needed = [
        name
        for name, rule in (
            ("no_helmet", rules.no_helmet),
            ("wrong_way", rules.wrong_way),
            ("red_light", rules.red_light),
        )
        if rule.enabled
    ]
    return needed + [FALLBACK_MESSAGE]


def _read_pcm_wave(path: Path) -> tuple[int, np.ndarray]:
    """Integer PCM WAV through the standard library (fast to import); raises wave.Error for other formats."""
    with wave.open(str(path), "rb") as w:
        rate, channels, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
        raw = w.readframes(n)
    if width == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        i32 = (
            (b[:, 0].astype(np.int32) << 8)
            | (b[:, 1].astype(np.int32) << 16)
            | (b[:, 2].astype(np.int32) << 24)
        )
        x = i32.astype(np.float32) / 2147483648.0
    elif width == 4:
        x = np.frombuffer(raw, dtype="<i4").astype(np.float32) / 2147483648.0
    else:
        raise wave.Error(f"{width * 8}-bit samples")
    return rate, x.reshape(-1, channels) if channels > 1 else x


def read_wav(path: Path) -> tuple[int, np.ndarray]:
    """``(rate, samples)`` with samples float32 in [-1, 1], shape (n,) or (n, channels)."""
    try:
        rate, x = _read_pcm_wave(path)
    except FileNotFoundError:
        raise PromptError(f"{path}: file not found") from None
    except (wave.Error, EOFError, ValueError, OSError):  # float or extensible WAV: scipy reads those
        from scipy.io import wavfile

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", wavfile.WavFileWarning)
                rate, data = wavfile.read(path)
        except (ValueError, OSError, EOFError) as e:
            raise PromptError(f"{path}: not a readable WAV ({e})") from None
        if data.dtype == np.uint8:
            x = (data.astype(np.float32) - 128.0) / 128.0
        elif data.dtype.kind == "i":
            x = data.astype(np.float32) / float(-np.iinfo(data.dtype).min)
        elif data.dtype.kind == "f":
            x = data.astype(np.float32)
        else:
            raise PromptError(f"{path}: unsupported sample type {data.dtype}") from None
    if x.size == 0:
        raise PromptError(f"{path}: holds no samples")
    if rate <= 0:
        raise PromptError(f"{path}: sample rate {rate}")
    return int(rate), x


def to_mono(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1, dtype=np.float32) if x.ndim == 2 else x


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out:
        return x.astype(np.float32, copy=False)
    from scipy.signal import (
        resample_poly,
    )  # imported when needed: scipy.signal takes seconds to import on a small board

    g = gcd(rate_in, rate_out)
    return resample_poly(x, rate_out // g, rate_in // g).astype(np.float32)


def load_wav(path: Path, rate: int) -> np.ndarray:
    """Mono float32 samples of ``path`` at ``rate`` Hz, clipped to [-1, 1]."""
    rate_in, x = read_wav(path)
    return np.clip(resample(to_mono(x), rate_in, rate), -1.0, 1.0)


@dataclass(frozen=True)
class Prompt:
    """One message ready to play: the languages in order, joined by ``gap_s`` of silence."""

    message: str
    languages: tuple[str, ...]
    files: tuple[Path, ...]
    samples: np.ndarray
    rate: int
    #: where another rider's prompt may cut this one (``speaker.barge_in``): the end of its first clause
    cut_at_s: float = 0.0

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.rate


class PromptLibrary:
    """Every message of the configured languages, loaded and resampled once at start."""

    def __init__(self, prompts: dict[str, Prompt], problems: list[str]):
        self.prompts = prompts
        #: messages that could not be loaded (``key.path: message``); the speaker plays what it has
        self.problems = problems

    @classmethod
    def load(
        cls, speaker: SpeakerConfig, packs: PromptPacks, rate: int, messages: tuple[str, ...] = MESSAGES
    ) -> PromptLibrary:
        """The prompts of ``speaker.languages`` (joined by ``speaker.gap_s``) at ``rate`` Hz."""
        dirs = list(packs.dirs)
        langs = speaker.languages
        gap = np.zeros(int(round(speaker.gap_s * rate)), dtype=np.float32)
        prompts: dict[str, Prompt] = {}
        problems: list[str] = []
        required = packs.required  # a missing message no enabled rule plays is no problem
        for message in messages:
            parts: list[np.ndarray] = []
            files: list[Path] = []
            used: list[str] = []
            for lang in langs:
                pack = find_pack(lang, dirs)
                f = message_file(pack, message) if pack else None
                if f is None:
                    if message in required:
                        where = pack or " or ".join(str(d / lang) for d in dirs)
                        problems.append(f"speaker.languages: {lang}: no {message}.wav in {where}")
                    continue
                try:
                    samples = load_wav(f, rate)
                except PromptError as e:
                    problems.append(f"speaker.languages: {lang}: {e}")
                    continue
                if parts:
                    parts.append(gap)
                parts.append(samples)
                files.append(f)
                used.append(lang)
            if parts:
                samples = np.concatenate(parts)
                prompts[message] = Prompt(
                    message, tuple(used), tuple(files), samples, rate, first_clause_end_s(samples, rate)
                )
        return cls(prompts, problems)

    def for_violation(self, violation_type: str) -> Prompt | None:
        message = MESSAGE_FOR_VIOLATION.get(violation_type, FALLBACK_MESSAGE)
        return self.prompts.get(message) or self.prompts.get(FALLBACK_MESSAGE)
