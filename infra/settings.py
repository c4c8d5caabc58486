"""The one settings object, read from the environment (and an optional `.env` file).

Everything configurable lives here; no other module reads `os.environ`. Leaving
`DATABASE_URL`, `REDIS_URL` and `SMTP_URL` unset selects the embedded defaults: a real
PostgreSQL and a real Redis started from their Python wheels, and an outbox folder of
`.eml` files, all under `DATA_DIR`.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Literal["development", "production", "test"] = Field(
        "development", description="`development` serves GraphiQL; `production` does not; `test` is set by the tests."
    )
    data_dir: Path = Field(
        Path("var"), description="Folder of the embedded PostgreSQL and Redis, the generated secret key and (by "
        "default) the stored files."
    )
    database_url: str | None = Field(
        None, description="postgres://user:pass@host:port/db; unset = an embedded PostgreSQL in DATA_DIR/postgres."
    )
    redis_url: str | None = Field(
        None, description="redis://host:port/db or unix:///path.sock; unset = an embedded Redis in DATA_DIR/redis."
    )
    smtp_url: str | None = Field(
        None, description="smtp://user:pass@host:port (smtps:// for TLS); unset = e-mails are written as .eml "
        "files to STORAGE_DIR/outbox."
    )
    smtp_from: str = Field(
        "Invoicing <no-reply@invoicing.local>", description="Sender of the e-mails (an organization may set its "
        "display name and Reply-To; the address stays this one's)."
    )
    storage_dir: Path | None = Field(
        None, description="Where PDFs, exports and cost deliveries are kept when STORAGE_URL is unset; default DATA_DIR/storage."
    )
    storage_url: str = Field(
        "", description="Where files are kept when not in STORAGE_DIR: s3://bucket/prefix (AWS and S3-compatible "
        "stores), az://container/prefix or gs://bucket/prefix; unset = the local folder. Required once web processes "
        "and workers run on machines without a shared disk.",
    )
    storage_endpoint_url: str = Field(
        "", description="The store's endpoint when not the cloud's own: MinIO, Ceph, R2 or OCI for s3://, another "
        "Azure cloud or an emulator for az://, a gateway or an emulator for gs://.",
    )
    storage_region: str = Field("", description="The s3:// bucket's region; unset = AWS_REGION, else us-east-1.")
    storage_access_key_id: str = Field(
        "", description="The s3:// store's access key id; unset = the process's AWS credentials (environment, "
        "profile, instance or task role).",
    )
    storage_secret_access_key: SecretStr = Field(
        SecretStr(""), description="The secret of STORAGE_ACCESS_KEY_ID.",
    )
    storage_azure_account: str = Field("", description="The az:// container's storage account.")
    storage_azure_account_key: SecretStr = Field(
        SecretStr(""), description="The storage account's key; or STORAGE_AZURE_SAS_TOKEN; neither = the "
        "environment's Azure credentials (AZURE_* variables, a managed identity).",
    )
    storage_azure_sas_token: SecretStr = Field(
        SecretStr(""), description="A SAS token of the az:// container allowing read, write, delete and list.",
    )
    storage_gcs_service_account_key: SecretStr = Field(
        SecretStr(""), description="The gs:// bucket's service account key (its JSON); unset = "
        "GOOGLE_SERVICE_ACCOUNT_PATH or the machine's own credentials.",
    )
    storage_timeout_seconds: float = Field(
        60, gt=0, description="Longest wait for one answer of the STORAGE_URL store.",
    )
    chromium_path: str | None = Field(
        None, description="The browser that prints invoices to PDF; default Playwright's browser, else "
        "/usr/bin/chromium (Debian's)."
    )
    chromium_sandbox: bool = Field(
        True, description="Run Chromium inside its own sandbox (namespaces and seccomp). Off (`--no-sandbox`) only "
        "where the kernel allows no user namespaces.",
    )
    chromium_user: str = Field(
        "nobody", description="When the worker runs as root: the user Chromium runs as (its sandbox cannot start "
        "as root), through setpriv, with a profile of its own in /tmp; it can read nothing of DATA_DIR.",
    )
    secret_key: str | None = Field(
        None, description="Signs download links; default a random key kept in DATA_DIR/secret_key. Set it when "
        "several machines serve the same data."
    )
    host: str = Field("127.0.0.1", description="Where `invoicing serve` listens; PUBLIC_URL and ALLOWED_ORIGINS "
                      "follow unless set.")
    port: int = Field(8000, description="The port `invoicing serve` listens on.")
    public_url: str = Field(
        "", description="The address browsers use: base of signed links and of the printed GraphiQL and portal "
        "addresses; default http://HOST:PORT."
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to open WebSockets and call the API (CORS); "
        "default PUBLIC_URL and http://localhost:PORT.",
    )
    session_token_hours: int = Field(12, gt=0, description="Lifetime of a login session token.")
    api_token_days: int = Field(365, gt=0, description="Default lifetime of an API token (`create-token`).")
    invitation_days: int = Field(7, gt=0, description="How long an invitation link works.")
    invitation_url: str = Field(
        "", description="The console's page that accepts an invitation; the e-mailed link is it "
        "followed by `#token=<token>`. Default PUBLIC_URL/accept-invitation.",
    )
    login_free_attempts_per_account: int = Field(
        5, gt=0, description="Sign-in attempts on one e-mail before each further one must wait (back-off)."
    )
    login_free_attempts_per_address: int = Field(
        20, gt=0, description="Failed sign-in attempts from one client address before back-off."
    )
    login_attempt_window_seconds: float = Field(
        900, gt=0, description="Quiet time after which sign-in attempts are no longer counted."
    )
    login_backoff_base_seconds: float = Field(
        1, gt=0, description="First wait once the free sign-in attempts are spent; it doubles with each attempt."
    )
    login_backoff_max_seconds: float = Field(
        900, gt=0, description="Longest wait between two sign-in attempts (back-off, never a permanent lock)."
    )
    max_page_size: int = Field(100, gt=0, description="Cap on `first`/`last` of connections.")
    max_upload_bytes: int = Field(
        5 * 1024**3, gt=0, description="Cap on a cost delivery upload (all its parts), streamed to storage; a "
        "multipart body past it plus 1 MiB is answered 413."
    )
    max_extracted_bytes: int = Field(
        20 * 1024**3, gt=0, description="Most bytes a cost delivery's zips may unpack to, all of them together "
        "(counted as they are written, whatever the zip declares).",
    )
    max_archive_entries: int = Field(
        10_000, gt=0, description="Most files a cost delivery's zips may hold, all of them together."
    )
    max_compression_ratio: int = Field(
        100, gt=0, description="Most bytes a zip entry may unpack to per byte it takes in the zip (past its first MiB).",
    )
    max_delivery_rows: int = Field(
        50_000_000, gt=0, description="Most cost rows one delivery may hold; a larger one is refused whole.",
    )
    max_stored_delivery_bytes: int = Field(
        50 * 1024**3, gt=0, description="Most bytes of uploaded cost deliveries an organization keeps stored "
        "(until they are purged, DELIVERY_RETENTION_DAYS after their upload).",
    )
    delivery_retention_days: int = Field(
        35, gt=0, description="Days an uploaded cost delivery's files are kept; the worker purges older ones "
        "hourly (and `invoicing purge-deliveries` at once). Its import's record and rows stay.",
    )
    cost_row_max_bytes: int = Field(
        1 << 20, gt=0, le=4 << 20,
        description="Largest row of a cost file (a CSV line or record, the values of a Parquet row); a delivery "
        "holding a longer one is refused, naming it. At most 4 MiB: CSV is read 8 MiB at a time.",
    )
    cost_parquet_row_group_max_bytes: int = Field(
        1 << 30, gt=0,
        description="Largest uncompressed size of the FOCUS columns of one Parquet row group; a part with a larger "
        "row group is refused. Row groups are read in batches of about 8 MiB of decoded values whatever their "
        "size, so this bounds only a row group whose values are gathered in a few rows.",
    )
    max_request_bytes: int = Field(
        1024**2, gt=0, description="Largest request body other than an upload (GraphQL JSON); a larger one is "
        "answered 413 before it is read whole.",
    )
    max_webhook_bytes: int = Field(
        256 * 1024, gt=0, description="Largest body `/xero/webhook` reads (Xero's events are a few KiB); larger is 413, before "
        "its signature is computed.",
    )
    cost_source_sync_hours: float = Field(
        6, gt=0, description="Hours between two scheduled syncs of a cost source, unless its organization sets its "
        "own (`costData.syncEveryHours`); the worker looks every 15 minutes.",
    )
    cost_source_retry_minutes: float = Field(
        15, gt=0, description="Wait before syncing again a cost source whose sync failed (doubling with each failure "
        "in a row, at most COST_SOURCE_SYNC_HOURS) or found a delivery still being written.",
    )
    cost_source_quiet_minutes: float = Field(
        30, ge=0, description="A billing month's files without a manifest (Cloud Storage exports) are taken once none "
        "of them changed for this long; newer, they may still be being written and wait for the next sync.",
    )
    cost_source_private_endpoints: bool = Field(
        False, description="Allow a cost source's custom endpoint (S3-compatible, Azure, Cloud Storage) on a "
        "loopback, private or link-local address (an on-premises store, or the tests' emulator); refused by default.",
    )
    aws_s3_endpoint_url: str = Field(
        "", description="Where AWS_S3 cost sources are reached; unset = AWS itself (set for a VPC endpoint or an emulator).",
    )
    aws_sts_endpoint_url: str = Field(
        "", description="Where an AWS_S3 cost source's role is assumed; unset = AWS STS itself (set for an emulator).",
    )
    cost_source_timeout_seconds: float = Field(
        60, gt=0, description="Longest wait for one answer of a cost source's object store.",
    )
    webhook_allow_http: bool = Field(
        False, description="Allow webhook endpoints at plain http:// URLs; https:// only by default.",
    )
    webhook_private_addresses: bool = Field(
        False, description="Allow webhook endpoints whose host is, or resolves to, a loopback, private, link-local "
        "or metadata address (an endpoint inside the operator's network, or the tests' receiver); refused by default.",
    )
    webhook_timeout_seconds: float = Field(
        5, gt=0, le=30, description="Longest wait for an endpoint to answer one delivery (connecting included).",
    )
    webhook_response_bytes: int = Field(
        4096, gt=0, le=65536, description="Most bytes of an endpoint's answer read (the first 512 are kept in the log).",
    )
    webhook_disable_after_hours: float = Field(
        48, gt=0, description="An endpoint whose every attempt has failed for this long is disabled and its "
        "organization's owners are e-mailed.",
    )
    webhook_lanes: int = Field(
        2, gt=0, le=16, description="Worker jobs delivering webhooks at once (each takes one of the worker's job slots).",
    )
    webhook_concurrency: int = Field(
        16, gt=0, le=256, description="Deliveries in flight at once in each lane (at most 4 of them to one endpoint).",
    )
    webhook_busy_max_wait_seconds: float = Field(
        60, ge=0, description="While the worker runs other jobs (generation, e-mail, imports) its webhook lanes post "
        "nothing, for this long at most: once it has run them this long without a break, the lanes post "
        "WEBHOOK_CONCURRENCY_BUSY at once each until it runs none (0: at once, never waiting).",
    )
    webhook_concurrency_busy: int = Field(
        1, gt=0, le=256, description="Deliveries in flight at once in each lane once the worker has run other jobs for "
        "WEBHOOK_BUSY_MAX_WAIT_SECONDS without a break: webhooks late, never starved, and still leaving it most of its time.",
    )
    subscriptions_per_connection: int = Field(
        20, gt=0, description="Cap on operations running at once on one WebSocket."
    )
    subscription_queue_size: int = Field(
        200, gt=0, description="Events a subscriber may leave unread before it is ended (FELL_BEHIND)."
    )
    subscription_recheck_seconds: float = Field(
        60, gt=0, description="How often live subscriptions' tokens are checked again."
    )
    subscription_fanout: bool = Field(
        True,
        description="Execute and encode a live event once for all the subscribers of a web process with the same "
        "operation, variables and scope class (off: once per subscriber, as bench/subscriptions.py --compare measures).",
    )
    ws_max_message_bytes: int = Field(
        64 * 1024, gt=0, description="Largest WebSocket message a client may send."
    )
    pdf_batch_size: int = Field(
        8, ge=1,
        description="Most invoices of one organization a worker prints in one Chromium print job when several "
        "wait (each still gets a PDF of its own); 1 prints each alone.",
    )
    ws_per_message_deflate: bool = Field(
        False,
        description="Compress WebSocket messages (permessage-deflate) when a client offers it. Off: live events "
        "are a few hundred bytes, and compressing every frame for every subscriber costs more CPU (and a "
        "compressor's memory per socket) than the bytes it saves. (uvicorn run directly: "
        "`--ws infra.live_sockets:LiveSocket --ws-per-message-deflate false`, as `invoicing serve` runs it.)",
    )
    max_query_tokens: int = Field(
        5_000, gt=0, description="Most tokens a GraphQL document may have (names, punctuation, values). This and "
        "the three limits below are checked before validation: past one, `QUERY_TOO_COMPLEX`."
    )
    max_query_depth: int = Field(12, gt=0, description="Most levels of nested selections in a query.")
    max_query_aliases: int = Field(30, gt=0, description="Most aliases in a document, fragments spread out.")
    max_query_cost: int = Field(
        25_000, gt=0,
        description="Most objects a query may answer: each object field counts once, times the "
        "`first`/`last` of the connections above it.",
    )
    job_lease_seconds: float = Field(
        15, gt=0, description="How long a running job stays claimed once its worker stops renewing "
        "the claim (a killed worker's jobs run again on another worker after this).",
    )
    sweep_every_seconds: int = Field(
        30, gt=0, le=60, description="How often the worker re-derives work that was never queued or was lost.",
    )
    stuck_after_seconds: float = Field(
        60, gt=0, description="How long a state that implies a job (GENERATING, a QUEUED delivery or "
        "import) may wait before the sweeper queues its job again.",
    )
    worker_max_jobs: int = Field(
        12, gt=0, description="Jobs one worker runs at once (a month close's generations, e-mails, imports); "
        "more workers, rather than more jobs per worker, spread a month's work over machines.",
    )
    worker_retry_max_seconds: float = Field(
        30, gt=0, description="Longest pause before the worker reconnects after Redis or PostgreSQL failed.",
    )
    link_ttl_seconds: int = Field(
        300, gt=0, description="Lifetime of a signed download link (PDF, CSV, export)."
    )
    xero_client_id: str = Field(
        "", description="The Xero app's client id (developer.xero.com); unset = Xero off (`connectXero` answers "
        "XERO_NOT_CONNECTED)."
    )
    xero_client_secret: str = Field(
        "", description="The Xero app's client secret (a web app); empty for a PKCE-only app."
    )
    xero_redirect_uri: str = Field(
        "", description="Where Xero sends the browser back; default PUBLIC_URL/xero/callback (register it with Xero)."
    )
    xero_scopes: str = Field(
        "offline_access accounting.transactions accounting.contacts accounting.settings.read",
        description="OAuth 2.0 scopes asked of Xero (offline_access: a refresh token).",
    )
    xero_authorize_url: str = Field(
        "https://login.xero.com/identity/connect/authorize",
        description="Xero's authorization endpoint (this and the four endpoints below: the tests point them at a "
        "local server).",
    )
    xero_token_url: str = Field("https://identity.xero.com/connect/token", description="Xero's token endpoint.")
    xero_revocation_url: str = Field(
        "https://identity.xero.com/connect/revocation", description="Xero's token revocation endpoint."
    )
    xero_identity_api_url: str = Field(
        "https://api.xero.com", description="Base of Xero's connections endpoint (`/connections`)."
    )
    xero_accounting_api_url: str = Field(
        "https://api.xero.com/api.xro/2.0", description="Base of Xero's Accounting API."
    )
    xero_token_key: str | None = Field(
        None, description="Fernet key encrypting Xero tokens at rest; required in production when Xero is on. "
        "Unset elsewhere: derived from SECRET_KEY when it is set, else from the key in SEALING_KEY_FILE.",
    )
    sealing_key_file: Path | None = Field(
        None, description="Without SECRET_KEY, where the key that secrets at rest (Xero's tokens, cost sources' "
        "credentials) are derived from is generated and kept, never in DATA_DIR (a copy of the data must not carry "
        "the key to its secrets); default ~/.config/invoicing/sealing-key.",
    )
    xero_return_url: str = Field(
        "", description="The console page that finishes a Xero connection (`completeXeroConnection`); unset = "
        "/xero/callback finishes it itself.",
    )
    xero_webhook_key: str = Field(
        "", description="The Xero app's webhook signing key; unset = /xero/webhook answers 404.",
    )
    xero_authorization_minutes: int = Field(
        10, gt=0, description="How long an owner has to finish connecting Xero once started.",
    )
    xero_push_tries: int = Field(6, gt=0, description="Attempts of a push that Xero or the network refused for a while.")
    xero_retry_seconds: float = Field(
        30, gt=0, description="First wait before pushing again; it doubles with each attempt.",
    )

    log_format: Literal["text", "json"] = Field(
        "text", description="`json`: one JSON object per log line (time, level, message, request and job ids) for a "
        "log pipeline; `text`: lines for a person.",
    )
    metrics_token: str | None = Field(
        None, description="Bearer token a Prometheus scrape of /metrics presents; unset = /metrics answers loopback "
        "clients only.",
    )
    worker_metrics_port: int | None = Field(
        None, ge=0, le=65535, description="Port on HOST where a worker serves its own /metrics (jobs, PDFs, e-mails, "
        "imports, syncs); unset = not served. One port per worker on a host.",
    )
    worker_stop_seconds: int = Field(
        25, gt=0, description="On SIGTERM, how long a worker lets its running jobs finish; what is still running "
        "then is handed back to the queue for another worker.",
    )
    web_stop_seconds: int = Field(
        15, gt=0, description="On SIGTERM, how long a web process lets its requests finish (WebSockets are closed "
        "at once with 1012, service restart, which clients reconnect on).",
    )

    @model_validator(mode="after")
    def _derive_addresses(self) -> Settings:
        # Changing PORT alone keeps links, GraphiQL's address and CORS consistent.
        if not self.public_url:
            self.public_url = f"http://{self.host}:{self.port}"
        if not self.invitation_url:
            self.invitation_url = f"{self.public_url.rstrip('/')}/accept-invitation"
        if not self.allowed_origins:
            self.allowed_origins = list(dict.fromkeys([self.public_url, f"http://localhost:{self.port}"]))
        return self

    @model_validator(mode="after")
    def _storage_url_known(self) -> Settings:
        if self.storage_url and not self.storage_url.startswith(("s3://", "az://", "gs://")):
            raise ValueError("STORAGE_URL is s3://bucket/prefix, az://container/prefix or gs://bucket/prefix.")
        if self.storage_url.startswith("az://") and not self.storage_azure_account:
            raise ValueError("STORAGE_URL names an Azure container: set STORAGE_AZURE_ACCOUNT, its storage account.")
        return self

    @model_validator(mode="after")
    def _xero_token_key_in_production(self) -> Settings:
        if self.environment == "production" and self.xero_client_id and not self.xero_token_key:
            raise ValueError(
                "XERO_TOKEN_KEY must be set in production when Xero is on (XERO_CLIENT_ID): a Fernet key, e.g. from "
                "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`, kept "
                "apart from the database and its backups."
            )
        if not self.secret_key and self.sealing_key_path.is_relative_to(self.data_dir.resolve()):
            raise ValueError("SEALING_KEY_FILE must lie outside DATA_DIR: a copy of the data would carry its key.")
        return self

    @property
    def storage_path(self) -> Path:
        return self.storage_dir or self.data_dir / "storage"

    def storage_secrets(self) -> tuple[str, str, str, str, str]:
        """STORAGE_URL's credentials, as its client takes them."""
        return (
            self.storage_access_key_id, self.storage_secret_access_key.get_secret_value(),
            self.storage_azure_account_key.get_secret_value(), self.storage_azure_sas_token.get_secret_value(),
            self.storage_gcs_service_account_key.get_secret_value(),
        )

    @property
    def outbox_path(self) -> Path:
        return self.storage_path / "outbox"

    @property
    def signing_key(self) -> bytes:
        if self.secret_key:
            return self.secret_key.encode()
        key_file = self.data_dir / "secret_key"
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.write_text(secrets.token_urlsafe(48))
            key_file.chmod(0o600)
        return key_file.read_text().strip().encode()

    @property
    def sealing_key_path(self) -> Path:
        """Where a generated sealing key is kept (outside DATA_DIR: checked at start)."""
        return (self.sealing_key_file or Path.home() / ".config" / "invoicing" / "sealing-key").expanduser().resolve()

    @property
    def xero_callback_url(self) -> str:
        return self.xero_redirect_uri or f"{self.public_url.rstrip('/')}/xero/callback"

    def child_environment(self) -> dict[str, str]:
        """The environment for a child process (the worker beside the web server), with
        the resolved server URLs so that it joins the same embedded servers."""
        env = dict(os.environ)
        for name in ("database_url", "redis_url"):
            if value := getattr(self, name):
                env[name.upper()] = value
        return env


@lru_cache
def get_settings() -> Settings:
    return Settings()
