"""``GET /docs``: the OpenAPI description as one self-contained HTML page, rendered on the server from the app's own
``/openapi.json`` - no script, no style sheet, font or image from anywhere (FastAPI's Swagger UI loads its scripts
from a CDN and stays blank on an isolated police network). Served with ``Content-Security-Policy: default-src
'none'`` so the browser fetches nothing else either."""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

_STYLE = (
    "body{font:14px/1.45 sans-serif;max-width:72em;margin:1.5em auto;padding:0 1em;color:#222}"
    "h2{border-top:1px solid #ccc;padding-top:.8em}code,pre{background:#f4f4f4;padding:0 .2em}"
    "table{border-collapse:collapse;margin:.4em 0 1em}td,th{border:1px solid #ccc;padding:.2em .5em;"
    "text-align:left;vertical-align:top}.m{font-weight:bold;color:#05a}"
)


def _schema_name(s: dict[str, Any]) -> str:
    if "$ref" in s:
        return str(s["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in s:
        return " | ".join(_schema_name(x) for x in s["anyOf"])
    if s.get("type") == "array":
        return f"list[{_schema_name(s.get('items', {}))}]"
    out = str(s.get("type", "object"))
    if "enum" in s:
        out += " (" + ", ".join(map(str, s["enum"])) + ")"
    if "maximum" in s or "minimum" in s:
        out += f" [{s.get('minimum', '')}..{s.get('maximum', '')}]"
    return out


def render(spec: dict[str, Any]) -> str:
    info = spec.get("info", {})
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(info.get('title', 'API'))}</title>",
        f"<style>{_STYLE}</style></head><body><h1>{escape(info.get('title', ''))} {escape(info.get('version', ''))}</h1>",
        f"<p>{escape(info.get('description', ''))}</p>",
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>. Auth: <code>Authorization: Bearer "
        "&lt;token&gt;</code> (never in the query string).</p>",
    ]
    for path, ops in sorted(spec.get("paths", {}).items()):
        for method, op in ops.items():
            parts.append(
                f"<h2><span class='m'>{escape(method.upper())}</span> <code>{escape(path)}</code></h2>"
                f"<p>{escape(op.get('summary', ''))}</p><pre>{escape(op.get('description', ''))}</pre>"
            )
            params = op.get("parameters", [])
            if params:
                parts.append(
                    "<table><tr><th>parameter</th><th>in</th><th>type</th><th>required</th><th>meaning</th></tr>"
                )
                for p in params:
                    parts.append(
                        f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p.get('in', ''))}</td>"
                        f"<td>{escape(_schema_name(p.get('schema', {})))}</td><td>{'yes' if p.get('required') else ''}</td>"
                        f"<td>{escape(p.get('description', ''))}</td></tr>"
                    )
                parts.append("</table>")
            for code, resp in sorted(op.get("responses", {}).items()):
                schema = resp.get("content", {}).get("application/json", {}).get("schema")
                parts.append(
                    f"<p><b>{escape(str(code))}</b> {escape(resp.get('description', ''))}"
                    + (f": <code>{escape(_schema_name(schema))}</code>" if schema else "")
                    + "</p>"
                )
                headers = resp.get("headers", {})
                if headers:
                    parts.append("<table><tr><th>response header</th><th>meaning</th></tr>")
                    for h, d in headers.items():
                        parts.append(
                            f"<tr><td><code>{escape(h)}</code></td><td>{escape(d.get('description', ''))}</td></tr>"
                        )
                    parts.append("</table>")
    schemas = spec.get("components", {}).get("schemas", {})
    if schemas:
        parts.append("<h2>Schemas</h2>")
        for name, s in sorted(schemas.items()):
            props = s.get("properties", {})
            if not props:
                continue
            parts.append(
                f"<h3 id='{escape(name)}'>{escape(name)}</h3><table><tr><th>field</th><th>type</th></tr>"
            )
            for f, fs in props.items():
                parts.append(f"<tr><td><code>{escape(f)}</code></td><td>{escape(_schema_name(fs))}</td></tr>")
            parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)


def add_docs_route(app: FastAPI) -> None:
    page: list[str] = []

    @app.get("/docs", include_in_schema=False, response_class=HTMLResponse)
    def docs() -> HTMLResponse:
        """The API reference, offline."""
        if not page:
            page.append(render(app.openapi()))
        return HTMLResponse(
            page[0], headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}
        )
