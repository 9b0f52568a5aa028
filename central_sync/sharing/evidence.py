"""``GET /api/v1/violations/{event_id}/media/{name}``: one evidence file of a violation, by role.

``api.roles.<role>.evidence`` decides: ``none`` (no evidence), ``frames`` (the face photo and the shown frames,
context.jpg and violation.jpg, in which the device blurred every bystander's face), ``full`` (also the original
clip, where bystanders are not blurred: only roles allowed to see evidence). An own-community role sees the
evidence of its own residents only. Every request, refused ones included, is audited. The file is the one the
media table names and must lie inside ``media.dir`` (no path from the request reaches the file system).
"""

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from sqlalchemy import select

from central_sync.config import CentralConfig
from central_sync.sharing.access import Caller, audit
from central_sync.storage.models import Event, Media, Person
from central_sync.storage.store import CentralStore

#: media kinds each evidence level may fetch
LEVELS = {"none": set(), "frames": {"face", "context"}, "full": {"face", "context", "clip"}}


def add_evidence_routes(
    app: FastAPI,
    cfg: CentralConfig,
    store: CentralStore,
    caller: Callable[..., Caller],
    client_of: Callable[[Request], str | None],
) -> None:
    media_root = cfg.resolve(cfg.media.dir).resolve()

    @app.get("/api/v1/violations/{event_id}/media/{name}", tags=["sharing"], response_class=FileResponse)
    def evidence(
        request: Request,
        who: Annotated[Caller, Depends(caller)],
        event_id: uuid.UUID,
        name: Annotated[str, PathParam(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")],
    ) -> Any:
        """One evidence file of a violation (face.jpg, context.jpg, violation.jpg; clip.mp4 for full evidence roles)."""
        params = {"event_id": str(event_id), "name": name}
        client = client_of(request)
        allowed = LEVELS[who.role.evidence]
        with store.session() as s:
            row = s.execute(
                select(Media.kind, Media.path, Media.content_type, Person.community, Event.person_id)
                .join(Event, Event.event_id == Media.event_id)
                .outerjoin(Person, Person.person_id == Event.person_id)
                .where(Media.event_id == str(event_id), Media.name == name)
            ).first()
        if row is None:
            audit(store, who, "evidence_not_found", params, 0, client, status=404)
            raise HTTPException(404, "no such evidence file")
        kind, path, ctype, community, person = row
        if kind not in allowed or not who.sees_community(community):
            audit(store, who, "evidence_denied", params, 0, client, status=403)
            raise HTTPException(403, f"role {who.role_name!r} may not see {kind} evidence of this violation")
        p = Path(path).resolve()
        if media_root not in p.parents or not p.is_file():
            audit(store, who, "evidence_missing", params, 0, client, status=404)
            raise HTTPException(404, "evidence file not available")
        audit(store, who, "evidence", params, 1, client, persons=[person], status=200)
        return FileResponse(p, media_type=ctype, filename=name)
