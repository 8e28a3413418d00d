"""Benchmark: tier decisions per second and catalog load time.

Run with `make bench`, or `.venv/bin/python -P benchmarks/policies.py` (-P: the
script's folder must not shadow the `policies` package).

Every login and every hub entry runs ``evaluate_login`` / ``evaluate_claims``;
every process loads the catalog once. Last line: one JSON object.
"""

from __future__ import annotations

import json
import statistics
import time

from policies import FactorKind, VerifiedFactor, evaluate_claims, evaluate_login, load_catalog

N = 50_000


def main() -> None:
    loads = []
    for _ in range(20):
        t0 = time.perf_counter()
        catalog = load_catalog()
        loads.append(time.perf_counter() - t0)
    tier = catalog.get("tommo-strong")
    factors = [
        VerifiedFactor(FactorKind.PASSWORD),
        VerifiedFactor(
            FactorKind.WEBAUTHN,
            user_verified=True,
            biometric_attested=True,
            biometric_amr="fpt",
            approved=True,
        ),
    ]
    t0 = time.perf_counter()
    for _ in range(N):
        d = evaluate_login(tier=tier, factors=factors)
    login_rate = N / (time.perf_counter() - t0)
    assert d.allowed
    t0 = time.perf_counter()
    for _ in range(N):
        c = evaluate_claims(
            tier=tier,
            enclave_factors=["knowledge", "possession", "biometric"],
            amr=d.amr,
            acr=d.acr,
            approved=d.approved,
        )
    claims_rate = N / (time.perf_counter() - t0)
    assert c.allowed
    print(
        json.dumps(
            {
                "benchmark": "policies",
                "evaluate_login_per_s": round(login_rate),
                "evaluate_claims_per_s": round(claims_rate),
                "catalog_load_ms_median": round(statistics.median(loads) * 1000, 2),
                "n": N,
                "unit": "decisions/s",
            }
        )
    )


if __name__ == "__main__":
    main()
