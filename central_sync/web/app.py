"""Routes of the web faces, mounted on the data-sharing FastAPI app (``anqi-central serve``): the device listener
(edge status + heartbeat) while the service runs, then the routes of each face (:mod:`central_sync.web.routes`:
cockpit, console, rider services)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from central_sync.config import CentralConfig
from central_sync.storage.store import CentralStore
from central_sync.web import auth
from central_sync.web import rider as rider_content
from central_sync.web.devices import DeviceListener
from central_sync.web.routes import cockpit as cockpit_routes
from central_sync.web.routes import console as console_routes
from central_sync.web.routes import rider as rider_routes
from central_sync.web.routes.common import WebFaces

__all__ = ["mount_web"]


def mount_web(
    app: FastAPI,
    cfg: CentralConfig,
    store: CentralStore,
    content_dir: Path | None = None,
    listen_devices: bool = True,
) -> None:
    auth.ensure_tables(store)
    if listen_devices:  # the edge's status / heartbeat topics, while the service runs
        listener: list[DeviceListener] = []
        app.router.on_startup.append(lambda: listener.append(DeviceListener(cfg, store).start()))

        def stop_listener() -> None:
            for x in listener:
                x.stop()

        app.router.on_shutdown.append(stop_listener)
    folder = content_dir or (cfg.resolve(cfg.web.content_dir) if cfg.web.content_dir else None)
    content = rider_content.Content(folder)
    content.check()
    web = WebFaces(cfg, store, content)
    for face in (cockpit_routes, console_routes, rider_routes):
        face.mount(app, web)
