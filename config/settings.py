"""All settings in one place, from the environment (prefix YUQING_) or a .env file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_ROSTER = Path(__file__).with_name("roster.example.toml")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="YUQING_", env_file=".env", extra="ignore")

    # Temporal: the dev server by default; a cluster or Temporal Cloud by address, TLS and API key.
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "yuqing-incidents"
    temporal_tls: bool = False
    temporal_tls_ca: Path | None = None
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_tls_server_name: str | None = None
    temporal_api_key: str | None = None
    # The Temporal Web UI as staff reach it (through the gate, starter/web/ui_gate.py), and the
    # real UI behind the gate, bound to 127.0.0.1 on an internal port (`make up`).
    temporal_ui_url: str = "http://localhost:8233"
    temporal_ui_upstream: str = "http://127.0.0.1:8243"

    database_url: str = "sqlite:///data/yuqing.db"
    roster_file: Path = DEFAULT_ROSTER
    # Attachments (issue 19): the folder their files lie in, under their sha256 (unset: an
    # "attachments" folder beside the SQLite database, or var/attachments for another database),
    # and the largest file accepted, in MB (413 beyond, counted while it streams in).
    attachment_dir: Path | None = None
    attachment_max_mb: int = Field(default=20, ge=1, le=1024)
    timezone: str = "Asia/Shanghai"
    # 归档 (issue 19, item 4): days after an incident closes before the public's personal data
    # (the post's content and link, the reporter's name) is redacted from the store and the
    # archived case file, the redaction recorded. A year covers the year's accountability review
    # and the periods for a 复议 or 诉讼 about the case; PIPL art. 19 asks no longer than
    # necessary. 0: keep them.
    personal_data_retention_days: int = Field(default=365, ge=0, le=36_500)
    # 通联测试 (issue 20, item 5): when the scheduled reachability test runs, a cron expression in
    # the town's zone (minute hour day-of-month month day-of-week); the 1st of each month at 09:30.
    reach_test_cron: str = "30 9 1 * *"
    public_url: str = "http://localhost:8000"
    api_url: str = "http://localhost:8000"

    # The plan file new incidents start under: durations, escalation chain, the plan's sentences
    # (unset: the shipped plan/plan-2024.toml). Each incident keeps the plan it started with.
    plan_file: Path | None = None
    # R-ESCALATE: minutes to wait before escalation steps 2, 3, … (the last repeating), replacing
    # the plan file's waits; for drills and tests. Empty: the plan file's waits.
    escalation_waits_minutes: list[float] = Field(default_factory=list)
    # Issue 19: a folder of the office's own Word templates for the incident documents
    # (written_report.docx, summary_report.docx, progress_report.docx, case_file.docx,
    # escalation_notice.docx); a file there replaces the shipped one of config/documents/.
    document_templates: Path | None = None
    webhook_timeout_seconds: float = 10.0
    # Outbox: how long an external channel is retried before the office is told it failed.
    delivery_give_up_minutes: float = 360.0
    smtp_host: str = "localhost"
    smtp_port: int = 25
    # TLS to the SMTP server: "implicit" (SMTPS, port 465), "starttls" or "none"; unset: implicit
    # on port 465, else STARTTLS when smtp_starttls, else none. smtp_ca_file: the CAs to trust
    # (PEM) instead of the system's, for a mail server with a private CA.
    smtp_tls: Literal["implicit", "starttls", "none"] | None = None
    smtp_starttls: bool = False
    smtp_ca_file: Path | None = None
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "yuqing@localhost"
    # SMS through Tencent Cloud SMS (短信, API SendSms 2021-01-11; activities/channels.py): the API
    # key pair (访问管理 → API 密钥; a sub-account with SMS rights only), the application's
    # SdkAppId, the approved signature (签名) and notification template (正文模板) ids, from the
    # SMS console. The endpoint is Tencent's unless set (http://127.0.0.1:PORT in tests: a scheme
    # and host[:port]); the region is the API's common parameter. sms_param_max_chars: the longest
    # template variable value sent (Tencent's FAQ, 6 for a notification template; see SmsSender).
    sms_secret_id: str | None = None
    sms_secret_key: str | None = None
    sms_sdk_app_id: str | None = None
    sms_sign_name: str | None = None
    sms_template_id: str | None = None
    sms_endpoint: str = "https://sms.tencentcloudapi.com"
    sms_region: str = "ap-guangzhou"
    sms_param_max_chars: int = Field(default=6, ge=4, le=12)
    # Web sign-in: how long a browser session lasts, and the key for CSRF tokens (when unset, a
    # random key is generated once and kept in data/secret_key).
    session_hours: float = 12.0
    secret_key: str | None = None
    # "在此设备上保持登录" (the sign-in page and a link's confirm page): a longer session, by choice.
    session_remember_days: float = Field(default=30.0, gt=0, le=366)
    # One-time sign-in links in messages to a person's own channels (e-mail, their webhook):
    # how long one lasts (single use; 0: no links). They lead to public_url, and are minted only
    # when YUQING_PUBLIC_URL is set (never to the default localhost).
    sign_in_link_hours: float = Field(default=24.0, ge=0, le=24 * 14)
    # Personal tokens expire after this many days unless `yuqing token create --expires-days N`
    # says otherwise; an expired token is refused on the API and at sign-in.
    token_days: int = Field(default=180, ge=1, le=3650)
    # Payload encryption (AES-256-GCM): "KEY_ID:BASE64KEY" entries, comma- or line-separated, the
    # encrypting key first; older keys stay listed to decrypt what they wrote. Inline or in a file
    # only the service can read. `yuqing codec-key new KEY_ID` prints a fresh entry.
    codec_keys: str | None = None
    codec_keys_file: Path | None = None
    # With keys set, the worker refuses any payload that is not encrypted (a start, signal or
    # update forged through Temporal without the keys fails its workflow task and does nothing).
    # Set false only while workflows started before the codec was turned on still run.
    codec_refuse_plain: bool = True
    # Observability: the worker's Prometheus endpoint for Temporal SDK metrics (host:port, off when
    # unset), its health endpoint (host:port), and log lines as JSON ("json") or text ("text").
    metrics_bind: str | None = None
    worker_health_bind: str | None = None
    log_format: str = "text"
    # The web app's Prometheus endpoint (host:port, off when unset): request latency by route
    # template and status, on a bind of its own (starter/web/metrics.py).
    web_metrics_bind: str | None = None
    # Rate limits per client address: failed sign-ins per window, and submissions (form, API,
    # leads) per minute. 0 turns a limit off.
    login_failures_allowed: int = 10
    login_window_minutes: float = 15.0
    submissions_per_minute: int = 60
    # Incidents the worker keeps in memory between their events (about 0.2 MB each,
    # docs/PERFORMANCE.md); any other is rebuilt from its history when its next event comes.
    # Bounds the worker's memory however many incidents are open.
    worker_cached_workflows: int = 300
    # Continue-as-new once an incident's history reaches this many events.
    continue_as_new_after: int = 2_000
    # Set false only against a server without the custom search attributes registered.
    search_attributes: bool = True

    def attachment_folder(self) -> Path:
        """The attachments' folder: the setting, or beside the SQLite database, or
        var/attachments (a path only: nothing is read or made here)."""
        if self.attachment_dir is not None:
            return self.attachment_dir
        url = self.database_url
        if url.startswith("sqlite:///") and not url.endswith(":memory:"):
            return Path(url.removeprefix("sqlite:///")).parent / "attachments"
        return Path("var") / "attachments"


@lru_cache
def get_settings() -> Settings:
    return Settings()
