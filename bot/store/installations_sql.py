"""Installations of the app in many workspaces, and the one-time states of the OAuth install flow.

One SQL text for both stores (mixed into SqliteTx and PostgresTx, as OutboxSql is), so any process
on the database can serve any workspace and finish any install another process started: nothing
of either lives only in one process's memory.

The rows hold tokens exactly as the adapter hands them over: the Slack adapter encrypts them before
they get here (adapters/slack/oauth.py), so the core never sees a token and the database never
holds one in plain text. A workspace-wide install has enterprise_id '' and an org-wide install has
team_id '' (primary key columns cannot be NULL in PostgreSQL).
"""

from __future__ import annotations

from dataclasses import dataclass

_COLS = ("platform, enterprise_id, team_id, is_enterprise_install, app_id, enterprise_name, team_name, bot_id, "
         "bot_user_id, bot_scopes, bot_token, installer_user_id, installed_at")


@dataclass(frozen=True)
class InstallationRow:
    """One install of the app in a workspace (or an org), as stored."""

    platform: str
    enterprise_id: str
    team_id: str
    is_enterprise_install: bool
    app_id: str | None
    enterprise_name: str | None
    team_name: str | None
    bot_id: str | None
    bot_user_id: str | None
    bot_scopes: str
    bot_token: str  # encrypted by the adapter
    installer_user_id: str | None
    installed_at: float


def _row(r: tuple) -> InstallationRow:
    values = list(r)
    values[3] = bool(values[3])
    return InstallationRow(*values)


class InstallationsSql:
    """Mixed into a store's Tx, which supplies `_one`, `_all` and `_run` (statements with `?` marks)."""

    async def save_installation(self, row: InstallationRow) -> None:
        """Insert, or replace a reinstall's row of the same workspace (new token, scopes, installer)."""
        r = row
        updates = ", ".join(f"{c} = excluded.{c}" for c in _COLS.split(", ")[3:])
        await self._run(
            f"INSERT INTO installations ({_COLS}) VALUES ({', '.join('?' for _ in _COLS.split(', '))}) "
            f"ON CONFLICT (platform, enterprise_id, team_id) DO UPDATE SET {updates}",
            (r.platform, r.enterprise_id, r.team_id, int(r.is_enterprise_install), r.app_id, r.enterprise_name,
             r.team_name, r.bot_id, r.bot_user_id, r.bot_scopes, r.bot_token, r.installer_user_id, r.installed_at))

    async def installation(self, platform: str, enterprise_id: str, team_id: str) -> InstallationRow | None:
        row = await self._one(
            f"SELECT {_COLS} FROM installations WHERE platform = ? AND enterprise_id = ? AND team_id = ?",
            (platform, enterprise_id, team_id))
        return _row(row) if row else None

    async def installation_of_team(self, platform: str, team_id: str) -> InstallationRow | None:
        """The install that serves a workspace, whatever its enterprise (team ids are unique on their own)."""
        row = await self._one(
            f"SELECT {_COLS} FROM installations WHERE platform = ? AND team_id = ? "
            "ORDER BY installed_at DESC LIMIT 1", (platform, team_id))
        return _row(row) if row else None

    async def installations(self, platform: str) -> list[InstallationRow]:
        rows = await self._all(
            f"SELECT {_COLS} FROM installations WHERE platform = ? ORDER BY enterprise_id, team_id", (platform,))
        return [_row(r) for r in rows]

    async def set_installation_token(self, platform: str, enterprise_id: str, team_id: str, old: str,
                                     new: str) -> bool:
        """Replace the stored (encrypted) token of one install, e.g. re-encrypted under a new key, if it is
        still `old` (a reinstall meanwhile wrote a token that must not be overwritten)."""
        return await self._run(
            "UPDATE installations SET bot_token = ? WHERE platform = ? AND enterprise_id = ? AND team_id = ? "
            "AND bot_token = ?", (new, platform, enterprise_id, team_id, old)) == 1

    async def delete_installations(self, platform: str, enterprise_id: str | None, team_id: str) -> int:
        """Forget the install of a workspace (of any enterprise when `enterprise_id` is None)."""
        return await self._run(
            "DELETE FROM installations WHERE platform = ? AND team_id = ? "
            "AND (CAST(? AS TEXT) IS NULL OR enterprise_id = ?)", (platform, team_id, enterprise_id, enterprise_id))

    # -- OAuth states: issued by one request, consumed once by another (maybe another process's) -----

    async def issue_oauth_state(self, state: str, expires_at: float, now: float, *, sweep: bool = True) -> None:
        """Store a new state; with `sweep`, states that expired unconsumed (abandoned installs) go too."""
        if sweep:
            await self._run("DELETE FROM oauth_states WHERE expires_at <= ?", (now,))
        await self._run("INSERT INTO oauth_states (state, expires_at) VALUES (?, ?)",
                        (state, expires_at))

    async def consume_oauth_state(self, state: str, now: float) -> bool:
        """True once for a state that was issued and has not expired; it is gone afterwards either way."""
        rows = await self._all("DELETE FROM oauth_states WHERE state = ? RETURNING expires_at",
                               (state,))
        return bool(rows) and rows[0][0] > now
