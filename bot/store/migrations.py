"""Versioned schema migrations. Append only: a released step is never edited.

Plain SQL that PostgreSQL also accepts (partial indexes, ON CONFLICT); the SQLite store applies
each step in its own transaction and records the version in `schema_migrations`. Keep the list
sorted by version. Step 7 calls `mldebt_fold(name)`, the store's SQL function for
bot.text.fold_key (NFKC and case folding have no SQL spelling); `UPDATE OR IGNORE` leaves a team
whose folded key another, older team of its server already has under its old key, so both stay
reachable and nobody's points move.
"""

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "players, sessions, items, answers, totals, badges",
        """
        CREATE TABLE players (
            id INTEGER PRIMARY KEY,
            platform TEXT NOT NULL,
            tenant TEXT NOT NULL,
            user_id TEXT NOT NULL,
            display_name TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            UNIQUE (platform, tenant, user_id)
        );
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            player_id INTEGER NOT NULL REFERENCES players(id),
            mode TEXT NOT NULL,
            status TEXT NOT NULL,
            position INTEGER NOT NULL,
            total INTEGER NOT NULL,
            challenge_set TEXT,
            route TEXT,
            created_at REAL NOT NULL,
            finished_at REAL,
            correct INTEGER NOT NULL DEFAULT 0,
            points INTEGER NOT NULL DEFAULT 0
        );
        CREATE UNIQUE INDEX sessions_one_open ON sessions(player_id) WHERE status = 'open';
        CREATE INDEX sessions_player ON sessions(player_id, mode);
        CREATE TABLE session_items (
            session_id TEXT NOT NULL REFERENCES sessions(id),
            position INTEGER NOT NULL,
            question_id TEXT NOT NULL,
            choice_order TEXT NOT NULL,
            status TEXT NOT NULL,
            deadline REAL,
            attempts_used INTEGER NOT NULL DEFAULT 0,
            hint_used INTEGER NOT NULL DEFAULT 0,
            points INTEGER NOT NULL DEFAULT 0,
            closed_at REAL,
            PRIMARY KEY (session_id, position)
        );
        CREATE INDEX session_items_due ON session_items(deadline) WHERE status = 'open' AND deadline IS NOT NULL;
        CREATE TABLE answers (
            id INTEGER PRIMARY KEY,
            session_id TEXT NOT NULL REFERENCES sessions(id),
            position INTEGER NOT NULL,
            attempt INTEGER NOT NULL,
            question_id TEXT NOT NULL,
            player_id INTEGER NOT NULL REFERENCES players(id),
            choice TEXT NOT NULL,
            shown_choice TEXT NOT NULL,
            outcome TEXT NOT NULL,
            points INTEGER NOT NULL,
            event_key TEXT NOT NULL UNIQUE,
            answered_at REAL NOT NULL,
            UNIQUE (session_id, position, attempt)
        );
        CREATE TABLE player_totals (
            player_id INTEGER PRIMARY KEY REFERENCES players(id),
            points INTEGER NOT NULL DEFAULT 0,
            answered INTEGER NOT NULL DEFAULT 0,
            correct INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE badges (
            player_id INTEGER NOT NULL REFERENCES players(id),
            badge TEXT NOT NULL,
            session_id TEXT NOT NULL,
            awarded_at REAL NOT NULL,
            PRIMARY KEY (player_id, badge)
        );
        """,
    ),
]

MIGRATIONS.append(
    (
        2,
        "platform badge grants (roles, user groups) and per-tenant settings",
        """
        CREATE TABLE badge_grants (
            player_id INTEGER NOT NULL REFERENCES players(id),
            badge TEXT NOT NULL,
            status TEXT NOT NULL,
            reason TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            updated_at REAL NOT NULL,
            PRIMARY KEY (player_id, badge)
        );
        CREATE INDEX badge_grants_pending ON badge_grants(status) WHERE status = 'pending';
        CREATE TABLE tenant_settings (
            platform TEXT NOT NULL,
            tenant TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (platform, tenant, key)
        );
        """,
    )
)

