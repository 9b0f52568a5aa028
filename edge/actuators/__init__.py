"""On-site persuasion: speaker (voice prompts), lights (laser, strobe) and the time switch.

The daemon uses :class:`Persuasion`; ``anqi-edge validate`` uses :func:`check_config`.
"""

from edge.actuators.check import check_config
from edge.actuators.lights import GpioLightOutput, LightBoard, LightOutput, SerialFrameBus, SerialLightOutput
from edge.actuators.persuasion import Persuasion
from edge.actuators.prompts import MESSAGES, PromptLibrary
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
    "SerialFrameBus",
    "SerialLightOutput",
    "Speaker",
    "TimeSwitch",
    "check_config",
]
