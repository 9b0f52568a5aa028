"""Central office configuration: one YAML, validated into typed sections at start.

Sections map to the central stages: ``database`` (storage), ``mqtt`` (consumer), ``ingest`` (how
the consumer batches event writes), ``tiers`` (table 1), ``dispositions`` (table 2), ``identity``
(gallery matching), ``api`` (data sharing), ``media`` (where verified evidence files go). Unknown
keys are errors; every problem names the file and the key path. Secrets (broker password, webhook
token, API token hashes' salt) come from environment variables or systemd credentials named in the
YAML, never from the YAML itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from anqi_contract.config import ConfigError, Section, format_validation_error, known_timezone, read_yaml_file

__all__ = [
    "ApiConfig",
    "ApiRole",
    "CentralConfig",
    "ConfigError",
    "DatabaseConfig",
    "DispositionsConfig",
    "IdentityConfig",
    "IngestConfig",
    "MqttConsumerConfig",
    "TierThresholds",
    "load_config",
    "parse_config",
    "read_secret",
]

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class DatabaseConfig(Section):
    url: str = Field(
        "sqlite:///anqi-central.db",
        description="SQLAlchemy URL. Default: an SQLite file (WAL) beside the config; production: "
        "postgresql+psycopg://user@host/db (password from password_env).",
    )
    password_env: str | None = Field(
        None, description="Environment variable holding the database password (never the password itself)."
    )
    url_env: str | None = Field(
        None,
        description="Environment variable or systemd credential (e.g. 'database-url') holding the whole URL; overrides url.",
    )
    echo: bool = Field(False, description="Log every SQL statement (debugging only).")
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL",
        description="SQLite only. FULL: every commit is on disk before the consumer acks its events (one WAL fsync "
        "per commit; the consumer commits once per batch). NORMAL: no fsync per commit; a process crash loses "
        "nothing, but the last acknowledged events can roll back on power loss.",
    )

    @field_validator("url")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        if not (v.startswith("sqlite") or v.startswith("postgresql")):
            raise ValueError(
                f"unsupported database URL scheme in {v.split(':', 1)[0]!r}: use sqlite:///FILE or postgresql+psycopg://..."
            )
        return v


class MqttConsumerConfig(Section):
    host: str = Field("127.0.0.1", description="Broker host the edge devices publish to.")
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password_env: str | None = Field(
        None, description="Environment variable / systemd credential with the broker password."
    )
    ca_file: Path | None = Field(None, description="CA bundle; set to use TLS.")
    cert_file: Path | None = None
    key_file: Path | None = None
    client_id: str = Field(
        "anqi-central-1",
        pattern=ID_PATTERN,
        description="Unique per consumer instance (several may share the load).",
    )
    share_group: str = Field(
        "anqi-central", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="MQTT 5 shared-subscription group."
    )
    topic_prefix: str = Field("anqi/v1", pattern=r"^[^#+\s]+$")
    keepalive_s: int = Field(
        10,
        ge=2,
        le=3600,
        description="MQTT keep-alive. The broker drops a consumer whose host died or whose network broke after "
        "1.5x this without a packet, and then hands its share of the group to the others (a killed process closes "
        "its socket and is dropped at once).",
    )
    session_expiry_s: int = Field(
        0,
        ge=0,
        le=7 * 24 * 3600,
        description="How long the broker keeps this consumer's session after it disconnected. 0 (default): the "
        "session, its place in the shared subscription and its media subscription end with the connection, so "
        "the other consumers of the group get every later event at once and no clip is queued for an absent "
        "consumer; events in flight to a dead consumer are re-sent by the edge (no ack within "
        "relay.outbox.ack_timeout_s). A longer expiry makes the broker queue every second event for the absent "
        "consumer (mosquitto keeps offline members in the share rotation) until it returns.",
    )
    qos: Literal[1, 2] = 1


class IngestConfig(Section):
    """How the consumer writes events: the MQTT thread decodes and queues them, one writer thread stores
    what is queued in one transaction (one commit, one WAL sync) and acks each event after that commit."""

    batch_max: int = Field(
        256,
        ge=1,
        le=10_000,
        description="Most events stored in one transaction (1: one transaction per event).",
    )
    batch_wait_ms: float = Field(
        20,
        ge=0,
        le=1000,
        description="After the first queued event the writer waits up to this long for more to fill the batch (0: it stores "
        "what is queued at once). Under load the queue fills while a batch is written; when traffic is light this is "
        "added to an event's ack latency.",
    )
    queue_max: int = Field(
        4096,
        ge=1,
        le=1_000_000,
        description="Decoded events waiting for the writer; when full, the MQTT network thread waits (back-pressure to the broker).",
    )


class TierThresholds(Section):
    """Table 1 of the standard; the defaults are the standard's values.

    * occasional: ``occasional_min_7d..occasional_max_7d`` (1–3) in 7 days, or
      ``occasional_min_30d..occasional_max_30d`` (3–7) in 30 days;
    * frequent: more than ``occasional_max_7d`` (3) in 7 days or more than ``occasional_max_30d``
      (7) in 30 days. The table's upper bounds (7 in 7 days, 30 in 30 days) leave a gap above
      them; counts above them stay frequent;
    * the gap below (1–2 in 30 days, none in 7 days) is occasional when
      ``sparse_30d_is_occasional`` (default true);
    * repeat: a violation after an ``education`` or ``fine`` disposition, both within
      ``repeat_window_days`` (365) ending at the evaluation time.
    """

    short_window_days: int = Field(7, ge=1, le=365)
    long_window_days: int = Field(30, ge=1, le=365)
    repeat_window_days: int = Field(365, ge=1, le=3650)
    occasional_min_7d: int = Field(1, ge=1)
    occasional_max_7d: int = Field(3, ge=1)
    occasional_min_30d: int = Field(3, ge=1)
    occasional_max_30d: int = Field(7, ge=1)
    sparse_30d_is_occasional: bool = Field(
        True, description="1-2 in 30 days with none in 7 days counts as occasional (fills the table's gap)."
    )
    repeat_dispositions: list[Literal["education", "fine"]] = Field(
        default_factory=lambda: list[Literal["education", "fine"]](["education", "fine"]),
        min_length=1,
        description="Recorded dispositions after which a new violation makes the person 'repeat'. An SMS reminder never does.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> TierThresholds:
        if self.occasional_min_7d > self.occasional_max_7d:
            raise ValueError("occasional_min_7d must not exceed occasional_max_7d")
        if self.occasional_min_30d > self.occasional_max_30d:
            raise ValueError("occasional_min_30d must not exceed occasional_max_30d")
        if not self.short_window_days < self.long_window_days <= self.repeat_window_days:
            raise ValueError(
                "windows must satisfy short_window_days < long_window_days <= repeat_window_days"
            )
        return self


class DispositionsConfig(Section):
    webhook_url: str | None = Field(None, description="Optional: every task is also POSTed here as JSON.")
    webhook_token_env: str | None = Field(
        None, description="Environment variable with a bearer token for the webhook."
    )
    webhook_timeout_s: float = Field(5.0, gt=0, le=60)
    case_study_url: str = Field(
        "https://example.invalid/anqi/case-study",
        description="Public case-study page (no personal data), sent as case_study_url with the case-study task.",
    )
    rider_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s]+$",
        description="Address riders' phones reach the rider services at (e.g. https://anqi.example.cn); the SMS, "
        "voice and case-study tasks of the occasional tier carry 'link': {rider_url}/rider/{one-time token}. "
        "Default: api.public_url, else http://api.host:api.port.",
    )
    rider_link_days: int = Field(
        30,
        ge=1,
        le=365,
        description="Days a rider link opens the rider's page (spent once the quiz is passed).",
    )
    daily_reevaluate_at: str = Field(
        "02:30",
        pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
        description="Local time of the daily re-evaluation (HH:MM).",
    )

    @field_validator("webhook_url")
    @classmethod
    def _http_only(cls, v: str | None) -> str | None:
        if v is not None and not v.lower().startswith(("http://", "https://")):
            raise ValueError("webhook_url must be an http:// or https:// URL")
        return v


class IdentityConfig(Section):
    match_threshold: float = Field(
        0.40,
        gt=-1,
        lt=1,
        description="Cosine similarity from which an event face matches a gallery person. SFace on lfw-dev: FAR 1e-3 "
        "per comparison at 0.394 (`anqi-central lfw-eval`); OpenCV publishes 0.363. Raise it for large galleries "
        "(a 1:N search compares against every person).",
    )
    cluster_threshold: float = Field(
        0.45,
        gt=-1,
        lt=1,
        description="Similarity for joining a provisional unknown-person file (stricter than matching).",
    )
    min_quality: float = Field(
        0.0, ge=0, le=1, description="Event faces below this capture quality are not matched."
    )
    review_margin: float = Field(
        0.05,
        ge=0,
        le=1,
        description="A gallery match is stored flagged for review (reviews table, 'anqi-central review list') when "
        "another enrolled person's best cosine is within this of the matched person's: two persons too alike to tell "
        "apart (the same photo enrolled twice ties at 0).",
    )
    embedding_model: str = Field(
        "sface", description="Embeddings from any other model are not compared (logged and left unmatched)."
    )


class ApiRole(Section):
    """What a caller with this role sees."""

    rows: Literal["all", "own_community"] = Field(
        "own_community", description="all rows, or only residents of the token's community."
    )
    id_number: Literal["full", "masked"] = Field("masked")
    name: Literal["full", "masked"] = Field("full")
    evidence: Literal["none", "frames", "full"] = Field(
        "none",
        description="Evidence files: none; frames (face photo and the shown frames, bystanders blurred); "
        "full (also the original clip, bystanders not blurred).",
    )


def _default_roles() -> dict[str, ApiRole]:
    return {
        "admin": ApiRole(rows="all", id_number="full", name="full", evidence="full"),
        "police": ApiRole(rows="all", id_number="full", name="full", evidence="full"),
        "analyst": ApiRole(rows="all", id_number="masked", name="masked", evidence="none"),
        "community": ApiRole(rows="own_community", id_number="masked", name="full", evidence="frames"),
    }


class ApiConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    roles: dict[str, ApiRole] = Field(
        default_factory=_default_roles, description="Role name -> rows and fields it may see."
    )
    max_rows: int = Field(5000, ge=1, le=1_000_000)
    max_body_kb: int = Field(
        64,
        ge=1,
        le=65536,
        description="Request bodies (SOAP envelopes) larger than this are refused with 413 before anything parses "
        "them (checked on Content-Length and while the body streams in).",
    )
    max_bad_tokens: int = Field(
        10,
        ge=1,
        le=10_000,
        description="A client address that presents this many missing or wrong tokens within lockout_s is refused "
        "(429) for lockout_s, whatever token it then presents.",
    )
    lockout_s: float = Field(300, gt=0, le=86400)
    rate_per_minute: int = Field(
        120,
        ge=0,
        le=1_000_000,
        description="Requests one token may make per minute (a bucket of this size refilled evenly; 0: no limit); "
        "more are refused with 429 and Retry-After, audited.",
    )
    token_days: int = Field(
        90,
        ge=1,
        le=3650,
        description="Validity of a new API token in days (token create --expires-days overrides it); an expired token "
        "is refused (401, audited) until it is rotated (token rotate).",
    )
    tls_cert_file: Path | None = Field(
        None,
        description="PEM certificate (chain) for HTTPS; with tls_key_file the API serves TLS itself. Without them it "
        "speaks plain HTTP and must stay on loopback behind a TLS reverse proxy (tokens and ID numbers travel in it).",
    )
    tls_key_file: Path | None = Field(None, description="PEM private key of tls_cert_file.")

    @model_validator(mode="after")
    def _tls_pair(self) -> ApiConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        return self

    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s]+$",
        description="The service's address as callers reach it (e.g. behind the TLS proxy), written into the WSDL. "
        "Default: http://host:port. Never taken from the request's Host header.",
    )


class WebConfig(Section):
    content_dir: Path | None = Field(
        None,
        description="Folder of the rider services' content: case.md (case study text), quiz.yaml (question bank "
        "with pass_mark) and lesson videos (*.mp4 / *.webm, served with Range requests). A file missing there is "
        "taken from the package's own content (central_sync/web/content).",
    )


class MediaConfig(Section):
    dir: Path = Field(
        Path("anqi-central-media"), description="Verified evidence files; relative to the config file."
    )
    max_event_media_mb: float = Field(
        64, gt=0, description="Bigger evidence sets are refused (corrupt or hostile sender)."
    )
    assembly_timeout_s: float = Field(
        3600,
        gt=0,
        description="Incomplete chunked media older than this are dropped from memory (the edge resends until acked).",
    )


class SealingConfig(Section):
    """Central's private keys that open evidence sealed on the devices (anqi_contract.sealed). Never in this YAML:
    each key id is looked up as the systemd credential ``seal-key-<id>``, the environment variable
    ``ANQI_SEAL_KEY_<ID>`` (upper case, '-' and '.' as '_') or the file ``<key_dir>/<id>.key`` (mode 600)."""

    key_ids: list[str] = Field(
        default_factory=list,
        description="Ids of the keys central holds (the current one and, during a rotation, the previous/next).",
    )
    key_dir: Path | None = Field(None, description="Folder of <id>.key files (base64 X25519 private keys).")
    require_sealed: bool = Field(
        False,
        description="Reject events whose media or embedding arrive unsealed (set once every device seals).",
    )

    @field_validator("key_ids")
    @classmethod
    def _ids(cls, v: list[str]) -> list[str]:
        import re

        bad = [k for k in v if not re.match(ID_PATTERN, k)]
        if bad:
            raise ValueError(f"key ids must match {ID_PATTERN}: {bad}")
        return v


class RetentionConfig(Section):
    """How long each kind of data is kept (days; 0 keeps it for ever). Enforced daily at
    ``dispositions.daily_reevaluate_at`` (and by ``anqi-central retention``), each removal logged."""

    events_days: int = Field(
        730,
        ge=0,
        description="Violation events (with their evidence, embeddings and links); at least tiers.repeat_window_days.",
    )
    media_days: int = Field(
        180, ge=0, description="Evidence files (face, frames, clip); the event record stays."
    )
    unknown_person_days: int = Field(
        90,
        ge=0,
        description="Provisional unknown-person files without a violation for this long (and their embeddings).",
    )
    audit_days: int = Field(1095, ge=0, description="Audit log entries (who saw / erased what).")


class RegisteredDevice(Section):
    """One appliance central accepts events from: its id (its broker username), its site and point."""

    device_id: str = Field(..., pattern=ID_PATTERN)
    site_id: str = Field(..., pattern=ID_PATTERN)
    point_id: str | None = Field(None, pattern=ID_PATTERN, description="None: any point of the site.")


class CentralConfig(Section):
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    mqtt: MqttConsumerConfig = Field(default_factory=MqttConsumerConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    tiers: TierThresholds = Field(default_factory=TierThresholds)
    dispositions: DispositionsConfig = Field(default_factory=DispositionsConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    media: MediaConfig = Field(default_factory=MediaConfig)
    sealing: SealingConfig = Field(default_factory=SealingConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    devices: list[RegisteredDevice] = Field(
        default_factory=list,
        description="Device registry: events (and media) are accepted only from these devices, under their own "
        "site and point; `anqi-central broker-acl` makes the broker's per-device ACL from it. Empty: any device "
        "(development only; the consumer warns at start).",
    )
    timezone: str = Field("Asia/Shanghai", description="IANA zone for dates in reports and statistics.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        return known_timezone(v)

    @field_validator("devices")
    @classmethod
    def _unique_devices(cls, v: list[RegisteredDevice]) -> list[RegisteredDevice]:
        seen = [d.device_id for d in v]
        dup = sorted({d for d in seen if seen.count(d) > 1})
        if dup:
            raise ValueError(f"device ids registered twice: {dup}")
        return v

    @model_validator(mode="after")
    def _retention_covers_the_tiers(self) -> CentralConfig:
        days = self.retention.events_days
        if days and days < self.tiers.repeat_window_days:
            raise ValueError(
                f"retention.events_days ({days}) is shorter than tiers.repeat_window_days "
                f"({self.tiers.repeat_window_days}): the tiers would count violations already deleted"
            )
        return self

    def registered(self, device_id: str) -> RegisteredDevice | None:
        return next((d for d in self.devices if d.device_id == device_id), None)

    def resolve(self, p: Path | str) -> Path:
        p = Path(p).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    def database_url(self) -> str:
        """The URL with relative SQLite paths resolved against the config's folder and the password filled in."""
        url = self.database.url
        if self.database.url_env:
            url = read_secret(self.database.url_env, "database.url_env")
            if not (url.startswith("sqlite") or url.startswith("postgresql")):
                raise ConfigError(
                    "<environment>", ["database.url_env: the URL must start with sqlite or postgresql"]
                )
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:" and not url.startswith("sqlite:////"):
            url = "sqlite:///" + str(self.resolve(url[len("sqlite:///") :]))
        if self.database.password_env:
            from sqlalchemy.engine import make_url

            u = make_url(url).set(password=read_secret(self.database.password_env, "database.password_env"))
            url = u.render_as_string(hide_password=False)
        return url


