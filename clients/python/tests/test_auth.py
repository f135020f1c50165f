"""Tokens and TLS against a cluster with ``auth.mode: required`` that serves TLS: plaintext gets
nothing, no token is refused, the admin token manages tokens, tenant tokens keep to their tenant
and role, a revoked token is refused."""

import uuid

import pytest

from pairdb_client import Client, Forbidden, PairDBError, RateLimited, Unauthorized


def test_tokens_authenticate_and_scope_calls_over_tls(secured):
    addr, bootstrap, ca = secured

    def connect(token=None, **kw):
        return Client([addr], timeout=10.0, token=token, root_certificates=ca, **kw)

    # Plaintext to the TLS port: no answer, even with the admin token.
    with Client([addr], timeout=3.0, retries=0, token=bootstrap) as plaintext:
        with pytest.raises(PairDBError) as refused:
            plaintext.get_tenant("default")
        assert not isinstance(refused.value, (Unauthorized, Forbidden)), refused.value

    with connect(retries=1) as anonymous:
        with pytest.raises(Unauthorized):
            anonymous.put("default", "k", b"v")

    tenant = f"py-{uuid.uuid4().hex[:12]}"
    with connect(bootstrap) as admin:
        admin.create_tenant(tenant, 1)
        rw_token, rw = admin.create_token("tenant-rw", tenant)
        ro_token, _ = admin.create_token("tenant-ro", tenant)
        assert rw_token.startswith("pdb_") and rw.role == "tenant-rw" and rw.tenant_id == tenant
        listed = admin.list_tokens(tenant)
        assert {t.token_id for t in listed} >= {rw.token_id}
        assert all(rw_token not in repr(t) for t in listed)

        with connect(rw_token) as writer:
            writer.put(tenant, "k", b"v1")
            assert writer.get(tenant, "k").value == b"v1"
            with pytest.raises(Forbidden):
                writer.get("default", "k")
            with pytest.raises(Forbidden):
                writer.create_tenant(f"{tenant}-x", 1)

        with connect(ro_token) as reader:
            assert reader.get(tenant, "k").value == b"v1"
            with pytest.raises(Forbidden):
                reader.put(tenant, "k", b"v2")

        revoked = admin.revoke_token(rw.token_id)
        assert revoked.revoked_at_us > 0
        with connect(rw_token, retries=0) as writer:
            with pytest.raises(Unauthorized):
                writer.get(tenant, "k")


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        Client(["127.0.0.1:1"], token="bad token\n")
    with pytest.raises(ValueError):
        Client(["127.0.0.1:1"], private_key=b"k")


def test_rate_limited_tenants_get_a_retry_hint(secured):
    addr, bootstrap, ca = secured
    tenant = f"py-lim-{uuid.uuid4().hex[:8]}"
    with Client([addr], timeout=10.0, token=bootstrap, root_certificates=ca) as admin:
        admin.create_tenant(tenant, 1)
        r = admin.update_tenant_limits(tenant, requests_per_second=5, max_value_bytes=64)
        assert r.limits.requests_per_second == 5 and r.effective_limits.max_value_bytes == 64
        refused = None
        for i in range(40):
            try:
                admin.put(tenant, f"k{i}", b"v")
            except RateLimited as e:
                refused = e
                break
        assert refused is not None, "40 writes at once never hit a 5/s limit"
        assert refused.retry_after_ms is not None and refused.retry_after_ms > 0
        admin.update_tenant_limits(tenant)  # back to the defaults: unlimited
        admin.put(tenant, "after", b"v")
