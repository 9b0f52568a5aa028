"""The device registry (central config ``devices``): which device may publish on which site and point."""

from __future__ import annotations

from collections.abc import Sequence

from anqi_contract import protocol as P
from central_sync.config import RegisteredDevice


class DeviceRegistry:
    """The ``devices`` of the central config; empty: every device is accepted."""

    def __init__(self, devices: Sequence[RegisteredDevice]):
        self._by_id: dict[str, RegisteredDevice] = {}
        for d in devices:  # the first entry of an id counts (as CentralConfig.registered)
            self._by_id.setdefault(d.device_id, d)

    def __bool__(self) -> bool:
        return bool(self._by_id)

    def problem(self, topic: P.Topic, point_id: str | None = None) -> str | None:
        """Why the registry refuses a message on ``topic`` (None: accepted, or no registry configured)."""
        if not self._by_id:
            return None
        d = self._by_id.get(topic.device)
        if d is None:
            return f"device {topic.device} is not registered (central config: devices)"
        if d.site_id != topic.site:
            return f"device {topic.device} is registered at site {d.site_id}, not {topic.site}"
        if point_id is not None and d.point_id is not None and d.point_id != point_id:
            return f"device {topic.device} is registered at point {d.point_id}, not {point_id}"
        return None