MIGRATIONS.append(
    (
        3,
        "teams, leaderboard aggregates, daily posts, activity days, review boxes",
        """
        CREATE TABLE teams (
            id INTEGER PRIMARY KEY,
            scope TEXT NOT NULL,
            name TEXT NOT NULL,
            name_key TEXT NOT NULL,
            created_by INTEGER NOT NULL REFERENCES players(id),
            created_at REAL NOT NULL,
            UNIQUE (scope, name_key)
        );
        CREATE TABLE team_members (
            player_id INTEGER PRIMARY KEY REFERENCES players(id),
            team_id INTEGER NOT NULL REFERENCES teams(id),
            joined_at REAL NOT NULL
        );
        CREATE INDEX team_members_team ON team_members(team_id);
        CREATE TABLE score_periods (
            scope TEXT NOT NULL,
            period TEXT NOT NULL,
            player_id INTEGER NOT NULL REFERENCES players(id),
            points INTEGER NOT NULL DEFAULT 0,
            answered INTEGER NOT NULL DEFAULT 0,
            correct INTEGER NOT NULL DEFAULT 0,
            reached_at REAL NOT NULL,
            PRIMARY KEY (scope, period, player_id)
        );
        CREATE INDEX score_periods_rank ON score_periods(scope, period, points DESC, reached_at, player_id);
        CREATE TABLE team_periods (
            scope TEXT NOT NULL,
            period TEXT NOT NULL,
            team_id INTEGER NOT NULL REFERENCES teams(id),
            points INTEGER NOT NULL DEFAULT 0,
            reached_at REAL NOT NULL,
            PRIMARY KEY (scope, period, team_id)
        );
        CREATE TABLE daily_channels (
            platform TEXT NOT NULL,
            tenant TEXT NOT NULL,
            channel TEXT NOT NULL,
            post_time TEXT NOT NULL,
            timezone TEXT NOT NULL,
            enabled INTEGER NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (platform, tenant, channel)
        );
        CREATE TABLE daily_posts (
            id TEXT PRIMARY KEY,
            platform TEXT NOT NULL,
            tenant TEXT NOT NULL,
            channel TEXT NOT NULL,
            local_date TEXT NOT NULL,
            question_id TEXT NOT NULL,
            choice_order TEXT NOT NULL,
            status TEXT NOT NULL,
            message_ref TEXT,
            lease_until REAL NOT NULL,
            posted_at REAL,
            closes_at REAL NOT NULL,
            UNIQUE (platform, tenant, channel, local_date)
        );
        CREATE INDEX daily_posts_status ON daily_posts(status, closes_at);
        CREATE TABLE daily_answers (
            post_id TEXT NOT NULL REFERENCES daily_posts(id),
            player_id INTEGER NOT NULL REFERENCES players(id),
            choice TEXT NOT NULL,
            shown_choice TEXT NOT NULL,
            correct INTEGER NOT NULL,
            points INTEGER NOT NULL,
            event_key TEXT NOT NULL UNIQUE,
            answered_at REAL NOT NULL,
            PRIMARY KEY (post_id, player_id)
        );
        CREATE TABLE activity_days (
            player_id INTEGER NOT NULL REFERENCES players(id),
            local_date TEXT NOT NULL,
            PRIMARY KEY (player_id, local_date)
        );
        CREATE TABLE review_items (
            player_id INTEGER NOT NULL REFERENCES players(id),
            question_id TEXT NOT NULL,
            box INTEGER NOT NULL,
            due_at REAL NOT NULL,
            PRIMARY KEY (player_id, question_id)
        );
        """,
    )
)

MIGRATIONS.append(
    (
        4,
        "players per score, kept by triggers, so a rank is a short sum instead of a long count",
        """
        CREATE TABLE score_counts (
            scope TEXT NOT NULL,
            period TEXT NOT NULL,
            points INTEGER NOT NULL,
            players INTEGER NOT NULL,
            PRIMARY KEY (scope, period, points)
        );
        INSERT INTO score_counts (scope, period, points, players)
            SELECT scope, period, points, COUNT(*) FROM score_periods GROUP BY scope, period, points;
        CREATE TRIGGER score_counts_insert AFTER INSERT ON score_periods BEGIN
            INSERT INTO score_counts (scope, period, points, players) VALUES (NEW.scope, NEW.period, NEW.points, 1)
            ON CONFLICT (scope, period, points) DO UPDATE SET players = players + 1;
        END;
        CREATE TRIGGER score_counts_update AFTER UPDATE OF points ON score_periods
        WHEN OLD.points != NEW.points BEGIN
            UPDATE score_counts SET players = players - 1
            WHERE scope = OLD.scope AND period = OLD.period AND points = OLD.points;
            INSERT INTO score_counts (scope, period, points, players) VALUES (NEW.scope, NEW.period, NEW.points, 1)
            ON CONFLICT (scope, period, points) DO UPDATE SET players = players + 1;
        END;
        """,
    )
)

