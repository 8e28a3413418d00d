"""The portal: enrolment, authentication factors, sessions and the OIDC provider.

Called by each enclave's hub (as an OIDC client) and by the controller (admin
API). It must never issue a token whose factors do not meet the enclave's tier.
"""
