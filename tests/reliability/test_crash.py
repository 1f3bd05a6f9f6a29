"""Crash safety: SIGKILL a bot process playing 20 concurrent challenges, restart it, finish.

The driver (crash_driver.py) prints `ACK <event>` only after engine.answer returned, i.e. after the
answer's transaction committed. The test kills it at points chosen by a seeded RNG and by counts, not
time (right after the n-th acknowledged answer, right after the n-th COMMIT before its replies are
released, right after start-up, and a few ms after the n-th answer), sometimes moves its clock past every deadline before
the restart (the bot was "down" for minutes), redelivers the answers that were in flight (as a
platform retries an unacknowledged event) plus a few that were acknowledged, and finally lets it
run to the end. Then it checks, from the database alone: every acknowledged answer is stored
exactly once, every score equals the sum of its answers, no session is stuck, the deadlines that
passed while the bot was down were closed on start-up, and the badge was awarded at most once.

The outbox: in some runs the driver kills itself right after a badge was shown (its celebration and
grant are committed, not delivered) or right after the fake platform took an outbox entry (delivered,
not yet recorded as sent). In the end the platform holds every celebration, grant and daily post
exactly once: 0 lost, 0 duplicated.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.fakes.bank import write_bank

ROOT = Path(__file__).resolve().parents[2]
SEED = 20260105
PLAYERS = 20
ROUNDS = 3
KILLS = 12
# kill index -> the driver kills itself right after its first line of this kind (else the ACK kill applies)
# (the first run's first delivery is the daily post; a BADGE comes only when a perfect player finishes)
TRIGGERS = {0: "DELIVERED", 5: "BADGE", 8: "BADGE", 11: "BADGE"}
LAST_KILL_ACKS = 25  # the first and last kills wait for the most answers: the delivery (or a badge) comes first
DOWNTIME = 250.0  # seconds of "downtime" on some restarts: past every time limit (120 s, expert 180 s)
RUN_TIMEOUT = 60.0  # a hung driver fails the test instead of hanging CI
CLOSED = ("correct", "wrong", "timeout", "skipped")


@dataclass
class Run:
    lines: list[list[str]] = field(default_factory=list)
    returncode: int | None = None
    stderr: str = ""

    def of(self, kind: str) -> list[list[str]]:
        return [w[1:] for w in self.lines if w and w[0] == kind]


def plan(rng: random.Random) -> list[tuple[str, int, float, float, str | None]]:
    """Per kill: how it is chosen, a count, a delay, the downtime before the restart, and for the
    outbox kills the line after which the driver kills itself (the first BADGE or DELIVERED).

    Counts, not time, decide where most kills land, so the test covers the same ground however fast
    the engine is and however many answers share a commit: `ready` (killed from outside right after
    start-up), `ack` (the driver dies right after printing its n-th ACK), `commit` (it dies right
    after SQLite's n-th COMMIT, before that batch's replies are released: committed, never
    acknowledged). `outside` kills it from outside a random delay of at most 25 ms after the n-th
    ACK, so that some kills land in the middle of transactions in flight. The outbox kills (TRIGGERS)
    are `outside` kills that die earlier if their line comes first: between an outbox write (a
    badge's celebration and grant, a time-out) and its delivery, or right after a delivery; the
    first and last wait for the most answers so that the delivery (or a badge) comes first.
    """
    kills = []
    for i in range(KILLS):
        how = "ready" if i in (3, 9) else "outside" if i in TRIGGERS else ("ack", "commit", "outside")[i % 3]
        n = (LAST_KILL_ACKS if i in (0, KILLS - 1) else rng.randint(1, 6) if how == "commit"
             else rng.randint(1, 25))
        kills.append((how, n, rng.uniform(0, 0.025) if how == "outside" else 0.0,
                      DOWNTIME if i % 3 == 1 else 0.0, TRIGGERS.get(i)))
    assert sum(1 for k in kills if k[0] == "ready") >= 2 and sum(1 for k in kills if k[3]) >= 3
    assert sum(1 for k in kills if k[0] == "commit") >= 3
    return kills


def start(tmp: Path, offset: float, redeliver: list[dict], n: int, die_at: str | None,
          die_on: str | None) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "tests.reliability.crash_driver", "--db", str(tmp / "quiz.sqlite3"),
            "--bank", str(tmp / "bank"), "--offset", str(offset), "--seed", str(SEED),
            "--platform-log", str(tmp / "platform.log"), *(["--die-on", die_on] if die_on else []),
            "--players", str(PLAYERS), "--rounds", str(ROUNDS)]
    if die_at:
        args += ["--die-at", die_at]
    if redeliver:
        path = tmp / f"redeliver-{n}.json"
        path.write_text(json.dumps(redeliver))
        args += ["--redeliver", str(path)]
    with open(tmp / f"stderr-{n}.txt", "w") as stderr:
        return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True)


def run_driver(tmp: Path, n: int, offset: float, redeliver: list[dict], how: str | None, count: int = 0,
               delay: float = 0.0, die_on: str | None = None) -> Run:
    """Run the driver and kill it as `how` says (see plan), or let it finish (how is None); with
    `die_on` it may kill itself earlier, right after its first line of that kind.

    The delay is a bounded real wait on a real process: it only picks where the kill lands.
    """
    hung = threading.Event()

    def give_up() -> None:
        hung.set()
        proc.kill()

    proc = start(tmp, offset, redeliver, n, f"{how}:{count}" if how in ("ack", "commit") else None, die_on)
    kill_after = {"ready": 0, "outside": count}.get(how or "")
    watchdog = threading.Timer(RUN_TIMEOUT, give_up)
    watchdog.start()
    run = Run()
    with proc:
        try:
            assert proc.stdout is not None
            acks = 0
            for line in proc.stdout:
                if not line.endswith("\n"):
                    break  # half a line: the process died while writing it, so nobody saw it
                run.lines.append(line.split())
                acks += line.startswith("ACK ")
                if kill_after is not None and (acks >= kill_after if kill_after else line.startswith("READY")):
                    time.sleep(delay)
                    proc.send_signal(signal.SIGKILL)
                    break
            # whatever the driver printed before it died was shown to a player: read it all
            rest = proc.stdout.read().split("\n")
            run.lines += [line.split() for line in rest[:-1]]  # rest[-1] is empty or half a line
            run.returncode = proc.wait()
        finally:
            watchdog.cancel()
    assert not hung.is_set(), f"run {n} did not finish within {RUN_TIMEOUT} s"
    run.stderr = (tmp / f"stderr-{n}.txt").read_text()
    assert "Traceback" not in run.stderr, run.stderr
    return run


def query(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def check_consistent(db: Path) -> None:
    """What any committed state must satisfy, whenever the process died."""
    sessions = query(db, "SELECT id, status, position, total, correct, points FROM sessions")
    for sid, status, position, total, correct, points in sessions:
        items = query(db, "SELECT position, status, deadline, points, attempts_used FROM session_items "
                          "WHERE session_id = ? ORDER BY position", (sid,))
        assert len(items) == total
        statuses = [it[1] for it in items]
        if status == "finished":
            assert position == total and all(s in CLOSED for s in statuses), (sid, statuses)
        else:
            assert status == "open", (sid, status)
            assert all(s in CLOSED for s in statuses[:position]), (sid, statuses)
            assert statuses[position] == "open" and items[position][2] is not None, (sid, statuses)
            assert all(s == "pending" for s in statuses[position + 1:]), (sid, statuses)
        assert correct == statuses.count("correct") and points == sum(it[3] for it in items), sid
        # answers: attempts 1..n on closed or open items only, never on a question not yet shown
        answers = dict(query(db, "SELECT position, GROUP_CONCAT(attempt) FROM answers WHERE session_id = ? "
                                 "GROUP BY position", (sid,)))
        for pos, _, _, item_points, attempts_used in items:
            attempts = sorted(int(a) for a in answers[pos].split(",")) if pos in answers else []
            assert attempts == list(range(1, attempts_used + 1)), (sid, pos, attempts, attempts_used)
            if statuses[pos] in ("correct", "wrong"):
                [(outcome, answer_points)] = query(db, "SELECT outcome, points FROM answers WHERE session_id = ? AND "
                                                "position = ? AND attempt = ?", (sid, pos, attempts_used))
                assert (outcome, answer_points) == (statuses[pos], item_points), (sid, pos)
    for pid, total, answered, right in query(db, "SELECT player_id, points, answered, correct FROM player_totals"):
        [(from_answers,)] = query(db, "SELECT COALESCE(SUM(points), 0) FROM answers WHERE player_id = ?", (pid,))
        [(from_items, closed, correct)] = query(
            db, "SELECT COALESCE(SUM(i.points), 0), COALESCE(SUM(i.status IN ('correct', 'wrong', 'timeout')), 0), "
                "COALESCE(SUM(i.status = 'correct'), 0) FROM session_items i JOIN sessions s ON s.id = i.session_id "
                "WHERE s.player_id = ?", (pid,))
        [(period_points, period_answered)] = query(
            db, "SELECT points, answered FROM score_periods WHERE player_id = ? AND period = 'all'", (pid,))
        assert total == from_answers == from_items == period_points, pid
        assert answered == closed == period_answered and right == correct, pid
    earned = {pid for (pid,) in query(db, "SELECT DISTINCT player_id FROM sessions WHERE mode = 'challenge' "
                                          "AND status = 'finished' AND correct = total")}
    badges = query(db, "SELECT player_id, COUNT(*) FROM badges GROUP BY player_id")
    assert {pid for pid, _ in badges} == earned and all(n == 1 for _, n in badges)


def overdue(db: Path, at: float) -> set[tuple[str, str]]:
    return set(query(db, "SELECT session_id, question_id FROM session_items WHERE status = 'open' "
                         "AND deadline <= ?", (at,)))


def test_sigkill_restart_loses_and_doubles_nothing(tmp_path: Path) -> None:
    write_bank(tmp_path / "bank")
    db = tmp_path / "quiz.sqlite3"
    rng = random.Random(SEED)
    runs: list[Run] = []
    offset = 0.0
    redeliver: list[dict] = []
    expected_expired: list[set[tuple[str, str]]] = []
    killed = committed_unacked = outbox_kills = 0
    for n, (how, count, delay, downtime, die_on) in enumerate([*plan(rng), (None, 0, 0.0, 0.0, None)]):
        if n:
            check_consistent(db)
        offset += downtime
        # open questions whose deadline will have passed when the restarted bot looks at its clock
        due = overdue(db, time.time() + offset) if n else set()
        assert due or not downtime or not n, "the downtime should have left some deadline behind"
        expected_expired.append(due)
        run = run_driver(tmp_path, n, offset, redeliver, how, count, delay, die_on)
        runs.append(run)
        # only a redelivery can be rejected: an answer to a question (or quiz) closed while the bot was down
        rejected = run.of("REJ")
        assert {e for e, _ in rejected} <= {a["event"] for a in redeliver}, (n, rejected)
        assert {why for _, why in rejected} <= {"QuestionClosed", "SessionClosed"}, (n, rejected)
        if how is not None and run.returncode == -signal.SIGKILL:
            killed += 1
            outbox_kills += bool(run.lines) and run.lines[-1][:1] in (["BADGE"], ["DELIVERED"])
        else:
            assert run.returncode == 0 and run.of("DONE"), (n, run.returncode, run.stderr)
        if how == "commit":
            # answers committed in the batch the process died after, never acknowledged to anyone
            stored_now = {k for (k,) in query(db, "SELECT event_key FROM answers")}
            unacked = {x[0] for x in run.of("SEND")} - {e for (e,) in run.of("ACK")}
            committed_unacked += len({f"slack:{e}" for e in unacked} & stored_now)
        assert {tuple(x) for x in run.of("EXPIRED")} >= due, n
        # in flight (sent, no reply yet): the platform delivers it again; so it does for the last acknowledged
        acks = [e for (e,) in run.of("ACK")]
        replied = set(acks) | {x[0] for x in run.of("REJ")}
        sends = {x[0]: dict(zip(("event", "user", "session", "question", "letter"), x, strict=True))
                 for x in run.of("SEND")}
        redeliver = [s for e, s in sends.items() if e not in replied] + [sends[e] for e in acks[-3:]]
    assert killed >= 10, killed
    assert committed_unacked >= 1, "no kill landed between a COMMIT and the release of its replies"
    assert runs[-1].returncode == 0

    check_consistent(db)
    # every challenge finished: nothing stuck, nothing left open
    sessions = query(db, "SELECT p.user_id, s.status, s.mode FROM sessions s JOIN players p ON p.id = s.player_id")
    # every player finished its rounds; a perfect player whose rounds a time-out spoiled played a few more
    assert PLAYERS * ROUNDS <= len(sessions) <= PLAYERS * ROUNDS + (PLAYERS // 4) * 4
    assert all(status == "finished" and mode == "challenge" for _, status, mode in sessions)
    assert query(db, "SELECT COUNT(*) FROM session_items WHERE status IN ('open', 'pending')") == [(0,)]
    # every acknowledged answer is stored, exactly once
    acked = {e for r in runs for (e,) in r.of("ACK")}
    assert len(acked) >= PLAYERS * ROUNDS * 3, len(acked)
    stored = dict(query(db, "SELECT event_key, COUNT(*) FROM answers GROUP BY event_key"))
    assert all(stored.get(f"slack:{e}") == 1 for e in acked), [e for e in acked if stored.get(f"slack:{e}") != 1]
    assert query(db, "SELECT COUNT(*) FROM answers") == [(len(stored),)]
    # a rejected delivery wrote nothing; an acknowledged one is never rejected when it comes again
    rejected = {e for r in runs for e, _ in r.of("REJ")}
    assert not {f"slack:{e}" for e in rejected} & set(stored) and not rejected & acked, rejected
    # the deadlines that passed while the bot was down were closed at start-up, as time-outs
    for due in expected_expired:
        for sid, qid in due:
            [(status, closed_at, deadline)] = query(
                db, "SELECT status, closed_at, deadline FROM session_items WHERE session_id = ? AND question_id = ?",
                (sid, qid))
            assert status == "timeout" and closed_at >= deadline, (sid, qid, status)
    assert sum(len(d) for d in expected_expired) >= 3
    # the badge: one row per player who earned it, and its message reached each player at most once
    shown = [user for r in runs for user, _ in r.of("BADGE")]
    assert len(shown) == len(set(shown)), shown
    holders = {u for (u,) in query(db, "SELECT p.user_id FROM badges b JOIN players p ON p.id = b.player_id")}
    # (check_consistent showed the holders are exactly the players with a perfect finished challenge)
    assert set(shown) <= holders and len(holders) >= 3, holders
    # the outbox: every celebration, grant and daily post reached the platform exactly once
    assert outbox_kills >= 1 and runs[0].lines[-1][0] == "DELIVERED", outbox_kills
    delivered = Counter((tmp_path / "platform.log").read_text().split("\n")[:-1])
    assert all(n == 1 for n in delivered.values()), [k for k, n in delivered.items() if n > 1]
    pids = [pid for (pid,) in query(db, "SELECT player_id FROM badges")]
    expected = {f"{kind}:{pid}:Technical Debt Mastery" for pid in pids for kind in ("celebration", "grant")}
    [(post_key, post_status)] = query(db, "SELECT 'daily_post:' || channel || ':' || local_date, status "
                                          "FROM daily_posts")
    assert set(delivered) == expected | {post_key} and post_status == "posted"
    assert query(db, "SELECT DISTINCT status FROM outbox") == [("sent",)]
