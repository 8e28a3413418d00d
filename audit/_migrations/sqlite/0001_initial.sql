-- The append-only audit log in SQLite.
-- Entries: the leaf bytes (exact, canonical JSON) plus values derived from them for
-- lookups; `enclave audit verify` recomputes every derived value from the leaf.
CREATE TABLE audit_entries (
  idx       INTEGER PRIMARY KEY,          -- the durable index, 0-based, contiguous
  leaf_hash BLOB    NOT NULL,             -- SHA-256(0x00 || leaf)
  event_id  TEXT    NOT NULL UNIQUE,      -- the sender's event id (idempotent retries)
  time_ns   INTEGER NOT NULL,             -- sender's time, ns since the epoch (for range queries)
  source    TEXT    NOT NULL,
  actor     TEXT    NOT NULL,
  action    TEXT    NOT NULL,
  enclave   TEXT,
  outcome   TEXT    NOT NULL,
  leaf      BLOB    NOT NULL
);

-- Lookup index for officers' queries, written at integration (not on the append path,
-- which keeps sequencing fast): one row per integrated entry, values from its leaf.
CREATE TABLE audit_index (
  idx     INTEGER PRIMARY KEY,
  time_ns INTEGER NOT NULL,
  source  TEXT    NOT NULL,
  actor   TEXT    NOT NULL,
  action  TEXT    NOT NULL,
  enclave TEXT,
  outcome TEXT    NOT NULL
);
CREATE INDEX audit_index_actor   ON audit_index (actor, time_ns, idx);
CREATE INDEX audit_index_enclave ON audit_index (enclave, time_ns, idx);
CREATE INDEX audit_index_action  ON audit_index (action, time_ns, idx);
CREATE INDEX audit_index_time    ON audit_index (time_ns, idx);

-- Full tiles of the Merkle tree (height 8, C2SP tlog-tiles layout): tile (level L,
-- index N) holds the 256 hashes of tree level 8L, nodes N*256 .. N*256+255; root is
-- the hash of level 8L+8 node N. Written once when complete, never changed.
CREATE TABLE audit_tiles (
  level  INTEGER NOT NULL,
  idx    INTEGER NOT NULL,
  root   BLOB    NOT NULL,
  hashes BLOB    NOT NULL,
  PRIMARY KEY (level, idx)
);

-- Every tree head the log integrated (size, root): one row per integration step.
CREATE TABLE audit_tree_heads (
  size    INTEGER PRIMARY KEY,
  root    BLOB    NOT NULL,
  created TEXT    NOT NULL
);

-- Every checkpoint the log signed, exact note text.
CREATE TABLE audit_checkpoints (
  seq     INTEGER PRIMARY KEY,
  size    INTEGER NOT NULL,
  root    BLOB    NOT NULL,
  note    TEXT    NOT NULL,
  created TEXT    NOT NULL
);

-- Verifier keys that have signed checkpoints of this log (key rotation keeps old ones).
CREATE TABLE audit_keys (
  vkey  TEXT PRIMARY KEY,
  added TEXT NOT NULL
);

-- Append-only: refuse UPDATE and DELETE on every table of the record.
-- (SQLite has no TRUNCATE; `DELETE FROM t` without WHERE fires these triggers too.)
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: UPDATE refused on audit_entries'); END;
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: DELETE refused on audit_entries'); END;
CREATE TRIGGER audit_index_no_update BEFORE UPDATE ON audit_index
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: UPDATE refused on audit_index'); END;
CREATE TRIGGER audit_index_no_delete BEFORE DELETE ON audit_index
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: DELETE refused on audit_index'); END;
CREATE TRIGGER audit_tiles_no_update BEFORE UPDATE ON audit_tiles
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: UPDATE refused on audit_tiles'); END;
CREATE TRIGGER audit_tiles_no_delete BEFORE DELETE ON audit_tiles
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: DELETE refused on audit_tiles'); END;
CREATE TRIGGER audit_tree_heads_no_update BEFORE UPDATE ON audit_tree_heads
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: UPDATE refused on audit_tree_heads'); END;
CREATE TRIGGER audit_tree_heads_no_delete BEFORE DELETE ON audit_tree_heads
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: DELETE refused on audit_tree_heads'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: UPDATE refused on audit_checkpoints'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: DELETE refused on audit_checkpoints'); END;
CREATE TRIGGER audit_keys_no_update BEFORE UPDATE ON audit_keys
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: UPDATE refused on audit_keys'); END;
CREATE TRIGGER audit_keys_no_delete BEFORE DELETE ON audit_keys
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: DELETE refused on audit_keys'); END;
