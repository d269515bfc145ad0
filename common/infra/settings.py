"""Every setting of the platform, read from the environment once and validated at start-up.

Names follow the product documentation (DB_HOST, REDIS_HOST, QWEN_API_KEY, ...). A single
DATABASE_URL / REDIS_URL overrides the individual parts. Web, worker and tools all derive their
configuration from this one object.
"""

from __future__ import annotations

import functools
from decimal import Decimal
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from common.accounts.models import Role
from common.infra import embedded_run
from common.upstream.chat_capabilities import ChatCapabilities, default_capabilities
from common.upstream.wanx_models import (
    ImageEditModel,
    ImageModelLimits,
    TaskModel,
    VideoModel,
    default_image_edit_models,
    default_image_models,
    default_video_models,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

# Values that appear in examples and tutorials; a deployment using one of them is not secret.
# Every secret value in .env.example and deploy/k8s/secret.example.yaml is here (a unit test
# reads both files to keep it so). Compared stripped and lower-cased.
PLACEHOLDER_SECRETS = frozenset(
    {
        "change-me",
        "changeme",
        "change-me-too",
        "change-me-as-well",
        "change-me-rabbit",
        "replace_me",
        "replace-me",
        "secret",
        "super-secret",
        "your-secret-key",
        "jwt-secret",
        "replace-with-at-least-32-random-bytes",
        "replace_me_with_at_least_32_random_bytes",
        "replace-with-a-long-random-token",
        "sk-your-dashscope-key",
        "your-secret-access-key",
        "password",
    }
)
MIN_SECRET_BYTES = 32
# Machine credentials (DB_PASSWORD, Flower's passwords) are typed by nobody: they can be long.
MIN_CREDENTIAL_CHARS = 16

# China-region list prices, CNY (dashscope-protocol.md section 9; the default host is Beijing).
# qwen-max and qwen-turbo's output price are the document's best estimates, marked UNCONFIRMED
# there; override PRICES in production with the figures of your contract.
DEFAULT_PRICES: dict[str, dict[str, Decimal]] = {
    "qwen-turbo": {"input": Decimal("0.0003"), "output": Decimal("0.0006")},
    "qwen-plus": {"input": Decimal("0.0008"), "output": Decimal("0.002")},
    "qwen-max": {"input": Decimal("0.0024"), "output": Decimal("0.0096")},
    # UNCONFIRMED (not in the protocol documents): QwQ-Plus's published list price.
    "qwq-plus": {"input": Decimal("0.0016"), "output": Decimal("0.004")},
    # Vision models: image tokens are input tokens and priced as such unless an "image_input"
    # price (per 1,000 image tokens) says otherwise. UNCONFIRMED (dashscope-protocol-2.md
    # section 3.6 has only qwen-vl-max's international price): the published CNY list prices.
    "qwen-vl-max": {"input": Decimal("0.003"), "output": Decimal("0.009")},
    "qwen-vl-plus": {"input": Decimal("0.0015"), "output": Decimal("0.0045")},
    "qwen3-vl-plus": {"input": Decimal("0.001"), "output": Decimal("0.01")},
    "qwen3-vl-flash": {"input": Decimal("0.00015"), "output": Decimal("0.0015")},
    "wanx-v1": {"image": Decimal("0.16")},
    "wanx2.1-t2i-turbo": {"image": Decimal("0.14")},
    "wanx2.1-t2i-plus": {"image": Decimal("0.20")},
    "wanx2.0-t2i-turbo": {"image": Decimal("0.04")},
    # UNCONFIRMED (dashscope-protocol-2.md section 5.4 gives resellers' USD figures only):
    # wan2.2 and wan2.5 text-to-image at the wanx2.1 turbo/plus prices.
    "wan2.2-t2i-flash": {"image": Decimal("0.14")},
    "wan2.2-t2i-plus": {"image": Decimal("0.20")},
    "wan2.5-t2i-preview": {"image": Decimal("0.20")},
    # Image editing: about USD 0.02 per image; the CNY figure is UNCONFIRMED (section 6.3).
    "wanx2.1-imageedit": {"image": Decimal("0.14")},
    # Video, per second of output (section 7.5), at each model's default resolution; tiered
    # prices would need the resolution in the usage DashScope reports.
    "wanx2.1-t2v-turbo": {"video_second": Decimal("0.24")},
    "wanx2.1-t2v-plus": {"video_second": Decimal("0.70")},
    "wan2.2-t2v-plus": {"video_second": Decimal("0.70")},
    "wan2.5-t2v-preview": {"video_second": Decimal("1.00")},
    "wanx2.1-i2v-turbo": {"video_second": Decimal("0.24")},
    "wanx2.1-i2v-plus": {"video_second": Decimal("0.70")},
    "wan2.2-i2v-flash": {"video_second": Decimal("0.20")},
    "wan2.2-i2v-plus": {"video_second": Decimal("0.70")},
    "wan2.5-i2v-preview": {"video_second": Decimal("1.00")},
    "wanx2.1-kf2v-plus": {"video_second": Decimal("0.70")},
    "wan2.2-kf2v-flash": {"video_second": Decimal("0.20")},
    # dashscope-protocol-2.md section 4.2: CN list prices per 1K tokens (v3 grouped with v4).
    "text-embedding-v4": {"input": Decimal("0.0005")},
    "text-embedding-v3": {"input": Decimal("0.0005")},
    "text-embedding-v2": {"input": Decimal("0.0007")},
    "text-embedding-v1": {"input": Decimal("0.0007")},
}
DEFAULT_RATE_LIMITS = {
    "chat": {Role.DEFAULT: "100/minute", Role.PREMIUM: "500/minute", Role.ADMIN: "1000/minute"},
    # Text-to-image and image edits together (/v1/images/generations counts here too).
    "generation": {Role.DEFAULT: "50/minute", Role.PREMIUM: "100/minute",
                   Role.ADMIN: "200/minute"},
    # Short calls that RAG pipelines make in bursts; DashScope's own account limit for
    # text-embedding-v3 is 6,000 per minute (dashscope-protocol-2.md section 4.2).
    "embeddings": {Role.DEFAULT: "300/minute", Role.PREMIUM: "1500/minute",
                   Role.ADMIN: "3000/minute"},
    # Its own, lower limit: a video costs yuan where an image costs cents.
    "video": {Role.DEFAULT: "10/minute", Role.PREMIUM: "30/minute", Role.ADMIN: "60/minute"},
}


class BudgetSpec(BaseModel):
    """A spend budget: at most `amount` (in PRICE_CURRENCY) per calendar day or month."""

    amount: Decimal = Field(gt=0)
    period: Literal["day", "month"]


class InsecureSettingsError(ValueError):
    """Raised when a production deployment is configured with an unsafe value."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    app_env: Literal["development", "production"] = "production"
    log_level: str = "INFO"
    data_dir: Path = REPO_ROOT / "var"

    # MySQL (or SQLite when nothing is configured)
    database_url: str | None = None
    db_host: str | None = None
    db_port: int = 3306
    db_name: str = "bailian"
    db_user: str = "bailian"
    db_password: SecretStr = SecretStr("")
    db_pool_size: int = 10
    db_connect_timeout: float = 5.0
    # TLS to MySQL, as in the mysql client's --ssl-mode (see common.db.tls_connect_args).
    db_ssl_mode: Literal["disabled", "preferred", "required", "verify_ca",
                         "verify_identity"] = "disabled"
    db_ssl_ca: Path | None = None

    # Redis: rate limits, token revocation, wake-ups and (by default) the Celery broker
    redis_url: str | None = None
    redis_host: str | None = None
    redis_port: int = 6379
    redis_password: SecretStr = SecretStr("")
    redis_db: int = 0
    redis_socket_timeout: float = 5.0
    celery_broker_url: str | None = None

    # DashScope
    qwen_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("QWEN_API_KEY", "DASHSCOPE_API_KEY")
    )
    dashscope_http_base_url: str = "https://dashscope.aliyuncs.com/api/v1"

    # Authentication
    jwt_secret_key: SecretStr | None = None
    jwt_access_token_expires: int = Field(default=3600, gt=0)
    jwt_refresh_token_expires: int = Field(default=30 * 24 * 3600, gt=0)
    login_failure_limit: str = "5 per minute"  # per account and client address
    # Per account from every address together, failures only; addresses the account logged in
    # from successfully are exempt (web.rate_limits), so a stranger cannot lock the owner out.
    login_account_failure_limit: str = "20 per 5 minutes"
    admin_username: str | None = None
    admin_password: SecretStr | None = None
    admin_email: str | None = None

    # Rate limits: endpoint -> tier -> limit ("100/minute"), per authenticated user
    rate_limits_enabled: bool = True
    # (an endpoint left out keeps its default)
    rate_limits: dict[Literal["chat", "generation", "embeddings", "video"],
                      dict[Role, str]] = Field(
        default_factory=lambda: {name: dict(tiers) for name, tiers in DEFAULT_RATE_LIMITS.items()})
    login_rate_limit: str = "30/minute"  # per client address, on top of the failure limit
    rate_limit_storage_url: str | None = None  # default: the Redis above
    # Redis unreachable: "closed" answers 503 (nothing is created); "local" falls back to
    # per-process counters, i.e. the limits multiplied by the number of web processes.
    rate_limit_on_redis_down: Literal["closed", "local"] = "closed"
    # Tokens per minute, per tier (every chat endpoint together): a request reserves its
    # prompt plus max_tokens at submit, corrected to its usage when it ends. API keys may
    # set a lower tpm_limit and rpm_limit of their own.
    tpm_limits: dict[Role, int] = Field(default_factory=lambda: {
        Role.DEFAULT: 1_000_000, Role.PREMIUM: 5_000_000, Role.ADMIN: 20_000_000})
    token_limit_window_seconds: int = Field(default=60, gt=0)  # "per minute"; tests shorten it

    # Spend budgets per tier (a user's own, set by an admin, wins), in PRICE_CURRENCY per
    # calendar day or month of BUDGET_TIME_ZONE; null: no budget. The ledger is MySQL's.
    budgets: dict[Role, BudgetSpec | None] = Field(default_factory=lambda: {
        Role.DEFAULT: BudgetSpec(amount=Decimal(100), period="month"),
        Role.PREMIUM: BudgetSpec(amount=Decimal(1000), period="month"),
        Role.ADMIN: None})
    budget_time_zone: str = "UTC"
    # The key of the HMAC that API-key secrets are stored as; default: derived from
    # JWT_SECRET_KEY (changing either makes every API key invalid).
    api_key_hash_secret: SecretStr | None = None

    # HTTP
    max_content_length: int = 1024 * 1024
    # Reverse-proxy hops whose X-Forwarded-For and X-Forwarded-Proto are believed (werkzeug's
    # ProxyFix); 0 believes none. TRUSTED_PROXIES is the name this setting had before.
    trusted_proxy_hops: int = Field(default=0, ge=0, validation_alias=AliasChoices(
        "TRUSTED_PROXY_HOPS", "TRUSTED_PROXIES"))
    # Where clients reach the API, e.g. https://api.example.com: absolute links (signed image
    # links, Location, job links) start with it; unset, links are relative. Never the Host
    # header, which a client chooses.
    public_base_url: str | None = None
    health_check_timeout: float = Field(default=1.0, gt=0, le=1.8)

    # Chat jobs
    chat_models: dict[str, int] = Field(  # allowed model -> largest max_tokens it accepts
        default={"qwen-turbo": 8192, "qwen-plus": 8192, "qwen-max": 8192, "qwq-plus": 8192,
                 "qwen-vl-max": 8192, "qwen-vl-plus": 8192, "qwen3-vl-plus": 8192,
                 "qwen3-vl-flash": 8192})
    # What each chat model takes beyond plain messages (tools, response_format, images, n,
    # logprobs, ...): common/upstream/chat_capabilities.py; a model missing here takes only
    # the parameters every Qwen model does.
    chat_capabilities: dict[str, ChatCapabilities] = Field(default_factory=default_capabilities)
    # Images in chat messages (`data:` URLs, decoded and checked before a job exists): at most
    # this many per request, each at most this many bytes (DashScope's limit: 10 MB). A
    # request's body is also bounded by MAX_CONTENT_LENGTH.
    chat_image_max_count: int = Field(default=8, ge=1, le=64)
    chat_image_max_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    # Models DashScope answers only as a stream (dashscope-protocol-2.md section 1.5): the
    # worker streams them upstream even for a request that does not stream, as it does any
    # request with enable_thinking.
    stream_only_chat_models: set[str] = Field(default={
        "qwq-plus", "qwq-32b", "qwen3-235b-a22b-thinking-2507", "deepseek-r1"})
    # A streamed job's events (common/jobs/streams.py): at most this many per job, kept this
    # long after the job ends for replays; an idle stream gets a keep-alive this often.
    stream_max_events: int = Field(default=10_000, ge=100)
    stream_retention_seconds: int = Field(default=3600, gt=0)
    stream_keepalive_seconds: float = Field(default=15.0, gt=0, le=60)
    sync_wait_seconds: float = Field(default=25.0, ge=0)  # keep below the web server timeout
    # Server processes collect their older generations on this timer, not by allocation
    # counts (common/infra/gc_tuning.py): the interval a reference cycle may outlive its use.
    gc_full_collection_seconds: float = Field(default=600.0, ge=1)
    # How long /v1/chat/completions waits for its job (OpenAI clients cannot poll); unset: until
    # the job's own deadline, so every answer is the job's outcome.
    v1_wait_seconds: float | None = Field(default=None, ge=0)
    job_deadline_seconds: int = Field(default=600, gt=0)
    job_max_attempts: int = Field(default=5, ge=1)
    idempotency_ttl_seconds: int = Field(default=24 * 3600, gt=0)

    # Text embeddings (POST /v1/embeddings), run in the request: the models offered (each
    # known to common/upstream/embedding_models.py and priced in PRICES).
    embedding_models: list[str] = Field(default=[
        "text-embedding-v4", "text-embedding-v3", "text-embedding-v2", "text-embedding-v1"])

    # Upstream calls
    upstream_timeout_seconds: float = Field(default=60.0, gt=0)
    upstream_retry_base_seconds: float = Field(default=1.0, gt=0)
    upstream_retry_max_seconds: float = Field(default=30.0, gt=0)

    # Worker and sweeper
    job_lease_seconds: int = Field(default=120, gt=0)  # > upstream timeout + persistence
    sweeper_interval_seconds: float = Field(default=15.0, gt=0)
    sweeper_grace_seconds: float = Field(default=10.0, ge=0)
    republish_queued_after_seconds: int = Field(default=300, gt=0)
    broker_visibility_timeout: int = Field(default=900, gt=0)
    task_time_limit: int = Field(default=300, gt=0)
    worker_soft_shutdown_seconds: float = Field(default=20.0, ge=0)  # below the SIGKILL grace

    # Wan async-task models, one table per kind (common/upstream/wanx_models.py): allowed
    # model -> DashScope's account limits for it and the parameters it accepts.
    image_models: dict[str, ImageModelLimits] = Field(default_factory=default_image_models)
    image_edit_models: dict[str, ImageEditModel] = Field(
        default_factory=default_image_edit_models)
    video_models: dict[str, VideoModel] = Field(default_factory=default_video_models)
    # The model /v1/images/generations uses when a request names none (one of IMAGE_MODELS).
    v1_default_image_model: str = "wanx2.1-t2i-turbo"
    image_job_deadline_seconds: int = Field(default=1800, gt=0)
    task_query_budget: float = Field(default=20.0, gt=0)  # GET /tasks per second, all workers
    image_poll_backoff: list[float] = Field(default=[1.0, 2.0, 5.0, 10.0], min_length=1)
    image_poll_max_interval: float = Field(default=300.0, gt=0)
    # Video tasks take minutes: fewer, later polls (the last delay repeats). A finished task
    # is still seen within one poll interval, at most 15 s by default (and the fair share
    # of the query budget when thousands of tasks are in flight).
    video_poll_backoff: list[float] = Field(default=[5.0, 10.0, 15.0], min_length=1)
    video_job_deadline_seconds: int = Field(default=3600, gt=0)
    video_max_bytes: int = Field(default=500 * 1024 * 1024, gt=0)  # a copied MP4
    # POST /api/files: the largest upload, in bytes and in pixels (width x height).
    upload_max_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    upload_max_pixels: int = Field(default=4096 * 4096, gt=0)
    # Where finished images are copied, since DashScope's URLs die after 24 hours.
    image_storage: Literal["local", "s3"] = "local"
    image_storage_dir: Path | None = None  # default: DATA_DIR/images
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    image_url_ttl_seconds: int = Field(default=3600, gt=0)  # lifetime of a signed image link
    image_download_hosts: list[str] = Field(default=[".aliyuncs.com"])  # suffixes, https only
    image_download_allow_http: bool = False  # only for the offline emulator in compose
    image_max_bytes: int = Field(default=30 * 1024 * 1024, gt=0)
    image_store_give_up_seconds: int = Field(default=23 * 3600, gt=0)

    # Webhooks (common/webhooks/): hosts allowed plain http and private addresses (for
    # development: e.g. ["localhost"]); each POST's timeout; the wait before each retry (the
    # last one repeats), with jitter, until WEBHOOK_GIVE_UP_SECONDS after the event; how long a
    # rotated-out signing secret still signs.
    webhook_allow_hosts: list[str] = Field(default=[])
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    webhook_retry_schedule: list[float] = Field(
        default=[5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0], min_length=1)
    webhook_give_up_seconds: int = Field(default=24 * 3600, gt=0)
    webhook_secret_overlap_seconds: int = Field(default=24 * 3600, ge=0)

    # Pricing: model -> {"input", "output"} per 1,000 tokens, or {"image"} per image
    price_currency: str = "CNY"
    prices: dict[str, dict[str, Decimal]] = Field(default_factory=lambda: dict(DEFAULT_PRICES))

    # Observability
    metrics_enabled: bool = True
    worker_metrics_port: int = Field(default=9808, ge=0, le=65535)  # 0: not served
    # Where the worker's metrics and Flower listen: loopback unless told otherwise; compose and
    # Kubernetes set 0.0.0.0, where the container's network is the boundary.
    worker_metrics_address: str = "127.0.0.1"
    flower_address: str = "127.0.0.1"
    # The liveness file a consuming worker touches from its event loop (worker/health.py);
    # unset, none is written. Stale for WORKER_HEALTH_MAX_AGE_SECONDS = not consuming.
    worker_health_file: Path | None = None
    worker_health_max_age_seconds: float = Field(default=90, gt=0)
    # Flower's basic auth, "user:password" (several separated by commas); required outside
    # development, because Flower shows task arguments.
    flower_basic_auth: SecretStr | None = None
    # Where operators open Grafana and Flower: the console's system page links to them (unset:
    # no link). Links only; the console never calls them.
    console_grafana_url: str | None = None
    console_flower_url: str | None = None

    # Function Compute offload: a set endpoint sends that kind of job through the function
    fc_qwen_endpoint: str | None = None
    fc_wanx_endpoint: str | None = None
    fc_auth_token: SecretStr | None = None
    fc_timeout_seconds: float = Field(default=60.0, gt=0)
    # What an invocation costs (PRICE_CURRENCY): per request, plus per second of duration at
    # the function's memory size. Defaults: CNY list prices for 0.5 GB (check your region).
    fc_price_per_request: Decimal = Decimal("0.00000133")
    fc_price_per_second: Decimal = Decimal("0.0000553")

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                   dotenv_settings, file_secret_settings
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Last, so it only fills what nothing else set: where a live `scripts/run` put the
        # embedded Redis and emulator (common/infra/embedded_run.py).
        run_file = embedded_run.live_file(embedded_run.default_data_dir(REPO_ROOT))
        sources = (init_settings, env_settings, dotenv_settings, file_secret_settings)
        if run_file is None:
            return sources
        return (*sources, DotEnvSettingsSource(settings_cls, env_file=run_file))

    @field_validator("rate_limits", "login_rate_limit", "login_failure_limit",
                     "login_account_failure_limit")
    @classmethod
    def _limits_parse(cls, value):
        from limits import parse_many

        texts = [value] if isinstance(value, str) else \
            [limit for tiers in value.values() for limit in tiers.values()]
        for text in texts:
            parse_many(text)  # raises ValueError on "100 per fortnight"
        if isinstance(value, dict):
            for endpoint, tiers in value.items():
                missing = set(Role) - set(tiers)
                if missing:
                    raise ValueError(f"{endpoint} has no limit for {sorted(missing)}")
            # A RATE_LIMITS written before an endpoint existed keeps working.
            value = {**{name: dict(tiers) for name, tiers in DEFAULT_RATE_LIMITS.items()},
                     **value}
        return value

    @field_validator("image_models", "image_edit_models", "video_models", mode="before")
    @classmethod
    def _known_model_rules(cls, value, info):
        """A model the platform knows keeps its documented rules where the setting names only
        its limits: IMAGE_MODELS={"wanx-v1": {"concurrency": 3}} still refuses wanx-v1 sizes
        it does not make. The models allowed are exactly those given."""
        if not isinstance(value, dict):
            return value
        defaults = {"image_models": default_image_models,
                    "image_edit_models": default_image_edit_models,
                    "video_models": default_video_models}[info.field_name]()
        return {model: {**defaults[model].model_dump(), **rules}
                if model in defaults and isinstance(rules, dict) else rules
                for model, rules in value.items()}

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _positive_delays(cls, value: list[float]) -> list[float]:
        if any(delay <= 0 for delay in value):
            raise ValueError("WEBHOOK_RETRY_SCHEDULE takes delays in seconds above 0")
        return value

    @field_validator("budget_time_zone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("tpm_limits", "budgets")
    @classmethod
    def _every_tier(cls, value: dict) -> dict:
        missing = set(Role) - set(value)
        if missing:
            raise ValueError(f"needs every tier; missing {', '.join(sorted(missing))}")
        return value

    @field_validator("public_base_url")
    @classmethod
    def _base_url_is_an_origin(cls, value: str | None) -> str | None:
        if not value:
            return None
        url = urlsplit(value)
        if url.scheme not in ("http", "https") or not url.hostname or url.query \
                or url.fragment or url.username:
            raise ValueError("PUBLIC_BASE_URL must be an http(s) URL with a host and at most a "
                             "path, e.g. https://api.example.com")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _refuse_insecure_production(self) -> Settings:
        if self.app_env == "production":
            problem = jwt_secret_problem(self.jwt_secret_key)
            if problem:
                raise InsecureSettingsError(
                    f"JWT_SECRET_KEY {problem}. Outside development mode the platform refuses to "
                    f"start without a secret of at least {MIN_SECRET_BYTES} random bytes; generate "
                    "one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
                )
            for name, problem in self._credential_problems():
                raise InsecureSettingsError(
                    f"{name} {problem}. Outside development mode the platform refuses to start "
                    "with a placeholder or a short credential; generate one with: "
                    "python -c 'import secrets; print(secrets.token_urlsafe(24))'")
        return self

    def _credential_problems(self):
        """(setting, why it is unfit) for each weak credential that is set."""
        from common.accounts.passwords import password_problem  # the users' policy, one place

        if self.admin_password is not None and self.admin_password.get_secret_value():
            value = self.admin_password.get_secret_value()
            if problem := placeholder_problem(value):
                yield "ADMIN_PASSWORD", problem
            elif problem := password_problem(value, admin=True):
                yield "ADMIN_PASSWORD", f"is refused: {problem}"
        if self.flower_basic_auth is not None:
            for pair in self.flower_basic_auth.get_secret_value().split(","):
                if not pair.strip():
                    continue
                user, colon, password = pair.strip().partition(":")
                if not (user and colon):
                    yield "FLOWER_BASIC_AUTH", "is not a list of user:password pairs"
                elif problem := credential_problem(password):
                    yield "FLOWER_BASIC_AUTH", f"has a password (of {user!r}) that {problem}"
        db_password = self._db_password()
        # No password at all is left to the server: it may authenticate otherwise (a TLS client
        # certificate, a socket or token plugin); a password that is set must be a real one.
        if db_password:
            problem = credential_problem(db_password)
            if problem:
                yield "DATABASE_URL" if self.database_url else "DB_PASSWORD", problem
        # Redis and RabbitMQ often run without a password on a private network (and RabbitMQ's
        # local `guest`); only a password copied from the examples is refused.
        for name, password in (("REDIS_PASSWORD", self.redis_password.get_secret_value()),
                               ("REDIS_URL", _url_password(self.redis_url)),
                               ("CELERY_BROKER_URL", _url_password(self.celery_broker_url))):
            if password and (problem := placeholder_problem(password)):
                yield name, problem

    def _db_password(self) -> str:
        if self.database_url:
            from sqlalchemy.engine import make_url
            from sqlalchemy.exc import ArgumentError

            try:
                return make_url(self.database_url).password or ""
            except ArgumentError:
                return ""  # the database layer reports a malformed URL
        return self.db_password.get_secret_value() if self.db_host else ""

    @model_validator(mode="after")
    def _check_time_budgets(self) -> Settings:
        # A message held longer than the visibility timeout is delivered a second time.
        if self.task_time_limit >= self.broker_visibility_timeout:
            raise ValueError("TASK_TIME_LIMIT must be below BROKER_VISIBILITY_TIMEOUT")
        if self.upstream_retry_max_seconds >= self.broker_visibility_timeout:
            raise ValueError("UPSTREAM_RETRY_MAX_SECONDS must be below BROKER_VISIBILITY_TIMEOUT")
        if self.image_poll_max_interval >= self.broker_visibility_timeout:
            raise ValueError("IMAGE_POLL_MAX_INTERVAL must be below BROKER_VISIBILITY_TIMEOUT")
        if max(self.upstream_timeout_seconds, self.fc_timeout_seconds) >= self.job_lease_seconds:
            raise ValueError("JOB_LEASE_SECONDS must exceed UPSTREAM_TIMEOUT_SECONDS and "
                             "FC_TIMEOUT_SECONDS")
        return self

    @model_validator(mode="after")
    def _check_models_are_priced(self) -> Settings:
        unpriced = sorted((set(self.chat_models) | set(self.task_models)
                           | set(self.embedding_models)) - set(self.prices))
        if unpriced:
            raise ValueError(f"PRICES has no entry for allowed models: {', '.join(unpriced)}")
        from common.upstream.embedding_models import EMBEDDING_MODELS

        unknown = sorted(set(self.embedding_models) - set(EMBEDDING_MODELS))
        if unknown:
            raise ValueError(f"EMBEDDING_MODELS names models whose limits are not known: "
                             f"{', '.join(unknown)} (known: {', '.join(EMBEDDING_MODELS)})")
        if self.v1_default_image_model not in self.image_models:
            raise ValueError("V1_DEFAULT_IMAGE_MODEL must be one of IMAGE_MODELS")
        return self

    @property
    def task_models(self) -> dict[str, TaskModel]:
        """Every async-task model (images, edits, videos): they share the task-query budget."""
        return {**self.image_models, **self.image_edit_models, **self.video_models}

    @property
    def images_dir(self) -> Path:
        return self.image_storage_dir or self.data_dir / "images"

    @property
    def is_development(self) -> bool:
        return self.app_env == "development"

    @property
    def sqlalchemy_url(self) -> str:
        """The database to use: DATABASE_URL, else MySQL from DB_*, else SQLite in DATA_DIR."""
        if self.database_url:
            return self.database_url
        if self.db_host:
            password = quote(self.db_password.get_secret_value(), safe="")
            user = quote(self.db_user, safe="")
            return (
                f"mysql+pymysql://{user}:{password}@{self.db_host}:{self.db_port}/"
                f"{self.db_name}?charset=utf8mb4"
            )
        return f"sqlite:///{self.data_dir / 'bailian.db'}"

    @property
    def redis_configured(self) -> bool:
        return bool(self.redis_url or self.redis_host)

    @property
    def redis_connection_url(self) -> str:
        """REDIS_URL, else one built from REDIS_HOST/PORT/PASSWORD/DB."""
        if self.redis_url:
            return self.redis_url
        if not self.redis_host:
            raise RuntimeError(
                "Redis is not configured: set REDIS_URL or REDIS_HOST "
                "(scripts/run starts an embedded Redis when neither is set)"
            )
        password = self.redis_password.get_secret_value()
        auth = f":{quote(password, safe='')}@" if password else ""
        return f"redis://{auth}{self.redis_host}:{self.redis_port}/{self.redis_db}"

    @property
    def broker_url(self) -> str:
        return self.celery_broker_url or self.redis_connection_url

    def path_for(self, kind: str) -> str:
        """Where a new job of `kind` runs: Function Compute or DashScope. The function
        contract (fc/README.md) covers chat and text-to-image only, so image edits, videos and
        embeddings always go to DashScope."""
        endpoint = {"chat": self.fc_qwen_endpoint, "image": self.fc_wanx_endpoint}.get(kind)
        return "fc" if endpoint else "dashscope"

    @property
    def function_compute_configured(self) -> bool:
        return bool((self.fc_qwen_endpoint or self.fc_wanx_endpoint) and self.fc_auth_token)

    @property
    def dashscope_configured(self) -> bool:
        return self.qwen_api_key is not None and bool(self.qwen_api_key.get_secret_value())


def _url_password(url: str | None) -> str:
    try:
        return unquote(urlsplit(url).password or "") if url else ""
    except ValueError:  # a malformed URL is reported by the client that uses it
        return ""


def placeholder_problem(value: str) -> str | None:
    if value.strip().lower() in PLACEHOLDER_SECRETS:
        return "is a well-known placeholder"
    return None


def credential_problem(value: str) -> str | None:
    """Why a machine credential is unfit for production, or None when it is fine."""
    if placeholder_problem(value):
        return placeholder_problem(value)
    if len(value) < MIN_CREDENTIAL_CHARS:
        return f"is shorter than {MIN_CREDENTIAL_CHARS} characters"
    return None


def jwt_secret_problem(secret: SecretStr | None) -> str | None:
    """Why a JWT secret is unfit for production, or None when it is fine."""
    if secret is None or not secret.get_secret_value():
        return "is missing"
    value = secret.get_secret_value()
    if placeholder_problem(value):
        return placeholder_problem(value)
    if len(value.encode()) < MIN_SECRET_BYTES:
        return f"is shorter than {MIN_SECRET_BYTES} bytes"
    return None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
