"""A replica file cut at its end, as a crash after a checkpoint can leave it, without its
sales table's own pages: pages written after them go (a filler table's, written for it)."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path


def cut_after_the_sales(db: Path, pages: int) -> None:
    """Truncate `db` by its last `pages` pages, none of them local_orders' (a filler table is
    written after the sales first, so that pages other than theirs end the file)."""
    with closing(sqlite3.connect(db)) as connection:
        [(page_size,)] = connection.execute("PRAGMA page_size").fetchall()
        connection.execute("CREATE TABLE filler (junk BLOB)")
        for _ in range(pages):
            connection.execute("INSERT INTO filler VALUES (zeroblob(?))", (page_size,))
        connection.commit()
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        [(last_sale_page,)] = connection.execute(
            "SELECT MAX(pageno) FROM dbstat WHERE name = 'local_orders'"
        ).fetchall()
    total = os.path.getsize(db) // page_size
    assert total - last_sale_page >= pages, "the sales' pages end the file"
    os.truncate(db, (total - pages) * page_size)
