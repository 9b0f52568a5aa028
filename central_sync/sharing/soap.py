"""The same queries over SOAP 1.1 (document/literal), as the standard's WebService interface.

``GET /soap?wsdl`` serves the WSDL; ``POST /soap`` takes an envelope whose body is
``GetViolations`` or ``GetPersons`` (children ``From``, ``To``, optional ``Point``, ``Community``,
``Tier``, ``Type`` (violation type), ``Limit`` (page size), ``Cursor`` (the ``NextCursor`` of the page before)) in namespace :data:`NS`. The token goes in the SOAP header
(``<a:Token>``) or in ``Authorization: Bearer``. Errors are SOAP faults (HTTP 500;
``soap:Client`` for the caller's mistakes, ``soap:Server`` otherwise). Untrusted XML is parsed
with defusedxml (no entity expansion, no external DTDs).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

# ElementTree only builds and serialises the responses; requests are parsed with defusedxml (below)
from xml.etree.ElementTree import Element, SubElement, tostring  # nosec B405

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

NS = "urn:anqi:sharing:v1"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"

VIOLATION_FIELDS = (
    "event_id",
    "time",
    "date",
    "point_id",
    "violation_type",
    "person_id",
    "name",
    "id_number",
    "community",
    "tier",
    "count",
)
PERSON_FIELDS = (
    "person_id",
    "name",
    "id_number",
    "community",
    "employer",
    "tier",
    "count",
    "points",
    "first_date",
    "last_date",
    "types",
)
PARAMS = ("From", "To", "Point", "Community", "Tier", "Type", "Limit", "Cursor")


class SoapFault(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def parse_request(body: bytes) -> tuple[str, dict[str, str], str | None]:
    """-> (operation, params, token from the SOAP header)."""
    try:
        root = SafeET.fromstring(body, forbid_dtd=True)
    except (SafeET.ParseError, DefusedXmlException) as e:
        raise SoapFault("Client", f"not a well-formed SOAP envelope: {e}") from None
    if root.tag != f"{{{SOAP_NS}}}Envelope":
        raise SoapFault("Client", "root element must be a SOAP 1.1 Envelope")
    token = None
    header = root.find(f"{{{SOAP_NS}}}Header")
    if header is not None:
        t = header.find(f"{{{NS}}}Token")
        token = (t.text or "").strip() if t is not None else None
    b = root.find(f"{{{SOAP_NS}}}Body")
    if b is None or len(b) == 0:
        raise SoapFault("Client", "SOAP Body is empty")
    op = b[0]
    if not op.tag.startswith(f"{{{NS}}}"):
        raise SoapFault("Client", f"operation element must be in namespace {NS}")
    name = op.tag[len(NS) + 2 :]
    params: dict[str, str] = {}
    for child in op:
        local = child.tag.split("}", 1)[-1]
        if local not in PARAMS:
            raise SoapFault("Client", f"{name}: unknown parameter {local!r} (expected {', '.join(PARAMS)})")
        params[local] = (child.text or "").strip()
    return name, params, token


def _envelope() -> tuple[Element, Element]:
    env = Element(f"{{{SOAP_NS}}}Envelope")
    body = SubElement(env, f"{{{SOAP_NS}}}Body")
    return env, body


def _serialise(env: Element) -> bytes:
    from xml.etree.ElementTree import register_namespace  # nosec B405

    register_namespace("soap", SOAP_NS)
    register_namespace("a", NS)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + tostring(
        env, encoding="utf-8", xml_declaration=False
    )


def response(operation: str, page: Any) -> bytes:
    """The response element: ``Total`` (rows of the whole query), ``NextCursor`` (absent on the last page; pass it as
    ``Cursor`` for the next page), then one element per row."""
    rows = page.rows
    env, body = _envelope()
    resp = SubElement(body, f"{{{NS}}}{operation}Response")
    SubElement(resp, f"{{{NS}}}Total").text = str(page.total)
    if page.next_cursor:
        SubElement(resp, f"{{{NS}}}NextCursor").text = page.next_cursor
    item_name, fields = (
        ("Violation", VIOLATION_FIELDS) if operation == "GetViolations" else ("Person", PERSON_FIELDS)
    )
    for r in rows:
        d = asdict(r)
        item = SubElement(resp, f"{{{NS}}}{item_name}")
        for k in fields:
            v = d[k]
            if v is None:
                continue
            el = SubElement(item, f"{{{NS}}}{k}")
            el.text = ";".join(v) if isinstance(v, list) else str(v)
    return _serialise(env)


def fault(code: str, message: str) -> bytes:
    env, body = _envelope()
    f = SubElement(body, f"{{{SOAP_NS}}}Fault")
    SubElement(f, "faultcode").text = f"soap:{code}"
    SubElement(f, "faultstring").text = message
    return _serialise(env)


def wsdl(location: str) -> str:
    def params() -> str:
        return "".join(
            f'<xs:element name="{p}" type="xs:string" minOccurs="{0 if p not in ("From", "To") else 1}"/>'
            for p in PARAMS
        )

    def fields(names: tuple[str, ...]) -> str:
        return "".join(
            f'<xs:element name="{n}" type="xs:{"int" if n == "count" else "string"}" minOccurs="0"/>'
            for n in names
        )

    ops = ("GetViolations", "GetPersons")
    return f"""<?xml version="1.0" encoding="utf-8"?>
