#!/usr/bin/env python3
"""Builds a database shaped like the original Frust backend's db.sqlite (its SQLAlchemy models:
clicks, events, users, hours), filled the way the original would have filled it: rows spread
over the last DAYS days up to a minute ago, `users` and `hours` its running counters (hours with
the ephemeral events it counted without a row). For the import benchmark and tests.

    python3 scripts/frust_original_db.py db.sqlite --clicks 1000000 --events 20000

--awkward adds, 30 to 20 seconds before --now, rows an old or crashed original left behind:
a click with a NULL user and one with an empty user (never counted), a click with a 90-character
comment (counted, as a version without the cap did), a click dated a day after --now, and an
event with a NULL name (never counted).
"""
import argparse
import os
import random
import sqlite3
import time

SCHEMA = """
CREATE TABLE clicks (id INTEGER NOT NULL, user VARCHAR(15), comment VARCHAR(75), style VARCHAR,
                     timestamp INTEGER, PRIMARY KEY (id));
CREATE TABLE events (id INTEGER NOT NULL, user VARCHAR(15), name VARCHAR(75), timestamp INTEGER,
                     PRIMARY KEY (id));
CREATE TABLE users (name VARCHAR(15) NOT NULL, clicks INTEGER, events INTEGER, PRIMARY KEY (name));
CREATE TABLE hours (timestamp INTEGER NOT NULL, clicks INTEGER, events INTEGER,
                    clicks_total INTEGER, events_total INTEGER, PRIMARY KEY (timestamp));
"""
NAMES = ["rage", "cry", "facepalm", "tableflip"]
EPHEMERAL = ["rickroll", "exmatrikulieren"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--clicks", type=int, default=1000)
    ap.add_argument("--events", type=int, default=100)
    ap.add_argument("--ephemeral", type=int, default=10, help="counted in hours, no row")
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--now", type=int, default=None, help="Unix seconds (default: the clock)")
    ap.add_argument("--awkward", action="store_true")
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    if os.path.exists(args.path):
        os.remove(args.path)
    db = sqlite3.connect(args.path)
    db.executescript(SCHEMA)
    now = args.now if args.now is not None else int(time.time())
    end = now - 60
    start = end - args.days * 86400
    users = [f"user{i}" for i in range(args.users)]

    def times(n):
        return sorted(rnd.randint(start, end) for _ in range(n))

    hours, per_user = {}, {}
    clicks = []
    for t in times(args.clicks):
        u = rnd.choice(users)
        comment = rnd.choice([None, "argh", "why"]) if rnd.random() < 0.3 else None
        clicks.append((u, comment, rnd.choice([None, "red"]), t))
        hours.setdefault(t - t % 3600, [0, 0])[0] += 1
        per_user.setdefault(u, [0, 0])[0] += 1
    if args.awkward:
        clicks.append((None, "no user", None, now - 30))
        clicks.append(("", None, None, now - 29))
        clicks.append((users[0], "c" * 90, None, now - 28))
        hours.setdefault((now - 28) - (now - 28) % 3600, [0, 0])[0] += 1
        per_user.setdefault(users[0], [0, 0])[0] += 1
        clicks.append(("carl", None, None, now + 86400))
    db.executemany("INSERT INTO clicks (user, comment, style, timestamp) VALUES (?,?,?,?)", clicks)
    events = []
    for t in times(args.events):
        u = rnd.choice(users)
        events.append((u, rnd.choice(NAMES), t))
        hours.setdefault(t - t % 3600, [0, 0])[1] += 1
        per_user.setdefault(u, [0, 0])[1] += 1
    if args.awkward:
        events.append((users[1], None, now - 20))
    db.executemany("INSERT INTO events (user, name, timestamp) VALUES (?,?,?)", events)
    for t in times(args.ephemeral):
        hours.setdefault(t - t % 3600, [0, 0])[1] += 1
    db.executemany("INSERT INTO users VALUES (?,?,?)",
                   [(u, c, e) for u, (c, e) in per_user.items()])
    total_c = total_e = 0
    rows = []
    for h in sorted(hours):
        c, e = hours[h]
        total_c += c
        total_e += e
        rows.append((h, c, e, total_c, total_e))
    db.executemany("INSERT INTO hours VALUES (?,?,?,?,?)", rows)
    db.commit()


if __name__ == "__main__":
    main()
