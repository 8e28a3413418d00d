-- Event ids are unique per source and enclave, not across the whole log (issue #12,
-- item 9): a sender that reuses another component's id (a predictable one) no longer
-- suppresses that component's genuine event. NULL enclaves compare equal, as ''
-- (never a valid enclave name). event_id leads, so lookups by id keep an index.
ALTER TABLE audit_entries DROP CONSTRAINT audit_entries_event_id_key;
CREATE UNIQUE INDEX audit_entries_event_id_scoped
  ON audit_entries (event_id, source, COALESCE(enclave, ''));