<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
  xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:a="{NS}" targetNamespace="{NS}" name="AnQiSharing">
  <types>
    <xs:schema targetNamespace="{NS}" elementFormDefault="qualified">
      <xs:element name="Token" type="xs:string"/>
      <xs:complexType name="Violation"><xs:sequence>{fields(VIOLATION_FIELDS)}</xs:sequence></xs:complexType>
      <xs:complexType name="Person"><xs:sequence>{fields(PERSON_FIELDS)}</xs:sequence></xs:complexType>
      <xs:element name="GetViolations"><xs:complexType><xs:sequence>{params()}</xs:sequence></xs:complexType></xs:element>
      <xs:element name="GetPersons"><xs:complexType><xs:sequence>{params()}</xs:sequence></xs:complexType></xs:element>
      <xs:element name="GetViolationsResponse"><xs:complexType><xs:sequence>
        <xs:element name="Total" type="xs:int"/><xs:element name="NextCursor" type="xs:string" minOccurs="0"/>
        <xs:element name="Violation" type="a:Violation" minOccurs="0" maxOccurs="unbounded"/></xs:sequence></xs:complexType></xs:element>
      <xs:element name="GetPersonsResponse"><xs:complexType><xs:sequence>
        <xs:element name="Total" type="xs:int"/><xs:element name="NextCursor" type="xs:string" minOccurs="0"/>
        <xs:element name="Person" type="a:Person" minOccurs="0" maxOccurs="unbounded"/></xs:sequence></xs:complexType></xs:element>
    </xs:schema>
  </types>
  <message name="TokenHeader"><part name="Token" element="a:Token"/></message>
  {"".join(f'<message name="{o}In"><part name="parameters" element="a:{o}"/></message><message name="{o}Out"><part name="parameters" element="a:{o}Response"/></message>' for o in ops)}
  <portType name="SharingPort">
    {"".join(f'<operation name="{o}"><input message="a:{o}In"/><output message="a:{o}Out"/></operation>' for o in ops)}
  </portType>
  <binding name="SharingBinding" type="a:SharingPort">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    {"".join(f'<operation name="{o}"><soap:operation soapAction="{NS}#{o}"/><input><soap:header message="a:TokenHeader" part="Token" use="literal"/><soap:body use="literal"/></input><output><soap:body use="literal"/></output></operation>' for o in ops)}
  </binding>
  <service name="AnQiSharingService">
    <port name="SharingPort" binding="a:SharingBinding"><soap:address location="{location}"/></port>
  </service>
</definitions>
"""
