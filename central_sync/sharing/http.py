"""HTTP data-sharing API (FastAPI, OpenAPI docs at ``/docs``) and the SOAP endpoint at ``/soap``.

``GET /api/v1/violations`` and ``GET /api/v1/persons`` with ``from``, ``to`` (dates ``YYYY-MM-DD``
in ``timezone``, ``to`` inclusive; or ISO times with offset), optional ``point``, ``community``,
``tier``, ``type`` (violation type), ``limit``. Auth: ``Authorization: Bearer <token>``. A community token sees only its
own residents (asking for another community is 403); ID numbers are masked unless the role
allows them. Every query, refused ones included, goes to the audit log.
"""

import hashlib
import math
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from anqi_contract.event import ViolationType
from central_sync.config import CentralConfig
from central_sync.sharing import soap
from central_sync.sharing.access import AccessDenied, Caller, audit, audited_in_request, authenticate
from central_sync.sharing.limits import AuditGaps, BodyLimit, Lockout, RateLimit, clean_text
from central_sync.sharing.queries import (
    Page,
    PersonRow,
    QueryFilter,
    SharingQueries,
    ViolationRow,
    parse_range,
)
from central_sync.storage.store import CentralStore
from central_sync.tiers import OffenderTier

bearer = HTTPBearer(auto_error=False, description="API token created with `anqi-central token create`.")


