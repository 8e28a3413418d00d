-- Event ids are unique per source and enclave, not across the whole log (issue #12,
-- item 9): a sender that reuses another component's id (a predictable one) no longer
-- suppresses that component's genuine event. NULL enclaves compare equal, as ''
-- (never a valid enclave name). event_id leads, so lookups by id keep an index.
-- SQLite cannot drop a column's UNIQUE constraint: the table is rebuilt with the same
-- rows (DROP TABLE fires no DELETE trigger) and its append-only triggers recreated.
CREATE TABLE audit_entries_scoped (
  idx       INTEGER PRIMARY KEY,          -- the durable index, 0-based, contiguous
  leaf_hash BLOB    NOT NULL,             -- SHA-256(0x00 || leaf)
  event_id  TEXT    NOT NULL,             -- the sender's event id (idempotent retries)
  time_ns   INTEGER NOT NULL,             -- sender's time, ns since the epoch (for range queries)
  source    TEXT    NOT NULL,
  actor     TEXT    NOT NULL,
  action    TEXT    NOT NULL,
  enclave   TEXT,
  outcome   TEXT    NOT NULL,
  leaf      BLOB    NOT NULL
);
INSERT INTO audit_entries_scoped
  (idx, leaf_hash, event_id, time_ns, source, actor, action, enclave, outcome, leaf)
  SELECT idx, leaf_hash, event_id, time_ns, source, actor, action, enclave, outcome, leaf
  FROM audit_entries ORDER BY idx;
DROP TABLE audit_entries;
ALTER TABLE audit_entries_scoped RENAME TO audit_entries;
CREATE UNIQUE INDEX audit_entries_event_id_scoped
  ON audit_entries (event_id, source, COALESCE(enclave, ''));
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: UPDATE refused on audit_entries'); END;
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: DELETE refused on audit_entries'); END;
