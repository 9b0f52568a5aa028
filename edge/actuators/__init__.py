"""On-site persuasion: speaker (voice prompts), lights (laser, strobe) and the time switch.

The daemon uses :class:`Persuasion`::

    packs = PromptPacks.for_site(cfg.speaker, cfg.rules, cfg.base_dir)   # pack folders, messages needed
    p = Persuasion.from_config(cfg.speaker, cfg.lights, cfg.time_switch, cfg.device.timezone, packs, health)
    # ^ its own sections only; never raises for a missing device
    p.start()                                 # opens outputs, starts the speaker and lights workers
    p.on_violation("no_helmet", track_id, decided_mono)   # returns at once; queued
    p.latencies_s                             # decision -> prompt start, one per prompt played
    p.close()                                 # cuts a prompt in progress, lights off

One class per device, gpiozero style: :class:`Speaker` (an ``AudioOutput`` backend from
``speaker.backend``), :class:`LightOutput` (``GpioLightOutput`` / ``SerialLightOutput`` from
``lights.backend``) grouped by :class:`LightBoard`, and :class:`TimeSwitch`. Health components:
``speaker``, ``light.<output>`` (``light.laser``, ``light.strobe``) and ``time_switch``
(``active`` true/false). ``anqi-edge validate`` uses :func:`check_config`.
"""

from edge.actuators.check import check_config
from edge.actuators.lights import GpioLightOutput, LightBoard, LightOutput, SerialFrameBus, SerialLightOutput
from edge.actuators.persuasion import Persuasion
from edge.actuators.prompts import MESSAGES, PromptLibrary, PromptPacks
from edge.actuators.speaker import PlayedPrompt, Speaker
from edge.actuators.timeswitch import TimeSwitch

__all__ = [
    "MESSAGES",
    "GpioLightOutput",
    "LightBoard",
    "LightOutput",
    "Persuasion",
    "PlayedPrompt",
    "PromptLibrary",
    "PromptPacks",
    "SerialFrameBus",
    "SerialLightOutput",
    "Speaker",
    "TimeSwitch",
    "check_config",
]
