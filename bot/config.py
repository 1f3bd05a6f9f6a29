"""Settings from the environment and an optional .env file, read once at start-up (never at import).

Every setting is documented in .env.example with its default. A bad value raises SettingsError with
one line naming the setting, which the CLI prints instead of a traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from cryptography.fernet import Fernet
from dotenv import dotenv_values

from .periods import zone


class SettingsError(Exception):
    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        super().__init__(f"{name}: {problem}")


_TOKEN_SHAPES = {
    "SLACK_BOT_TOKEN": (re.compile(r"^xoxb-[A-Za-z0-9-]+$"), "must look like xoxb-..."),
    "SLACK_APP_TOKEN": (re.compile(r"^xapp-[A-Za-z0-9-]+$"), "must look like xapp-..."),
    "SLACK_SIGNING_SECRET": (re.compile(r"^[A-Za-z0-9]{16,}$"), "must be the app's signing secret (hex)"),
    "SLACK_BADGE_USERGROUP_ID": (re.compile(r"^S[A-Z0-9]+$"), "must be a user group id like S0123ABCD"),
    "SLACK_CLIENT_ID": (re.compile(r"^\d+\.\d+$"), "must be the app's client id (digits.digits)"),
    "SLACK_CLIENT_SECRET": (re.compile(r"^[A-Za-z0-9]{16,}$"), "must be the app's client secret (hex)"),
    "DISCORD_TOKEN": (re.compile(r"^[A-Za-z0-9_\-]{20,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{20,}$"),
                      "must be a Discord bot token (three dot-separated parts)"),
    "DISCORD_APPLICATION_ID": (re.compile(r"^\d{15,22}$"), "must be the numeric application id"),
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Settings:
    database: Path = Path("mldebt.sqlite3")
    # MLDEBT_DATABASE=postgresql://...: the PostgreSQL store instead of the SQLite file
    database_url: str | None = field(default=None, repr=False)
    question_bank: tuple[Path, ...] = ()
    timezone: str = "UTC"
    time_limit_scale: float = 1.0
    log_level: str = "INFO"
    celebrate: bool = True
    slack_bot_token: str | None = field(default=None, repr=False)
    slack_app_token: str | None = field(default=None, repr=False)
    slack_signing_secret: str | None = field(default=None, repr=False)
    slack_badge_usergroup_id: str | None = None
    http_host: str = "0.0.0.0"
    http_port: int = 3000
    discord_token: str | None = field(default=None, repr=False)
    discord_application_id: str | None = None
    discord_mastery_role: str = "Technical Debt Mastery"
    # DISCORD_SHARD_COUNT / DISCORD_SHARD_IDS: the gateway shards this process runs (None: unsharded)
    discord_shard_count: int | None = None
    discord_shard_ids: tuple[int, ...] | None = None
    bank_cache_dir: Path | None = None  # where the validated bank is cached; None: no cache
    # Slack in many workspaces (OAuth install): the app's credentials, its redirect URL, and the
    # Fernet key(s) that encrypt the bot tokens in the database (comma-separated, newest first)
    slack_client_id: str | None = None
    slack_client_secret: str | None = field(default=None, repr=False)
    slack_redirect_uri: str | None = None
    token_key: str | None = field(default=None, repr=False)
    # SLACK_POST_RATE: chat.postMessage calls/s this process may make per workspace (daily posts pace
    # themselves just under it); None: no pacing, a 429 pauses only its route
    slack_post_rate: float | None = None

    @property
    def slack_enabled(self) -> bool:
        return self.slack_bot_token is not None or self.slack_oauth

    @property
    def slack_oauth(self) -> bool:
        """Installed by many workspaces through the OAuth flow, instead of one SLACK_BOT_TOKEN."""
        return self.slack_client_id is not None and self.slack_bot_token is None

    @property
    def discord_enabled(self) -> bool:
        return self.discord_token is not None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env") -> Settings:
        """Merge `.env` (if present) under the real environment, then validate."""
        values: dict[str, str] = {}
        if env_file is not None and Path(env_file).is_file():
            values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        values.update(os.environ if environ is None else environ)
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Settings:
        def get(name: str) -> str | None:
            value = env.get(name)
            if value is None or value.strip() == "":
                return None
            return value.strip()

        kwargs: dict[str, object] = {}
        for name, (pattern, problem) in _TOKEN_SHAPES.items():
            value = get(name)
            if value is not None:
                if not pattern.match(value):
                    raise SettingsError(name, problem)
                kwargs[name.lower()] = value

        db = get("MLDEBT_DATABASE")
        if db is not None and db.startswith(("postgresql://", "postgres://")):
            kwargs["database_url"] = db
        else:
            if db is not None:
                kwargs["database"] = Path(db)
            _check_writable(Path(kwargs.get("database", cls.database)))  # type: ignore[arg-type]

        if (bank := get("MLDEBT_QUESTION_BANK")) is not None:
            paths = tuple(Path(p) for p in bank.split(os.pathsep) if p)
            for p in paths:
                if not p.exists():
                    raise SettingsError("MLDEBT_QUESTION_BANK", f"{p} does not exist")
            kwargs["question_bank"] = paths

        if (tz := get("MLDEBT_TIMEZONE")) is not None:
            if zone(tz) is None:
                raise SettingsError("MLDEBT_TIMEZONE", f"unknown IANA time zone {tz[:64]!r} (e.g. Europe/Berlin)")
            kwargs["timezone"] = tz

        if (scale := get("MLDEBT_TIME_LIMIT_SCALE")) is not None:
            try:
                value = float(scale)
            except ValueError:
                value = -1.0
            if not 0 < value <= 10:
                raise SettingsError("MLDEBT_TIME_LIMIT_SCALE", f"must be a number above 0 and at most 10, got {scale!r}")
            kwargs["time_limit_scale"] = value

        if (level := get("MLDEBT_LOG_LEVEL")) is not None:
            if level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
                raise SettingsError("MLDEBT_LOG_LEVEL", "must be DEBUG, INFO, WARNING or ERROR")
            kwargs["log_level"] = level.upper()

        if (celebrate := get("MLDEBT_CELEBRATE")) is not None:
            if celebrate.lower() not in _TRUE | _FALSE:
                raise SettingsError("MLDEBT_CELEBRATE", "must be true or false")
            kwargs["celebrate"] = celebrate.lower() in _TRUE

        if (host := get("MLDEBT_HTTP_HOST")) is not None:
            kwargs["http_host"] = host
        if (port := get("MLDEBT_HTTP_PORT") or get("PORT")) is not None:
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise SettingsError("MLDEBT_HTTP_PORT", f"must be a port number 1-65535, got {port!r}")
            kwargs["http_port"] = int(port)

        cache = get("MLDEBT_CACHE_DIR")
        if cache is None:
            base = get("XDG_CACHE_HOME") or os.path.join(get("HOME") or os.path.expanduser("~"), ".cache")
            kwargs["bank_cache_dir"] = Path(base) / "mldebt"
        elif cache.lower() != "off":
            kwargs["bank_cache_dir"] = Path(cache)

        if (role := get("DISCORD_MASTERY_ROLE")) is not None:
            if len(role) > 100:
                raise SettingsError("DISCORD_MASTERY_ROLE", "must be at most 100 characters")
            kwargs["discord_mastery_role"] = role

        if (rate := get("SLACK_POST_RATE")) is not None:
            try:
                kwargs["slack_post_rate"] = float(rate)
            except ValueError:
                kwargs["slack_post_rate"] = -1.0
            if not 0 < kwargs["slack_post_rate"] <= 100_000:  # type: ignore[operator]
                raise SettingsError("SLACK_POST_RATE", f"must be calls per second above 0, got {rate!r}")

        count, ids = _shards(get("DISCORD_SHARD_COUNT"), get("DISCORD_SHARD_IDS"))
        if count is not None:
            kwargs["discord_shard_count"], kwargs["discord_shard_ids"] = count, ids

        if (uri := get("SLACK_REDIRECT_URI")) is not None:
            if not re.match(r"^https?://[^/\s]+/\S*$", uri):
                raise SettingsError("SLACK_REDIRECT_URI", "must be the full URL of /slack/oauth_redirect, "
                                    "e.g. https://mldebt.example.org/slack/oauth_redirect")
            kwargs["slack_redirect_uri"] = uri
        if (key := get("MLDEBT_TOKEN_KEY")) is not None:
            kwargs["token_key"] = key
        if "slack_client_id" in kwargs or "slack_client_secret" in kwargs:
            _check_oauth(kwargs)
        elif "slack_bot_token" in kwargs and "slack_app_token" not in kwargs and "slack_signing_secret" not in kwargs:
            raise SettingsError("SLACK_SIGNING_SECRET",
                                "required for HTTP mode when SLACK_BOT_TOKEN is set without SLACK_APP_TOKEN")
        if ("slack_app_token" in kwargs or "slack_signing_secret" in kwargs) and "slack_bot_token" not in kwargs \
                and "slack_client_id" not in kwargs:
            raise SettingsError("SLACK_BOT_TOKEN", "required when other SLACK_* tokens are set")
        return cls(**kwargs)  # type: ignore[arg-type]


MAKE_KEY = 'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'


def _check_oauth(kwargs: dict[str, object]) -> None:
    """Slack in many workspaces: the app's credentials, a signing secret, a token key; HTTP only."""
    if "slack_bot_token" in kwargs:
        raise SettingsError("SLACK_CLIENT_ID", "set either SLACK_BOT_TOKEN (one workspace) or SLACK_CLIENT_ID and "
                            "SLACK_CLIENT_SECRET (installs in many workspaces), not both")
    for name in ("SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET", "SLACK_SIGNING_SECRET"):
        if name.lower() not in kwargs:
            raise SettingsError(name, "required for installs in many workspaces (SLACK_CLIENT_ID and "
                                "SLACK_CLIENT_SECRET, from Basic Information > App Credentials)")
    if "slack_badge_usergroup_id" in kwargs:
        raise SettingsError("SLACK_BADGE_USERGROUP_ID", "names a user group of one workspace: leave it empty when "
                            "the app is installed in many workspaces")
    if "slack_app_token" in kwargs:
        raise SettingsError("SLACK_APP_TOKEN", "installs in many workspaces run in HTTP mode only (the install "
                            "pages and Slack's redirect need a public URL): unset SLACK_APP_TOKEN")
    key = kwargs.get("token_key")
    if key is None:
        raise SettingsError("MLDEBT_TOKEN_KEY", f"required to encrypt the workspaces' bot tokens; make one with: {MAKE_KEY}")
    try:
        token_keys(str(key))
    except ValueError:
        raise SettingsError("MLDEBT_TOKEN_KEY", "is not a Fernet key (comma-separated keys for rotation, newest "
                            f"first); make one with: {MAKE_KEY}") from None


