"""Slack in many workspaces: the "Add to Slack" install flow, installs kept in the database, and the
Web API client of each workspace.

bolt runs the flow (GET /slack/install sets a state, Slack sends the browser back to GET
/slack/oauth_redirect with a code, oauth.v2.access turns it into a bot token) and authorizes every
request by looking up its workspace's install. Both stores it needs are rows in the project's
database, so any replica can finish an install another one began and serve any workspace:

- `SqlOAuthStateStore`: a state is a row with an expiry, deleted by the request that consumes it
  (once, whichever process gets it);
- `SqlInstallationStore`: one row per workspace, its bot token encrypted with Fernet under
  MLDEBT_TOKEN_KEY (`TokenCipher`; comma-separated keys: the first encrypts, all decrypt, and
  start-up re-encrypts every token under the first). No token is ever stored or logged in plain text.

Only bot tokens are asked for and kept (no user scopes); token rotation is not supported (a Slack
app has it off unless turned on), and an install that brings a refresh token is refused.

Deliveries (time-outs, celebrations, grants, daily posts, channel probes) have no request to take a
client from: `InstalledWorkspaces` finds the install of the delivery's workspace and hands out a
client for its token (one per token, kept until the workspace reinstalls or uninstalls). No
install is a Permanent failure of scope "tenant", so the workspace's deliveries pause until it
installs the app again. In single-workspace mode `OneWorkspace` hands out the one client.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from logging import Logger
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml
from cryptography.fernet import InvalidToken, MultiFernet
from slack_bolt.error import BoltError
from slack_bolt.oauth.async_callback_options import AsyncCallbackOptions, AsyncFailureArgs, AsyncSuccessArgs
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.response import BoltResponse
from slack_sdk.oauth.installation_store import Bot, Installation
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore
from slack_sdk.web.async_client import AsyncWebClient

from bot.cli import StartupFailed
from bot.clock import Clock
from bot.config import MAKE_KEY, Settings, token_keys
from bot.platform_errors import Permanent, Transient
from bot.store import Store, StoreBusy
from bot.store.base import WriteConflict
from bot.store.installations_sql import InstallationRow

from .web import make_client

log = logging.getLogger(__name__)

PLATFORM = "slack"
STATE_SECONDS = 600  # an install begun and not finished within this is refused (bolt's default too)
SWEEP_SECONDS = 60  # expired OAuth states are deleted at most this often per process
KEY_RETRY_SECONDS = 300  # a token this process cannot decrypt: try the delivery again after this
TX_RUNS = 5  # a store call that keeps losing races with other transactions gives up after this many runs
INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
REINSTALL_HERE = f"Install the app in the workspace again (open {INSTALL_PATH} on the bot's address)."
T = TypeVar("T")


class TokenKeyError(StartupFailed):
    """MLDEBT_TOKEN_KEY cannot decrypt the tokens in the database; the message says what to do."""


TOKEN_TEXT = re.compile(r"\bxox[a-z]-[A-Za-z0-9-]+")
WEB_API_LOG = "slack_sdk.web.async_base_client"  # logs each response body at DEBUG, oauth.v2.access's token too


class RedactTokens(logging.Filter):
    """Slack tokens out of log lines: slack_sdk redacts the Authorization header it logs at DEBUG, but
    not the body of oauth.v2.access, which holds the new bot token."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "xox" in message:
            record.msg, record.args = TOKEN_TEXT.sub("(redacted)", message), None
        return True


def redact_tokens_in_logs() -> None:
    logger = logging.getLogger(WEB_API_LOG)
    if not any(isinstance(f, RedactTokens) for f in logger.filters):
        logger.addFilter(RedactTokens())


def bot_scopes() -> list[str]:
    """The bot scopes an install asks for: the manifest's, so the two can never disagree."""
    manifest = yaml.safe_load((Path(__file__).parent / "manifest.yml").read_text())
    return list(manifest["oauth_config"]["scopes"]["bot"])