MIGRATIONS.append(
    (
        5,
        "scoring facts, applied to the aggregates per batch behind a watermark",
        """
        CREATE TABLE score_facts (
            id INTEGER PRIMARY KEY,
            scope TEXT NOT NULL,
            week TEXT,
            month TEXT,
            in_all INTEGER NOT NULL,
            player_id INTEGER REFERENCES players(id),
            team_id INTEGER,
            points INTEGER NOT NULL,
            answered INTEGER NOT NULL,
            correct INTEGER NOT NULL,
            at REAL NOT NULL
        );
        CREATE TABLE score_watermark (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            applied_to INTEGER NOT NULL
        );
        INSERT INTO score_facts (scope, week, month, in_all, player_id, team_id, points, answered, correct, at)
            SELECT scope, CASE WHEN period LIKE 'w%' THEN period END, CASE WHEN period LIKE 'm%' THEN period END,
                   period = 'all', player_id, NULL, points, answered, correct, reached_at
            FROM score_periods ORDER BY scope, period, player_id;
        INSERT INTO score_facts (scope, week, month, in_all, player_id, team_id, points, answered, correct, at)
            SELECT scope, CASE WHEN period LIKE 'w%' THEN period END, CASE WHEN period LIKE 'm%' THEN period END,
                   period = 'all', NULL, team_id, points, 0, 0, reached_at
            FROM team_periods ORDER BY scope, period, team_id;
        INSERT INTO score_watermark (id, applied_to) SELECT 1, COALESCE(MAX(id), 0) FROM score_facts;
        """,
    )
)

MIGRATIONS.append(
    (
        6,
        "the outbox (side effects that must not be lost), delivery problems per target, inbound ids seen",
        """
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            platform TEXT NOT NULL,
            tenant TEXT NOT NULL,
            kind TEXT NOT NULL,
            target TEXT NOT NULL,
            payload TEXT NOT NULL,
            status TEXT NOT NULL,
            not_before REAL NOT NULL,
            expires_at REAL,
            lease_until REAL,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            error_detail TEXT,
            error_fix TEXT,
            first_error_at REAL,
            sent_ref TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX outbox_pending ON outbox(not_before, id) WHERE status = 'pending';
        CREATE INDEX outbox_sending ON outbox(lease_until) WHERE status = 'sending';
        CREATE INDEX outbox_expiring ON outbox(expires_at) WHERE status IN ('pending', 'sending', 'paused');
        CREATE INDEX outbox_tenant ON outbox(platform, tenant, kind, status);
        CREATE TABLE outbox_targets (
            platform TEXT NOT NULL,
            tenant TEXT NOT NULL,
            target TEXT NOT NULL,
            state TEXT NOT NULL,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL,
            fix TEXT,
            since REAL NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (platform, tenant, target)
        );
        INSERT INTO outbox (key, platform, tenant, kind, target, payload, status, not_before, attempts, last_error,
                            error_detail, first_error_at, created_at, updated_at)
            SELECT 'grant:' || g.player_id || ':' || g.badge, p.platform, p.tenant, 'grant', 'badge:' || g.badge,
                   '{"player_id": ' || g.player_id || ', "user": "' || p.user_id || '", "badge": "' || g.badge || '"}',
                   CASE WHEN g.status = 'done' THEN 'sent' ELSE 'pending' END, g.updated_at, g.attempts, g.reason,
                   g.reason, CASE WHEN g.reason IS NULL THEN NULL ELSE g.updated_at END, g.updated_at, g.updated_at
            FROM badge_grants g JOIN players p ON p.id = g.player_id;
        DROP TABLE badge_grants;
        CREATE TABLE inbound_seen (
            platform TEXT NOT NULL,
            key TEXT NOT NULL,
            seen_at REAL NOT NULL,
            PRIMARY KEY (platform, key)
        );
        """,
    )
)

MIGRATIONS.append(
    (
        7,
        "team keys folded with NFKC and case; results a player could not be shown",
        """
        UPDATE OR IGNORE teams SET name_key = mldebt_fold(name);
        CREATE TABLE unseen_results (
            player_id INTEGER PRIMARY KEY REFERENCES players(id),
            session_id TEXT NOT NULL REFERENCES sessions(id),
            question_id TEXT NOT NULL,
            noted_at REAL NOT NULL
        );
        """,
    )
)
