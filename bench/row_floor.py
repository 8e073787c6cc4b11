#!/usr/bin/env python3
"""SQLite's own cost of the rows a Merkle leaf leaves behind in each service's store.

    row_floor.py STATE_DIR N OUT_DIR

STATE_DIR holds the stores of a finished `anchorctl archive --local --merkle-batch` run
(submitter.db, poller.db, hasher.db): their schemas (tables, indexes, triggers) are copied as the
services made them, and one real leaf's rows are the template of the N rows written here, each
with a fresh random digest and the next ids. The rows go in with one INSERT ... SELECT per 10,000
(no binding, no statement per row, no application code), WAL and synchronous=FULL as the services
use them, so the CPU time per leaf is what the layout costs SQLite itself: the floor under each
service's store path. Layouts the stores do not have (named "alt:") are measured the same way,
to tell what a change of layout could buy before it is written.

Prints one JSON object: {layout: CPU microseconds per leaf}.
"""
import json
import os
import sqlite3
import sys
import time

CHUNK = 10000


def fresh(path, schema_from):
    """A new database at `path` with the schema (and page size) of the database `schema_from`."""
    for suffix in ("", "-wal", "-shm"):
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass
    db = sqlite3.connect(path, isolation_level=None)
    # The page size first: a database in WAL mode keeps the one it has (the hasher's is 1 KiB).
    page = schema_from.execute("PRAGMA page_size").fetchone()[0]
    db.execute(f"PRAGMA page_size={page}")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    # Tables first, then indexes and triggers (they name the tables).
    rows = schema_from.execute(
        "SELECT type, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
        "ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 ELSE 2 END, rowid").fetchall()
    for _, sql in rows:
        db.execute(sql)
    return db


def columns(db, table):
    return [r[1] for r in db.execute(f"PRAGMA table_info({table})")]


def measure(db, n, statements):
    """statements: SQL run per chunk with (lo, hi] of src ids bound as ?1, ?2."""
    db.execute("CREATE TEMP TABLE src (i INTEGER PRIMARY KEY, d BLOB NOT NULL)")
    db.execute("BEGIN")
    db.executemany("INSERT INTO src VALUES (?, ?)", ((i, os.urandom(32)) for i in range(1, n + 1)))
    db.execute("COMMIT")
    t0 = time.process_time()
    for lo in range(0, n, CHUNK):
        db.execute("BEGIN")
        for sql in statements:
            db.execute(sql, (lo, min(n, lo + CHUNK)))
        db.execute("COMMIT")
    return (time.process_time() - t0) / n * 1e6


def copy_of(template_db, table, where, replace):
    """An INSERT ... SELECT writing one copy of `table`'s row matching `where` per src row, the
    columns in `replace` (name -> SQL over src's i and d) changed."""
    cols = columns(template_db, table)
    row = template_db.execute(f"SELECT {', '.join(cols)} FROM {table} WHERE {where} LIMIT 1").fetchone()
    if row is None:
        sys.exit(f"row_floor: no row of {table} where {where}")
    values = []
    for c, v in zip(cols, row):
        if c in replace:
            values.append(replace[c])
        elif v is None:
            values.append("NULL")
        elif isinstance(v, bytes):
            values.append(f"X'{v.hex()}'")
        elif isinstance(v, str):
            values.append("'" + v.replace("'", "''") + "'")
        else:
            values.append(str(v))
    return (f"INSERT INTO {table} ({', '.join(cols)}) SELECT {', '.join(values)} "
            f"FROM src WHERE i > ?1 AND i <= ?2")


