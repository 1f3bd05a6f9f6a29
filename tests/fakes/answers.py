"""Simulated answer sets with known properties, for item analysis; seeded, so every run is the same.

Each simulated player has an ability; a question has a difficulty, and the player knows the answer
with the logistic probability of their difference. A player who knows picks the true answer; one
who does not picks among the distractors (or runs out of time). Plants break single questions in
known ways, so a test can check that the analysis finds exactly those.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from bot.bank import LETTERS, Bank
from bot.store.base import ItemAnswerRow


@dataclass
class Plants:
    broken_key: dict[str, str] = field(default_factory=dict)  # question -> the letter that is really right
    dead_distractor: dict[str, str] = field(default_factory=dict)  # question -> a letter nobody picks
    easy: set[str] = field(default_factory=set)  # questions nearly everyone knows
    lure: dict[str, str] = field(default_factory=dict)  # question -> the distractor most who do not know pick


def simulate(bank: Bank, n_players: int, plants: Plants, *, seed: int = 14, start: float = 1_700_000_000.0
             ) -> list[ItemAnswerRow]:
    """One session per player through every question of the bank, in bank order."""
    rng = random.Random(seed)
    qids = list(bank.questions)
    difficulty = {q: rng.uniform(-0.8, 0.8) for q in qids}
    for q in plants.easy:
        difficulty[q] = -4.0
    for q in plants.lure:
        difficulty[q] = 1.0
    rows = []
    for pid in range(1, n_players + 1):
        ability = rng.gauss(0, 1)
        session = f"s{pid:04d}"
        now = start + pid * 10_000
        for pos, qid in enumerate(qids):
            q = bank.question(qid)
            knows = rng.random() < 1 / (1 + math.exp(-1.7 * (ability - difficulty[qid])))
            truth = plants.broken_key.get(qid, q.answer)
            if knows:
                choice: str | None = truth
            elif qid in plants.broken_key:
                choice = rng.choice(LETTERS)
            elif rng.random() < 0.05:
                choice = None  # ran out of time
            elif qid in plants.lure and rng.random() < 0.9:
                choice = plants.lure[qid]
            else:
                choice = rng.choice([x for x in LETTERS if x != q.answer and x != plants.dead_distractor.get(qid)])
            opened = now
            now += rng.uniform(5, 60) if choice else q.time_limit
            outcome = None if choice is None else ("correct" if choice == q.answer else "wrong")
            rows.append(ItemAnswerRow(
                player_id=pid, question_id=qid, session_id=session, position=pos,
                status="timeout" if choice is None else outcome, hint_used=rng.random() < 0.2,
                first_choice=choice, first_outcome=outcome, opened_at=opened,
                answered_at=now if choice else None, closed_at=now))
    return rows


async def store_rows(store, rows: list[ItemAnswerRow], platform: str = "console", tenant: str = "local") -> None:
    """Write simulated rows into the real tables (players, sessions, items, answers), as players of
    one platform and tenant (player ids and session ids are kept, so use each population once)."""
    sessions: dict[str, list[ItemAnswerRow]] = {}
    for r in rows:
        sessions.setdefault(r.session_id, []).append(r)
    async with store.transaction() as tx:
        for sid, items in sessions.items():
            items.sort(key=lambda r: r.position)
            pid = items[0].player_id
            await tx._run("INSERT INTO players (id, platform, tenant, user_id, display_name, created_at) "
                          "VALUES (?, ?, ?, ?, '', 0) ON CONFLICT DO NOTHING", (pid, platform, tenant, f"u{pid}"))
            await tx._run("INSERT INTO sessions (id, player_id, mode, status, position, total, created_at) "
                          "VALUES (?, ?, 'test', 'finished', ?, ?, ?)",
                          (sid, pid, len(items), len(items), items[0].opened_at))
            for r in items:
                await tx._run("INSERT INTO session_items (session_id, position, question_id, choice_order, status, "
                              "hint_used, closed_at) VALUES (?, ?, ?, 'ABCD', ?, ?, ?)",
                              (sid, r.position, r.question_id, r.status, int(r.hint_used), r.closed_at))
                if r.first_choice is not None:
                    await tx._run("INSERT INTO answers (session_id, position, attempt, question_id, player_id, choice, "
                                  "shown_choice, outcome, points, event_key, answered_at) "
                                  "VALUES (?, ?, 1, ?, ?, ?, ?, ?, 0, ?, ?)",
                                  (sid, r.position, r.question_id, pid, r.first_choice, r.first_choice,
                                   r.first_outcome, f"{sid}:{r.position}", r.answered_at))