def load_keyring(cfg: CentralConfig) -> Any:
    """The :class:`anqi_contract.sealed.KeyRing` of ``sealing.key_ids``; :class:`ConfigError` naming a key not found."""
    from anqi_contract.sealed import KeyRing, SealError, parse_private_key

    keys = {}
    problems = []
    for kid in cfg.sealing.key_ids:
        env = "ANQI_SEAL_KEY_" + "".join(c.upper() if c.isalnum() else "_" for c in kid)
        cred = os.environ.get("CREDENTIALS_DIRECTORY")
        text = None
        where = ""
        if cred and (Path(cred) / f"seal-key-{kid}").is_file():
            where = f"systemd credential seal-key-{kid}"
            text = (Path(cred) / f"seal-key-{kid}").read_text(encoding="ascii", errors="replace")
        elif os.environ.get(env):
            where, text = f"environment variable {env}", os.environ[env]
        elif cfg.sealing.key_dir is not None and (cfg.resolve(cfg.sealing.key_dir) / f"{kid}.key").is_file():
            f = cfg.resolve(cfg.sealing.key_dir) / f"{kid}.key"
            if f.stat().st_mode & 0o077:
                problems.append(f"sealing.key_dir: {f} is readable by group/others (chmod 600)")
                continue
            where, text = str(f), f.read_text(encoding="ascii", errors="replace")
        if text is None:
            problems.append(
                f"sealing.key_ids: key {kid!r} not found (systemd credential seal-key-{kid}, ${env} or <key_dir>/{kid}.key)"
            )
            continue
        try:
            keys[kid] = parse_private_key(text, f"sealing key {kid!r} ({where})")
        except SealError as e:
            problems.append(f"sealing.key_ids: {e}")
    if problems:
        raise ConfigError("<sealing keys>", problems)
    return KeyRing(keys)


def read_secret(name: str, key: str) -> str:
    """A secret from the environment or a systemd credential file (``$CREDENTIALS_DIRECTORY/name``)."""
    value = os.environ.get(name)
    if value:
        return value
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / name).is_file():
        return (Path(cred_dir) / name).read_text(encoding="utf-8").strip()
    raise ConfigError(
        "<environment>", [f"{key}: environment variable or systemd credential {name!r} is not set"]
    )


def _format(err: ValidationError) -> list[str]:
    """The shared formatter (one ``key.path: message`` per problem), pointing at the central example."""
    return format_validation_error(err, example="config/central.example.yaml")


def parse_config(
    data: dict[str, Any] | None, source: str = "<config>", base_dir: Path | None = None
) -> CentralConfig:
    data = dict(data or {})
    if "base_dir" in data:
        raise ConfigError(
            source, ["base_dir: unknown key (check the spelling; see config/central.example.yaml)"]
        )
    try:
        return CentralConfig(**data, base_dir=base_dir or Path.cwd())
    except ValidationError as err:
        raise ConfigError(source, _format(err)) from None


def load_config(path: Path | str) -> CentralConfig:
    path = Path(path)
    return parse_config(read_yaml_file(path), path.name, path.resolve().parent)