def token_keys(value: str) -> list[Fernet]:
    """MLDEBT_TOKEN_KEY as Fernet keys: comma-separated, the first encrypts, any of them decrypts."""
    keys = [k.strip() for k in value.split(",") if k.strip()]
    if not keys:
        raise ValueError("no key")
    return [Fernet(k) for k in keys]


def _check_writable(database: Path) -> None:
    parent = database.parent if str(database.parent) else Path(".")
    if database.exists():
        ok = os.access(database, os.W_OK)
    else:
        ok = parent.is_dir() and os.access(parent, os.W_OK)
    if not ok:
        raise SettingsError("MLDEBT_DATABASE", f"cannot write {database} (check the folder exists and is writable)")


MAX_SHARDS = 100_000  # far above any bot's shard count; a bound that keeps a typo from building a huge range
_SHARD_PART = re.compile(r"([0-9]{1,6})(?:-([0-9]{1,6}))?")


def _shards(count_text: str | None, ids_text: str | None) -> tuple[int | None, tuple[int, ...] | None]:
    """DISCORD_SHARD_COUNT and DISCORD_SHARD_IDS ("0-3", "0,2", "4-7"; none: every shard of the count)."""
    if count_text is None:
        if ids_text is not None:
            raise SettingsError("DISCORD_SHARD_COUNT", "required with DISCORD_SHARD_IDS: the total number of "
                                "shards across all processes")
        return None, None
    if not re.fullmatch(r"[0-9]{1,6}", count_text) or not 1 <= int(count_text) <= MAX_SHARDS:
        raise SettingsError("DISCORD_SHARD_COUNT", f"must be a whole number from 1 to {MAX_SHARDS}, "
                            f"got {count_text[:32]!r}")
    count = int(count_text)
    if ids_text is None:
        return count, tuple(range(count))
    ids: set[int] = set()
    for part in ids_text.split(","):
        match = _SHARD_PART.fullmatch(part.strip())
        if match is None:
            raise SettingsError("DISCORD_SHARD_IDS", "must be shard numbers and ranges like 0-3 or 0,2, "
                                f"got {ids_text[:64]!r}")
        first, last = int(match[1]), int(match[2] or match[1])
        if last < first:
            raise SettingsError("DISCORD_SHARD_IDS", f"the range {first}-{last} runs backwards; write {last}-{first}")
        if last >= count:
            raise SettingsError("DISCORD_SHARD_IDS", f"shard {last} is outside 0-{count - 1} "
                                f"(DISCORD_SHARD_COUNT is {count})")
        for shard in range(first, last + 1):
            if shard in ids:
                raise SettingsError("DISCORD_SHARD_IDS", f"shard {shard} is listed twice")
            ids.add(shard)
    return count, tuple(sorted(ids))
