"""Lights: the laser projector and the strobe, each a :class:`LightOutput`, grouped by a :class:`LightBoard`.

The backend is chosen by ``lights.backend`` through :data:`LIGHT_OUTPUTS`:

* ``gpio``: a relay on a GPIO pin, driven by a gpiozero :class:`~gpiozero.OutputDevice`
  (``active_high`` from config, pin factory from ``lights.gpio.pin_factory``).
* ``rs485``: an output of a serial sound-and-light controller; ``on_frame`` / ``off_frame`` are the
  raw bytes (hex in config) written to the bus by a shared :class:`SerialFrameBus` (pyserial).

The board's worker thread switches outputs on when triggered and off after their on-time; a
new trigger while on extends the on-time. Failures mark the output down in health and are logged;
nothing raises into the daemon.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from anqi_contract.logs import log
from edge.config.actuators import LightOutputConfig, LightsConfig, Rs485Config, parse_hex_frame
from edge.health import Health

logger = logging.getLogger("edge.actuators.lights")


class LightUnavailable(Exception):
    """The output cannot be driven; the message names the key (pin, port)."""


def health_name(output: str) -> str:
    return f"light.{output}"


def make_pin_factory(name: str) -> Any:
    """A gpiozero pin factory by config name; None for 'auto' (gpiozero's own choice)."""
    if name == "auto":
        return None
    try:
        if name == "mock":
            from gpiozero.pins.mock import MockFactory

            return MockFactory()
        if name == "lgpio":
            from gpiozero.pins.lgpio import LGPIOFactory

            return LGPIOFactory()
        if name == "rpigpio":
            from gpiozero.pins.rpigpio import RPiGPIOFactory

            return RPiGPIOFactory()
        if name == "pigpio":
            from gpiozero.pins.pigpio import PiGPIOFactory

            return PiGPIOFactory()
        from gpiozero.pins.native import NativeFactory

        return NativeFactory()
    except Exception as e:  # ImportError, or the library's own "not on a Pi" errors
        raise LightUnavailable(
            f"lights.gpio.pin_factory: {name!r} cannot be used here ({type(e).__name__}: {e})"
        ) from None


class LightOutput:
    """One switched output (laser, strobe): ``on()``, ``off()``, ``is_lit``, ``close()``."""

    backend: ClassVar[str] = "base"

    def __init__(self, name: str, cfg: LightOutputConfig, on_time_s: float):
        self.name = name
        self.cfg = cfg
        self.on_time_s = cfg.on_time_s or on_time_s
        self.triggers = frozenset(cfg.triggers)
        self.is_lit = False

    @classmethod
    def all_from_config(cls, cfg: LightsConfig) -> list[LightOutput]:
        """Every enabled output of ``cfg`` on this backend, sharing what they share (pin factory, bus)."""
        raise NotImplementedError

    def open(self) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def _switch(self, lit: bool) -> None:
        raise NotImplementedError

    def on(self) -> None:
        self._switch(True)
        self.is_lit = True

    def off(self) -> None:
        self._switch(False)
        self.is_lit = False

    def close(self) -> None:
        pass


class GpioLightOutput(LightOutput):
    """A relay on a GPIO pin (gpiozero ``OutputDevice``)."""

    backend = "gpio"

    def __init__(self, name: str, cfg: LightOutputConfig, on_time_s: float, pin_factory: Any = None):
        super().__init__(name, cfg, on_time_s)
        self.pin_factory = pin_factory
        self.device: Any = None

    @classmethod
    def all_from_config(cls, cfg: LightsConfig) -> list[LightOutput]:
        factory = make_pin_factory(cfg.gpio.pin_factory)
        return [cls(n, o, cfg.on_time_s, factory) for n, o in cfg.outputs.items() if o.enabled]

    def open(self) -> None:
        try:
            from gpiozero import OutputDevice
        except ImportError as e:
            raise LightUnavailable(f"lights.outputs.{self.name}.pin: gpiozero not installed ({e})") from None
        with warnings.catch_warnings(record=True) as fallbacks:  # gpiozero warns once per factory it tried
            warnings.simplefilter("always")
            try:
                self.device = OutputDevice(
                    self.cfg.pin,
                    active_high=self.cfg.active_high,
                    initial_value=False,
                    pin_factory=self.pin_factory,
                )
            except Exception as e:  # BadPinFactory (not on a Pi), PinInvalidPin, GPIOPinInUse, permissions
                tried = "; ".join(str(w.message) for w in fallbacks)
                raise LightUnavailable(
                    f"lights.outputs.{self.name}.pin: cannot drive {self.cfg.pin!r} ({type(e).__name__}: {e}{' ' + tried if tried else ''})"
                ) from None

    def describe(self) -> str:
        pin = getattr(self.device, "pin", None) if self.device is not None else None
        return f"gpio {pin or self.cfg.pin} active_{'high' if self.cfg.active_high else 'low'}"

    def _switch(self, lit: bool) -> None:
        if self.device is None:
            raise LightUnavailable(f"lights.outputs.{self.name}: not open")
        try:
            self.device.on() if lit else self.device.off()
        except Exception as e:
            raise LightUnavailable(f"lights.outputs.{self.name}.pin: {type(e).__name__}: {e}") from None

    def close(self) -> None:
        if self.device is not None:
            try:
                self.device.off()
                self.device.close()
            except Exception as e:  # closing a pin that is already gone: nothing left to switch off
                logger.debug("light_close_failed: %s", e)
            self.device = None


class SerialFrameBus:
    """The RS-485 line to a sound-and-light controller, shared by its outputs; writes whole frames."""

    def __init__(self, cfg: Rs485Config):
        self.cfg = cfg
        self._lock = threading.Lock()
        self._port: Any = None
        self.frames_written: list[tuple[float, bytes]] = []

    def open(self) -> None:
        import serial

        with self._lock:
            if self._port is not None:
                return
            c = self.cfg
            try:
                self._port = serial.serial_for_url(
                    c.port,
                    baudrate=c.baud,
                    parity=c.parity,
                    stopbits=c.stop_bits,
                    bytesize=c.byte_size,
                    timeout=0.1,
                    write_timeout=c.write_timeout_s,
                )
            except (serial.SerialException, ValueError, OSError) as e:
                raise LightUnavailable(f"lights.rs485.port: cannot open {c.port!r} ({e})") from None

    def write(self, frame: bytes) -> None:
        import serial

        if self._port is None:
            self.open()
        with self._lock:
            try:
                self._port.write(frame)
                self._port.flush()
                self.frames_written.append((time.monotonic(), frame))
            except (serial.SerialException, OSError) as e:
                try:
                    self._port.close()
                finally:
                    self._port = None  # re-opened on the next frame (adapter unplugged and back)
                raise LightUnavailable(
                    f"lights.rs485.port: write to {self.cfg.port!r} failed ({e})"
                ) from None

    def close(self) -> None:
        with self._lock:
            if self._port is not None:
                self._port.close()
                self._port = None


class SerialLightOutput(LightOutput):
    """An output of an RS-485 controller: writes ``on_frame`` / ``off_frame`` to the shared bus."""

    backend = "rs485"

    def __init__(self, name: str, cfg: LightOutputConfig, on_time_s: float, bus: SerialFrameBus):
        super().__init__(name, cfg, on_time_s)
        self.bus = bus
        assert cfg.on_frame is not None and cfg.off_frame is not None  # LightsConfig checks this
        self.on_frame = parse_hex_frame(cfg.on_frame)
        self.off_frame = parse_hex_frame(cfg.off_frame)

    @classmethod
    def all_from_config(cls, cfg: LightsConfig) -> list[LightOutput]:
        bus = SerialFrameBus(cfg.rs485)  # one line, several outputs
        return [cls(n, o, cfg.on_time_s, bus) for n, o in cfg.outputs.items() if o.enabled]

    def open(self) -> None:
        self.bus.open()

    def describe(self) -> str:
        c = self.bus.cfg
        return f"rs485 {c.port} {c.baud} {c.byte_size}{c.parity}{c.stop_bits:g} on={self.on_frame.hex(' ')} off={self.off_frame.hex(' ')}"

    def _switch(self, lit: bool) -> None:
        self.bus.write(self.on_frame if lit else self.off_frame)

    def close(self) -> None:
        self.bus.close()  # idempotent: the first output closes the shared line


#: ``lights.backend`` -> output class
LIGHT_OUTPUTS: dict[str, type[LightOutput]] = {
    GpioLightOutput.backend: GpioLightOutput,
    SerialLightOutput.backend: SerialLightOutput,
}


@dataclass(frozen=True)
class LightEvent:
    output: str
    lit: bool
    mono: float


class LightBoard:
    """The lights of a site (gpiozero's board habit): triggers switch outputs on, a worker switches them off."""

    def __init__(
        self,
        outputs: list[LightOutput],
        health: Health,
        monotonic: Callable[[], float] = time.monotonic,
        retry_s: float = 30.0,
    ):
        self.outputs = {o.name: o for o in outputs}
        self.health = health
        self.monotonic = monotonic
        self.retry_s = retry_s
        self._last_try: dict[str, float] = {}
        self.events: list[LightEvent] = []
        self._ready: dict[str, bool] = {}
        self._off_at: dict[str, float] = {}
        self._want_on: set[str] = set()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, cfg: LightsConfig, health: Health) -> LightBoard:
        if not cfg.enabled or cfg.backend == "none":
            for name in cfg.outputs:
                health.set(health_name(name), "off", "lights disabled" if not cfg.enabled else "backend none")
            return cls([], health)
        try:
            outputs = LIGHT_OUTPUTS[cfg.backend].all_from_config(cfg)
        except LightUnavailable as e:
            log(logger, "light_unavailable", logging.WARNING, error=str(e))
            for name, o in cfg.outputs.items():
                if o.enabled:
                    health.set(health_name(name), "down", str(e))
            return cls([], health)
        return cls(outputs, health, retry_s=cfg.retry_s)

    def open(self) -> None:
        for o in self.outputs.values():
            self._open_one(o)

    def _open_one(self, o: LightOutput) -> bool:
        self._last_try[o.name] = self.monotonic()
        try:
            o.open()
            o.off()
        except LightUnavailable as e:
            self._ready[o.name] = False
            log(logger, "light_unavailable", logging.WARNING, output=o.name, error=str(e))
            self.health.set(health_name(o.name), "down", str(e))
            return False
        self._ready[o.name] = True
        self.health.set(health_name(o.name), "up", o.describe(), on_time_s=o.on_time_s)
        log(logger, "light_ready", output=o.name, device=o.describe(), on_time_s=o.on_time_s)
        return True

    def is_ready(self, name: str) -> bool:
        """The output opened and its last switching worked."""
        return self._ready.get(name, False)

    def start(self) -> None:
        self.open()
        if self.outputs and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="lights", daemon=True)
            self._thread.start()

    def trigger(self, violation_type: str) -> list[str]:
        """Switch on (or keep on) every output this violation triggers; never blocks on the device."""
        names = [o.name for o in self.outputs.values() if violation_type in o.triggers]
        if names:
            now = self.monotonic()
            with self._cond:
                for n in names:
                    self._off_at[n] = max(self._off_at.get(n, 0.0), now + self.outputs[n].on_time_s)
                    self._want_on.add(n)
                self._cond.notify_all()
        return names

    def _set(self, o: LightOutput, lit: bool) -> None:
        if not self._ready.get(o.name):
            if self.monotonic() - self._last_try.get(
                o.name, float("-inf")
            ) < self.retry_s or not self._open_one(o):
                return
        try:
            o.on() if lit else o.off()
        except LightUnavailable as e:
            self._ready[o.name] = False
            log(logger, "light_unavailable", logging.WARNING, output=o.name, error=str(e))
            self.health.set(health_name(o.name), "down", str(e))
            return
        self.events.append(LightEvent(o.name, lit, self.monotonic()))
        log(logger, "light_on" if lit else "light_off", output=o.name)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._want_on:
                    now = self.monotonic()
                    due = [n for n, t in self._off_at.items() if t <= now]
                    if due:
                        break
                    self._cond.wait(min(self._off_at.values()) - now if self._off_at else None)
                if self._closed:
                    return
                turn_on, self._want_on = self._want_on, set()
                now = self.monotonic()
                turn_off = [n for n, t in self._off_at.items() if t <= now]
                for n in turn_off:
                    del self._off_at[n]
            for n in sorted(turn_on):
                if not self.outputs[n].is_lit:
                    self._set(self.outputs[n], True)
                    with self._cond:  # on for at least on_time_s from the moment it actually went on
                        self._off_at[n] = max(
                            self._off_at.get(n, 0.0), self.monotonic() + self.outputs[n].on_time_s
                        )
            for n in turn_off:
                self._set(self.outputs[n], False)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(5.0)
        for o in self.outputs.values():  # everything off first: outputs may share one line
            try:
                if o.is_lit:
                    o.off()
                    self.events.append(LightEvent(o.name, False, self.monotonic()))
            except LightUnavailable as e:
                log(logger, "light_unavailable", logging.WARNING, output=o.name, error=str(e))
        for o in self.outputs.values():
            o.close()