def main():
    state, n, out_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    os.makedirs(out_dir, exist_ok=True)
    sub = sqlite3.connect(f"file:{state}/submitter.db?mode=ro", uri=True)
    pol = sqlite3.connect(f"file:{state}/poller.db?mode=ro", uri=True)
    has = sqlite3.connect(f"file:{state}/hasher.db?mode=ro", uri=True)
    base = 1000000  # new ids above the template run's
    leaf_sub = sub.execute("SELECT id FROM submissions WHERE mode = 1 ORDER BY id LIMIT 1").fetchone()[0]
    leaf_seq = pol.execute("SELECT seq FROM proofs WHERE leaf_index >= 0 ORDER BY seq LIMIT 1").fetchone()[0]
    out = {}

    def run(name, schema_db, statements, setup=()):
        path = os.path.join(out_dir, "floor.db")
        best = None
        # The lowest of REPS runs, each on a fresh database: the machine is shared and only ever
        # adds time.
        for _ in range(int(os.environ.get("REPS", "3"))):
            db = fresh(path, schema_db)
            for sql in setup:
                db.execute(sql)
            us = measure(db, n, statements)
            db.close()
            best = us if best is None else min(best, us)
        out[name] = round(best, 2)

    def has_row(db, table, where):
        return db.execute(f"SELECT 1 FROM {table} WHERE {where} LIMIT 1").fetchone() is not None

    # Since issue 11 session 23 a digest's first file is kept in its own row in both stores (no
    # refs or files row): the "+ ref" and "+ file" rows are measured only for a database that has
    # them (an older build's).
    sub_row = copy_of(sub, "submissions", f"id = {leaf_sub}", {"id": f"{base} + i", "digest": "d"})
    if has_row(sub, "refs", f"sub_id = {leaf_sub}"):
        sub_ref = copy_of(sub, "refs", f"sub_id = {leaf_sub}",
                          {"id": f"{base} + i", "sub_id": f"{base} + i"})
        run("submitter: leaf row + ref", sub, [sub_row, sub_ref])
    run("submitter: leaf row alone", sub, [sub_row])
    # What a leaf's entry in the index of its batch's leaves costs (the poller's counterpart,
    # proofs_open_leaves, holds no batch-form leaf since issue 11 session 24).
    run("alt: submitter leaf row alone, no batch-leaves entry", sub, [sub_row],
        setup=["DROP INDEX submissions_batch_leaves"])
    pol_row = copy_of(pol, "proofs", f"seq = {leaf_seq}", {"seq": f"{base} + i", "digest": "d"})
    # A files row of the poller's schema, for the older layout and the narrow alternatives below.
    pol_file = ("INSERT INTO files (id, proof_seq, job, source_path, filename, size_bytes, "
                "mime_type) SELECT {base} + i, {base} + i, 'job', printf('d%03d/f%06d.bin', "
                "i / 500, i), printf('f%06d.bin', i), 2048, 'application/octet-stream' FROM src "
                "WHERE i > ?1 AND i <= ?2").format(base=base)
    if has_row(pol, "files", f"proof_seq = {leaf_seq}"):
        run("poller: leaf row + file", pol, [pol_row, pol_file])
    run("poller: leaf row alone", pol, [pol_row])
    hasher_row = copy_of(has, "files", "digest IS NOT NULL", {"path": "printf('d%03d/f%06d.bin', i / 500, i)", "digest": "d"})
    run("hasher: file row", has, [hasher_row])
    # A leaf as the narrowest row that still finds it by digest: its id, its batch (or root) and
    # its place in the batch's tree, with the digest-prefix index both stores use; alone, and with
    # the poller's file row.
    narrow = ["CREATE TABLE leaves (id INTEGER PRIMARY KEY, batch INTEGER NOT NULL, "
              "leaf_index INTEGER NOT NULL, digest BLOB NOT NULL)",
              "CREATE INDEX leaves_by_digest ON leaves (substr(digest, 1, 8))"]
    narrow_row = ("INSERT INTO leaves (id, batch, leaf_index, digest) SELECT {base} + i, 7, "
                  "i % 10000, d FROM src WHERE i > ?1 AND i <= ?2").format(base=base)
    run("alt: narrow leaf row + file", pol, [narrow_row, pol_file], setup=narrow)
    run("alt: narrow leaf row alone", pol, [narrow_row], setup=narrow)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
