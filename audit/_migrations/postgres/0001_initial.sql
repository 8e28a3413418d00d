-- The append-only audit log in PostgreSQL. Run by the owner (`enclave audit migrate`);
-- the application connects as a writer role granted only SELECT and INSERT.
CREATE TABLE audit_entries (
  idx       BIGINT PRIMARY KEY,           -- the durable index, 0-based, contiguous
  leaf_hash BYTEA  NOT NULL,              -- SHA-256(0x00 || leaf)
  event_id  TEXT   NOT NULL UNIQUE,       -- the sender's event id (idempotent retries)
  time_ns   BIGINT NOT NULL,              -- sender's time, ns since the epoch
  source    TEXT   NOT NULL,
  actor     TEXT   NOT NULL,
  action    TEXT   NOT NULL,
  enclave   TEXT,
  outcome   TEXT   NOT NULL,
  leaf      BYTEA  NOT NULL
);

-- Lookup index for officers' queries, written at integration (not on the append path,
-- which keeps sequencing fast): one row per integrated entry, values from its leaf.
CREATE TABLE audit_index (
  idx     BIGINT PRIMARY KEY,
  time_ns BIGINT NOT NULL,
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

CREATE TABLE audit_tiles (
  level  INTEGER NOT NULL,
  idx    BIGINT  NOT NULL,
  root   BYTEA   NOT NULL,
  hashes BYTEA   NOT NULL,
  PRIMARY KEY (level, idx)
);

CREATE TABLE audit_tree_heads (
  size    BIGINT PRIMARY KEY,
  root    BYTEA  NOT NULL,
  created TEXT   NOT NULL
);

CREATE TABLE audit_checkpoints (
  seq     BIGINT PRIMARY KEY,
  size    BIGINT NOT NULL,
  root    BYTEA  NOT NULL,
  note    TEXT   NOT NULL,
  created TEXT   NOT NULL
);

CREATE TABLE audit_keys (
  vkey  TEXT PRIMARY KEY,
  added TEXT NOT NULL
);

-- Append-only, enforced twice: the writer role lacks UPDATE/DELETE/TRUNCATE (granted by
-- `enclave audit migrate --writer ROLE`), and these triggers refuse the same statements
-- for everyone, the owner included. ENABLE ALWAYS makes them fire even with
-- session_replication_role = replica.
CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit log is append-only: % refused on %', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END $$;

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['audit_entries','audit_index','audit_tiles','audit_tree_heads','audit_checkpoints','audit_keys'] LOOP
    EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()', t || '_no_change', t);
    EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()', t || '_no_truncate', t);
    EXECUTE format('ALTER TABLE %I ENABLE ALWAYS TRIGGER %I', t, t || '_no_change');
    EXECUTE format('ALTER TABLE %I ENABLE ALWAYS TRIGGER %I', t, t || '_no_truncate');
    EXECUTE format('REVOKE ALL ON TABLE %I FROM PUBLIC', t);
  END LOOP;
END $$;
