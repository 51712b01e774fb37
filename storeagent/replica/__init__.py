"""The store's SQLite replica: its tables, the database handle (schema, meta, offsets, the
replicated rows), the local orders repository and the read queries."""
