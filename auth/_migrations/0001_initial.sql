-- Step 1 of the identity store's schema (see auth/_store.py MIGRATIONS).
-- {blob} and {real} stand for the backend's types (BLOB/REAL on SQLite,
-- BYTEA/DOUBLE PRECISION on PostgreSQL). Released: never edit, append a step.

CREATE TABLE IF NOT EXISTS users (
        id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, display_name TEXT NOT NULL,
        roles TEXT NOT NULL, status TEXT NOT NULL, locale TEXT NOT NULL,
        created_at {real} NOT NULL);

CREATE TABLE IF NOT EXISTS credentials (
        id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id), kind TEXT NOT NULL,
        label TEXT NOT NULL, secret {blob} NOT NULL, webauthn_id {blob} UNIQUE,
        sign_count INTEGER NOT NULL DEFAULT 0, aaguid TEXT, uv_capable INTEGER NOT NULL DEFAULT 0,
        backup_eligible INTEGER NOT NULL DEFAULT 0, biometric_attested INTEGER NOT NULL DEFAULT 0,
        approved INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0,
        locked_until {real} NOT NULL DEFAULT 0, disabled INTEGER NOT NULL DEFAULT 0,
        created_at {real} NOT NULL, last_used_at {real});

CREATE TABLE IF NOT EXISTS totp_used_steps (
        credential_id TEXT NOT NULL, step BIGINT NOT NULL, PRIMARY KEY (credential_id, step));

CREATE TABLE IF NOT EXISTS invitations (
        token_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL, created_by TEXT NOT NULL,
        expires_at {real} NOT NULL, used_at {real});

CREATE TABLE IF NOT EXISTS sessions (
        id_hash TEXT PRIMARY KEY, user_id TEXT, state TEXT NOT NULL, csrf TEXT NOT NULL,
        client_ip TEXT, created_at {real} NOT NULL, last_seen {real} NOT NULL,
        auth_time {real}, ended_at {real});

CREATE TABLE IF NOT EXISTS ceremonies (
        session_hash TEXT NOT NULL, purpose TEXT NOT NULL, challenge {blob} NOT NULL,
        expires_at {real} NOT NULL, PRIMARY KEY (session_hash, purpose));

CREATE TABLE IF NOT EXISTS enclaves (
        name TEXT PRIMARY KEY, tier TEXT NOT NULL, display_name TEXT NOT NULL,
        networks TEXT NOT NULL, hub_url TEXT NOT NULL, created_at {real} NOT NULL);

CREATE TABLE IF NOT EXISTS enclave_members (
        enclave TEXT NOT NULL, username TEXT NOT NULL, role TEXT NOT NULL,
        PRIMARY KEY (enclave, username));

CREATE TABLE IF NOT EXISTS oidc_clients (
        client_id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL, redirect_uris TEXT NOT NULL,
        post_logout_redirect_uris TEXT NOT NULL, enclave TEXT, created_at {real} NOT NULL);

CREATE TABLE IF NOT EXISTS auth_codes (
        code_hash TEXT PRIMARY KEY, payload TEXT NOT NULL, expires_at {real} NOT NULL,
        used INTEGER NOT NULL DEFAULT 0);

CREATE TABLE IF NOT EXISTS access_tokens (
        token_hash TEXT PRIMARY KEY, payload TEXT NOT NULL, expires_at {real} NOT NULL);

CREATE TABLE IF NOT EXISTS ip_failures (ip TEXT NOT NULL, at {real} NOT NULL);

CREATE TABLE IF NOT EXISTS name_throttle (
        key TEXT PRIMARY KEY, failures INTEGER NOT NULL, locked_until {real} NOT NULL,
        updated_at {real} NOT NULL);

CREATE INDEX IF NOT EXISTS ip_failures_ip_at ON ip_failures (ip, at);

CREATE TABLE IF NOT EXISTS signing_keys (
        kid TEXT PRIMARY KEY, sealed {blob} NOT NULL, created_at {real} NOT NULL,
        retired_at {real});
