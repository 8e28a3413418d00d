-- Step 3: the tier a client that is not an enclave's hub (the audit UI) demands; the
-- portal computes its ID token claims against it and refuses or steps up below it.

ALTER TABLE oidc_clients ADD COLUMN tier TEXT;