class TokenCipher:
    """Fernet encryption of bot tokens; several keys (newest first) let an operator rotate the key."""

    def __init__(self, key_setting: str) -> None:
        self._keys = token_keys(key_setting)
        self._all = MultiFernet(self._keys)

    def encrypt(self, token: str) -> str:
        return self._all.encrypt(token.encode()).decode()

    def decrypt(self, stored: str) -> str:
        """Raises InvalidToken when no configured key made `stored` (or it was altered)."""
        return self._all.decrypt(stored.encode()).decode()

    def current(self, stored: str) -> bool:
        """Encrypted under the first (newest) key?"""
        try:
            self._keys[0].decrypt(stored.encode())
        except InvalidToken:
            return False
        return True

    def rotate(self, stored: str) -> str:
        return self._all.rotate(stored.encode()).decode()


class _Db:
    """Installs and states share this: one store transaction per call, run again when it lost a race."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store, self.clock = store, clock

    def now(self) -> float:
        return self.clock.now().timestamp()

    async def run(self, work: Callable[[Any], Awaitable[T]]) -> T:
        run = 1
        while True:
            try:
                async with self.store.transaction() as tx:
                    return await work(tx)
            except (WriteConflict, StoreBusy):
                if run == TX_RUNS:
                    raise
                run += 1


def _key(enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None) -> tuple[str, str]:
    """The stored key of an install: '' for no enterprise; an org-wide install has no team."""
    return enterprise_id or "", "" if is_enterprise_install else (team_id or "")


class SqlInstallationStore(AsyncInstallationStore):
    """slack_sdk's installation store on the project's database (see the module docstring)."""

    def __init__(self, store: Store, clock: Clock, cipher: TokenCipher, *,
                 on_saved: Callable[[str], Awaitable[None]] | None = None) -> None:
        self._db = _Db(store, clock)
        self.cipher = cipher
        self.on_saved = on_saved  # told the team id after each install, once its row is committed

    @property
    def logger(self) -> Logger:
        return log

    async def async_save(self, installation: Installation) -> None:
        if installation.bot_token is None:
            raise BoltError("the install brought no bot token: the app must ask for bot scopes")
        await self._save(installation.to_bot(), installation.user_id)

    async def async_save_bot(self, bot: Bot) -> None:
        await self._save(bot, None)

    async def _save(self, bot: Bot, installer: str | None) -> None:
        if bot.bot_refresh_token is not None:
            raise BoltError("token rotation is not supported: turn it off (OAuth & Permissions > Advanced token "
                            "security) and install again")
        enterprise_id, team_id = _key(bot.enterprise_id, bot.team_id, bot.is_enterprise_install)
        row = InstallationRow(PLATFORM, enterprise_id, team_id, bool(bot.is_enterprise_install), bot.app_id,
                              bot.enterprise_name, bot.team_name, bot.bot_id, bot.bot_user_id,
                              ",".join(bot.bot_scopes or []), self.cipher.encrypt(bot.bot_token), installer,
                              self._db.now())
        try:
            await self._db.run(lambda tx: tx.save_installation(row))
        except (WriteConflict, StoreBusy) as exc:
            raise BoltError(f"the database did not take the install ({type(exc).__name__})") from exc
        log.info("Slack: installed in workspace %s", team_id or enterprise_id)  # ids only: names are user text
        if self.on_saved is not None and team_id:
            await self.on_saved(team_id)

    async def async_find_bot(self, *, enterprise_id: str | None, team_id: str | None,
                             is_enterprise_install: bool | None = False) -> Bot | None:
        key = _key(enterprise_id, team_id, is_enterprise_install)
        row = await self._db.run(lambda tx: tx.installation(PLATFORM, *key))
        if row is None:
            return None
        try:
            token = self.cipher.decrypt(row.bot_token)
        except InvalidToken:
            log.error("Slack: the token of workspace %s cannot be decrypted with MLDEBT_TOKEN_KEY; keep the key it "
                      "was stored with in MLDEBT_TOKEN_KEY (after the new one)", row.team_id or row.enterprise_id)
            return None
        return _bot(row, token)

    async def async_find_installation(self, *, enterprise_id: str | None, team_id: str | None,
                                      user_id: str | None = None,
                                      is_enterprise_install: bool | None = False) -> Installation | None:
        """The workspace's install (bot token only: installs keep no user tokens)."""
        bot = await self.async_find_bot(enterprise_id=enterprise_id, team_id=team_id,
                                        is_enterprise_install=is_enterprise_install)
        if bot is None:
            return None
        return Installation(app_id=bot.app_id, enterprise_id=bot.enterprise_id, enterprise_name=bot.enterprise_name,
                            team_id=bot.team_id, team_name=bot.team_name, bot_token=bot.bot_token, bot_id=bot.bot_id,
                            bot_user_id=bot.bot_user_id, bot_scopes=bot.bot_scopes, user_id=user_id or "",
                            is_enterprise_install=bot.is_enterprise_install, installed_at=bot.installed_at)

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self.delete(team_id or "", enterprise_id or "")

    async def async_delete_installation(self, *, enterprise_id: str | None, team_id: str | None,
                                        user_id: str | None = None) -> None:
        if user_id is None:  # a user's install is not kept; only the workspace's counts
            await self.delete(team_id or "", enterprise_id or "")

    async def delete(self, team_id: str, enterprise_id: str | None = None) -> int:
        """Forget a workspace's install (of any enterprise when None): uninstalled or its token revoked."""
        return await self._db.run(lambda tx: tx.delete_installations(PLATFORM, enterprise_id, team_id))

    async def row_of_team(self, team_id: str) -> InstallationRow | None:
        return await self._db.run(lambda tx: tx.installation_of_team(PLATFORM, team_id))

    async def reencrypt(self) -> int:
        """Start-up: every token under the newest key. Raises TokenKeyError if some cannot be decrypted
        at all (the key they were stored with is missing), naming how many; returns how many changed."""
        rows = await self._db.run(lambda tx: tx.installations(PLATFORM))
        lost = [r for r in rows if not _decrypts(self.cipher, r.bot_token)]
        if lost:
            raise TokenKeyError(
                f"MLDEBT_TOKEN_KEY cannot decrypt the bot tokens of {len(lost)} of {len(rows)} Slack installs: "
                "keep the key they were stored with in MLDEBT_TOKEN_KEY, after the new one (comma-separated)")
        changed = 0
        for r in rows:
            if not self.cipher.current(r.bot_token):
                new = self.cipher.rotate(r.bot_token)
                changed += await self._db.run(lambda tx, r=r, new=new: tx.set_installation_token(
                    PLATFORM, r.enterprise_id, r.team_id, r.bot_token, new))
        if changed:
            log.info("Slack: re-encrypted %d bot tokens under the first key of MLDEBT_TOKEN_KEY", changed)
        return changed