def create_app(cfg: CentralConfig, store: CentralStore) -> FastAPI:
    app = FastAPI(
        title="AnQi data sharing",
        version="1.0",
        description="Violations and persons of the e-bike safe-riding supervision (standard 7.2.2, 7.4). "
        "Rows and fields depend on the token's role; every query is audited. "
        "The same queries over SOAP 1.1: WSDL at /soap?wsdl.",
        # FastAPI's interactive pages load their scripts from a CDN, which an isolated police network cannot reach:
        # off; /docs is rendered on the server instead (sharing/docs.py), /openapi.json stays
        docs_url=None,
        redoc_url=None,
    )
    # AuditGaps inside BodyLimit (added first: Starlette puts the last one added outermost)
    app.add_middleware(AuditGaps, store=store)
    app.add_middleware(BodyLimit, max_bytes=cfg.api.max_body_kb * 1024, store=store)
    queries = SharingQueries(cfg, store)
    lockout = Lockout(cfg.api.max_bad_tokens, cfg.api.lockout_s)
    rate = RateLimit(cfg.api.rate_per_minute)

    def over_rate(who: Caller, path: str, client: str | None) -> int:
        """0, or the whole seconds the token must wait (its requests per minute are spent; audited)."""
        wait = rate.take(who.name)
        if not wait:
            return 0
        retry = max(1, math.ceil(wait))
        audit(store, who, f"rate_limited:{path}", {"retry_after_s": retry}, 0, client, status=429)
        return retry

    def client_of(request: Request) -> str | None:
        return request.client.host if request.client else None

    def caller(
        request: Request, cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> Caller:
        if lockout.locked(client_of(request)):
            audit(
                store,
                None,
                f"locked:{request.url.path}",
                {"reason": "too many bad tokens"},
                0,
                client_of(request),
                status=429,
            )
            raise HTTPException(429, "too many bad tokens from this address; try later")
        try:
            who = authenticate(store, cfg, cred.credentials if cred else None)
        except AccessDenied as e:
            lockout.failed(client_of(request))
            audit(
                store,
                None,
                f"denied:{request.url.path}",
                {"reason": str(e)},
                0,
                client_of(request),
                status=401,
            )
            raise HTTPException(401, str(e), headers={"WWW-Authenticate": "Bearer"}) from None
        retry = over_rate(who, request.url.path, client_of(request))
        if retry:
            raise HTTPException(
                429,
                f"token {who.name!r}: more than {cfg.api.rate_per_minute} requests per minute; retry in {retry} s",
                headers={"Retry-After": str(retry)},
            )
        return who

    def make_filter(
        start: str,
        end: str,
        point: str | None,
        community: str | None,
        tier: OffenderTier | None,
        limit: int,
        vtype: ViolationType | None = None,
        cursor: str | None = None,
    ) -> QueryFilter:
        try:
            s, e = parse_range(start, end, cfg.timezone)
            point, community = clean_text(point, "point"), clean_text(community, "community")
            cursor = clean_text(cursor, "cursor", 512)
        except ValueError as err:
            raise HTTPException(422, str(err)) from None
        return QueryFilter(s, e, point, community, tier, limit, vtype, cursor)

    def paged(request: Request, response: Response, page: Page) -> list[Any]:
        """The rows of ``page``; the total and the next page's cursor in headers (the body stays a plain list)."""
        response.headers["X-Total-Count"] = str(page.total)
        response.headers["X-Page-Limit"] = str(page.page_size)
        if page.next_cursor:
            response.headers["X-Next-Cursor"] = page.next_cursor
            nxt = request.url.include_query_params(cursor=page.next_cursor)
            response.headers["Link"] = (
                f'<{nxt.path}?{nxt.query}>; rel="next"'  # relative: never the Host header
            )
        return page.rows

    def run_query(request: Request, response: Response, who: Caller, f: QueryFilter, what: str) -> list[Any]:
        try:
            page = (queries.violations if what == "violations" else queries.persons)(
                who, f, client_of(request)
            )
        except AccessDenied as e:
            audit(store, who, f"{what}_denied", f.as_params(), 0, client_of(request), status=403)
            raise HTTPException(403, str(e)) from None
        except ValueError as e:  # a cursor that is not one of this query
            raise HTTPException(422, str(e)) from None
        return paged(request, response, page)

    TypeParam = Annotated[
        ViolationType | None,
        Query(
            alias="type", description="Only this violation type (no_helmet, wrong_way, red_light, passenger)."
        ),
    ]

    From = Annotated[
        str, Query(alias="from", description="First day (YYYY-MM-DD, local) or ISO time with offset.")
    ]
    To = Annotated[
        str,
        Query(
            alias="to", description="Last day, inclusive (YYYY-MM-DD) or ISO time with offset (exclusive)."
        ),
    ]
    Limit = Annotated[
        int,
        Query(
            ge=1,
            le=100_000,
            description="Page size, at most api.max_rows (the page size used is in X-Page-Limit).",
        ),
    ]
    Cursor = Annotated[
        str | None,
        Query(description="The X-Next-Cursor of the page before (the same query); absent: the first page."),
    ]
    paging: dict[int | str, dict[str, Any]] = {
        200: {
            "headers": {
                "X-Total-Count": {
                    "description": "Rows of the whole query (all pages)",
                    "schema": {"type": "integer"},
                },
                "X-Next-Cursor": {
                    "description": "cursor of the next page; absent on the last",
                    "schema": {"type": "string"},
                },
                "X-Page-Limit": {"description": "page size used", "schema": {"type": "integer"}},
                "Link": {
                    "description": 'rel="next": the next page (relative URL)',
                    "schema": {"type": "string"},
                },
            }
        }
    }

    from central_sync.sharing.evidence import add_evidence_routes

    add_evidence_routes(app, cfg, store, caller, client_of)

    @app.get(
        "/api/v1/violations",
        response_model=list[ViolationRow],
        tags=["sharing"],
        responses=paging,
    )
    def violations(
        request: Request,
        response: Response,
        who: Annotated[Caller, Depends(caller)],
        start: From,
        end: To,
        point: str | None = None,
        community: str | None = None,
        tier: OffenderTier | None = None,
        vtype: TypeParam = None,
        limit: Limit = 1000,
        cursor: Cursor = None,
    ) -> list[Any]:
        """Violations in the range, in time order: time, date, point, type, person, name, ID number, community, tier,
        count. Paged: X-Total-Count, X-Next-Cursor (pass it as cursor for the next page), Link rel=next."""
        f = make_filter(start, end, point, community, tier, limit, vtype, cursor)
        return run_query(request, response, who, f, "violations")

    @app.get(
        "/api/v1/persons",
        response_model=list[PersonRow],
        tags=["sharing"],
        responses=paging,
    )
    def persons(
        request: Request,
        response: Response,
        who: Annotated[Caller, Depends(caller)],
        start: From,
        end: To,
        point: str | None = None,
        community: str | None = None,
        tier: OffenderTier | None = None,
        vtype: TypeParam = None,
        limit: Limit = 1000,
        cursor: Cursor = None,
    ) -> list[Any]:
        """Persons with violations in the range (most violations first), with their count, points, tier, community
        and counts per type. Paged as /api/v1/violations."""
        f = make_filter(start, end, point, community, tier, limit, vtype, cursor)
        return run_query(request, response, who, f, "persons")

    @app.get("/soap", tags=["soap"], response_class=Response)
    def soap_wsdl(request: Request) -> Response:
        """The WSDL of the SOAP interface (``/soap?wsdl``)."""
        base = cfg.api.public_url or f"http://{cfg.api.host}:{cfg.api.port}"  # never the caller's Host header
        return Response(soap.wsdl(base.rstrip("/") + "/soap"), media_type="text/xml; charset=utf-8")

    @app.post("/soap", tags=["soap"], response_class=Response)
    async def soap_call(request: Request) -> Response:
        """SOAP 1.1 endpoint: GetViolations, GetPersons (token in the SOAP header or as Bearer)."""
        body = await request.body()
        who: Caller | None = None
        op = "-"
        try:
            op, params, token = soap.parse_request(body)
            if not token:
                auth = request.headers.get("authorization", "")
                token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
            if lockout.locked(client_of(request)):
                audit(
                    store,
                    None,
                    "locked:/soap",
                    {"reason": "too many bad tokens"},
                    0,
                    client_of(request),
                    status=429,
                )
                return Response(
                    soap.fault("Client", "too many bad tokens from this address; try later"),
                    status_code=429,
                    media_type="text/xml; charset=utf-8",
                )
            try:
                who = authenticate(store, cfg, token)
            except AccessDenied as e:
                lockout.failed(client_of(request))
                audit(store, None, "denied:/soap", {"reason": str(e)}, 0, client_of(request), status=500)
                raise soap.SoapFault("Client", f"authentication failed: {e}") from None
            retry = over_rate(who, "/soap", client_of(request))
            if retry:
                return Response(
                    soap.fault(
                        "Client",
                        f"more than {cfg.api.rate_per_minute} requests per minute; retry in {retry} s",
                    ),
                    status_code=429,
                    headers={"Retry-After": str(retry)},
                    media_type="text/xml; charset=utf-8",
                )
            if op not in ("GetViolations", "GetPersons"):
                raise soap.SoapFault("Client", f"unknown operation {op!r} (GetViolations, GetPersons)")
            if "From" not in params or "To" not in params:
                raise soap.SoapFault("Client", f"{op}: From and To are required")
            try:
                start, end = parse_range(params["From"], params["To"], cfg.timezone)
                tier = OffenderTier(params["Tier"]) if params.get("Tier") else None
                vtype = ViolationType(params["Type"]) if params.get("Type") else None
                limit = int(params.get("Limit") or 1000)
                point = clean_text(params.get("Point") or None, "Point")
                community = clean_text(params.get("Community") or None, "Community")
                cursor = clean_text(params.get("Cursor") or None, "Cursor", 512)
            except ValueError as err:
                raise soap.SoapFault("Client", f"{op}: {err}") from None
            f = QueryFilter(
                start,
                end,
                point,
                community,
                tier,
                max(1, min(limit, 100_000)),
                vtype,
                cursor,
            )
            try:
                page = (
                    queries.violations(who, f, client_of(request))
                    if op == "GetViolations"
                    else queries.persons(who, f, client_of(request))
                )
            except AccessDenied as err:
                audit(store, who, f"{op}_denied", f.as_params(), 0, client_of(request), status=500)
                raise soap.SoapFault("Client", str(err)) from None
            except ValueError as err:  # a cursor that is not one of this query
                raise soap.SoapFault("Client", f"{op}: {err}") from None
            return Response(soap.response(op, page), media_type="text/xml; charset=utf-8")
        except soap.SoapFault as f:
            if (
                not audited_in_request()
            ):  # a refused payload: what was wrong with it, never the payload itself
                audit(
                    store,
                    who,
                    f"soap_fault:{op}"[:64],
                    {
                        "fault": f.code,
                        "message": f.message[:300],
                        "bytes": len(body),
                        "sha256": hashlib.sha256(body).hexdigest(),
                    },
                    0,
                    client_of(request),
                    status=500,
                )
            return Response(
                soap.fault(f.code, f.message), status_code=500, media_type="text/xml; charset=utf-8"
            )

    from central_sync.sharing.docs import add_docs_route

    add_docs_route(app)  # /docs: the reference rendered on the server, nothing loaded from elsewhere

    from central_sync.web import mount_web

    mount_web(app, cfg, store)
    return app