def _decrypts(cipher: TokenCipher, stored: str) -> bool:
    try:
        cipher.decrypt(stored)
    except InvalidToken:
        return False
    return True


def _bot(row: InstallationRow, token: str) -> Bot:
    return Bot(app_id=row.app_id, enterprise_id=row.enterprise_id or None, enterprise_name=row.enterprise_name,
               team_id=row.team_id or None, team_name=row.team_name, bot_token=token, bot_id=row.bot_id,
               bot_user_id=row.bot_user_id, bot_scopes=row.bot_scopes, is_enterprise_install=row.is_enterprise_install,
               installed_at=row.installed_at)


class SqlOAuthStateStore(AsyncOAuthStateStore):
    """slack_sdk's OAuth state store on the project's database: a row with an expiry, consumed once."""

    def __init__(self, store: Store, clock: Clock, *, expiration_seconds: int = STATE_SECONDS) -> None:
        self._db = _Db(store, clock)
        self.expiration_seconds = expiration_seconds
        self._swept_at = float("-inf")

    @property
    def logger(self) -> Logger:
        return log

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        """A new state row. Abandoned ones are swept at most once a minute per process: the install page is
        public, and on PostgreSQL concurrent sweeps of the same rows would make the page's requests collide."""
        state = secrets.token_urlsafe(32)
        now = self._db.now()
        sweep = now - self._swept_at >= SWEEP_SECONDS
        await self._db.run(lambda tx: tx.issue_oauth_state(state, now + self.expiration_seconds, now, sweep=sweep))
        if sweep:
            self._swept_at = now
        return state

    async def async_consume(self, state: str) -> bool:
        if not state:
            return False
        return await self._db.run(lambda tx: tx.consume_oauth_state(state, self._db.now()))


# -- the client of a workspace, for deliveries --------------------------------------------------------


class WorkspaceClients(Protocol):
    async def client(self, tenant: str) -> AsyncWebClient:
        """A Web API client with the workspace's token; raises Permanent (scope tenant) if there is none."""
    def forget(self, tenant: str) -> None:
        """The workspace uninstalled or reinstalled: drop what is kept of its token."""


class OneWorkspace:
    """Single-workspace mode: SLACK_BOT_TOKEN's client for every delivery."""

    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client

    async def client(self, tenant: str) -> AsyncWebClient:
        return self._client

    def forget(self, tenant: str) -> None:
        """Nothing is kept per workspace."""


class InstalledWorkspaces:
    """OAuth mode: each delivery reads its workspace's install (so a reinstall or uninstall through any
    replica counts at once) and gets a client for that token, made once per token."""

    def __init__(self, installations: SqlInstallationStore, base: AsyncWebClient) -> None:
        self.installations = installations
        self.base = base  # its base URL (a test fake, or Slack) is every workspace's
        self._clients: dict[str, tuple[str, AsyncWebClient]] = {}  # team -> (stored ciphertext, client)

    async def _row(self, tenant: str) -> InstallationRow:
        row = await self.installations.row_of_team(tenant)
        if row is None:
            self.forget(tenant)
            raise Permanent("not_installed", f"the app is not installed in workspace {tenant}", REINSTALL_HERE,
                            scope="tenant")
        return row

    async def client(self, tenant: str) -> AsyncWebClient:
        row = await self._row(tenant)
        kept = self._clients.get(tenant)
        if kept is not None and kept[0] == row.bot_token:
            return kept[1]
        client = make_client(self._decrypt(tenant, row.bot_token), base_url=self.base.base_url)
        self._clients[tenant] = (row.bot_token, client)
        return client

    def _decrypt(self, tenant: str, stored: str) -> str:
        """A token this process's keys cannot read is a mistake of this replica's settings (typically a
        key rotation half rolled out: another replica re-encrypted under a key this one lacks), not of
        the workspace: the delivery is retried later and the workspace is not paused for every replica."""
        try:
            return self.installations.cipher.decrypt(stored)
        except InvalidToken:
            log.warning("Slack: MLDEBT_TOKEN_KEY of this process cannot decrypt the token of workspace %s; "
                        "its deliveries wait (give every replica the same keys)", tenant)
            raise Transient("token_key", f"the token of workspace {tenant} cannot be decrypted with this "
                            "process's MLDEBT_TOKEN_KEY",
                            "Give every replica the key the token was stored with in MLDEBT_TOKEN_KEY "
                            "(see README: Rotating the key)", retry_after=KEY_RETRY_SECONDS) from None

    def forget(self, tenant: str) -> None:
        self._clients.pop(tenant, None)


def oauth_settings(settings: Settings, installations: SqlInstallationStore,
                   states: SqlOAuthStateStore, logger: Logger) -> AsyncOAuthSettings:
    """bolt's install flow on our stores; authorize keeps each token's auth.test answer (an install's
    row is still read on every request, so an uninstall through another replica counts at once)."""
    assert settings.slack_client_id and settings.slack_client_secret
    oauth = AsyncOAuthSettings(client_id=settings.slack_client_id, client_secret=settings.slack_client_secret,
                               scopes=bot_scopes(), user_scopes=[], redirect_uri=settings.slack_redirect_uri,
                               install_path=INSTALL_PATH, redirect_uri_path=REDIRECT_PATH,
                               installation_store=installations, installation_store_bot_only=True,
                               state_store=states, state_expiration_seconds=states.expiration_seconds, logger=logger,
                               callback_options=AsyncCallbackOptions(success=_installed, failure=_refused))
    oauth.authorize.cache_enabled = True  # type: ignore[attr-defined]
    return oauth


async def _installed(args: AsyncSuccessArgs) -> BoltResponse:
    return await args.default.success(args)


async def _refused(args: AsyncFailureArgs) -> BoltResponse:
    """bolt's failure page, and one log line with the reason (bolt logs it only at debug level)."""
    log.warning("Slack: refused an install (%s)", repr(args.reason)[:80])  # the reason may come from the URL
    return await args.default.failure(args)


def cipher_for(settings: Settings) -> TokenCipher:
    """The token cipher of OAuth mode (Settings checked the key already; this says so again if not)."""
    if not settings.token_key:
        raise TokenKeyError(f"MLDEBT_TOKEN_KEY is required to encrypt the workspaces' bot tokens; make one with: "
                            f"{MAKE_KEY}")
    try:
        return TokenCipher(settings.token_key)
    except ValueError:
        raise TokenKeyError(f"MLDEBT_TOKEN_KEY is not a Fernet key; make one with: {MAKE_KEY}") from None
