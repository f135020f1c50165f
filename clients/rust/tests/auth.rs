//! The client's token and TLS against a `pairdb dev` cluster that requires authentication
//! (`PAIRDB_AUTH_MODE=required` with a bootstrap admin token) and serves TLS (`--tls-cert`, a
//! certificate for 127.0.0.1 from a CA made here): a plaintext client gets nothing, calls
//! without a token are refused, the admin token manages tokens, tenant tokens keep to their
//! tenant and role.

mod common;

use std::time::Duration;

use common::Dev;
use pairdb_client::{Client, Error};

const TIMEOUT: Duration = Duration::from_secs(20);
const BOOTSTRAP: &str = "client-test-bootstrap-token-0123456789abcdef";

/// A CA and a server certificate for 127.0.0.1 it signed: (CA PEM, certificate file, key file).
fn pki(dir: &std::path::Path) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    // Distinct names: a leaf whose issuer equals its subject looks self-signed to BoringSSL.
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "pairdb test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf_params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    leaf_params.distinguished_name.push(rcgen::DnType::CommonName, "pairdb dev");
    let leaf = leaf_params.signed_by(&key, &issuer).unwrap();
    let (cert_file, key_file) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&cert_file, leaf.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    (ca.pem(), cert_file.display().to_string(), key_file.display().to_string())
}

fn client(dev: &Dev, ca: &str, token: Option<&str>) -> Client {
    let mut builder =
        Client::builder().address(&dev.addr).timeout(TIMEOUT).tls_ca_pem(ca.as_bytes());
    if let Some(token) = token {
        builder = builder.token(token);
    }
    builder.build().expect("client")
}

#[tokio::test]
async fn tokens_authenticate_and_scope_calls_over_tls() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = pki(certs.path());
    let dev = Dev::start_with(
        &["--tls-cert", &cert, "--tls-key", &key],
        &[("PAIRDB_AUTH_MODE", "required"), ("PAIRDB_AUTH_BOOTSTRAP_TOKEN", BOOTSTRAP)],
    );

    // Plaintext to the TLS port: no answer, whatever the token.
    let plaintext = Client::builder()
        .address(&dev.addr)
        .timeout(Duration::from_secs(5))
        .max_attempts(1)
        .token(BOOTSTRAP)
        .build()
        .expect("client");
    let err = plaintext.get_tenant("default").await.expect_err("plaintext on a TLS port");
    assert!(matches!(err, Error::Transport { .. } | Error::DeadlineExceeded { .. }), "{err:?}");

    // No token, or a made-up one: UNAUTHENTICATED, mapped to Error::Unauthorized.
    let anonymous = client(&dev, &ca, None);
    let err = anonymous.put("k", "v").await.expect_err("a call without a token");
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    let forged = client(&dev, &ca, Some("pdb_0123456789abcdef_0123456789abcdef0123456789abcdef"));
    let err = forged.get_tenant("default").await.expect_err("an unknown token");
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");

    // The bootstrap token is an admin: it creates a tenant and tokens for it.
    let admin = client(&dev, &ca, Some(BOOTSTRAP));
    admin.create_tenant("orders", 3).await.expect("CreateTenant as admin");
    let rw = admin.create_token("orders", "tenant-rw").await.expect("CreateToken rw");
    assert!(rw.token.starts_with("pdb_"), "{}", rw.token.len());
    let ro = admin.create_token("orders", "tenant-ro").await.expect("CreateToken ro");
    let listed = admin.list_tokens("orders").await.expect("ListTokens");
    assert_eq!(listed.tokens.len(), 2, "{listed:?}");

    // A tenant-rw token reads and writes its tenant, and nothing else.
    let orders = client(&dev, &ca, Some(&rw.token)).with_tenant("orders");
    orders.put("o-1", "paid").await.expect("put with the tenant's token");
    assert_eq!(orders.get("o-1").await.expect("get").value, b"paid");
    let err = orders.with_tenant("default").get("o-1").await.expect_err("another tenant");
    assert!(matches!(err, Error::Forbidden { .. }), "{err:?}");
    let err = orders.create_tenant("mine", 1).await.expect_err("an admin call");
    assert!(matches!(err, Error::Forbidden { .. }), "{err:?}");

    // A tenant-ro token reads but cannot write.
    let reader = client(&dev, &ca, Some(&ro.token)).with_tenant("orders");
    assert_eq!(reader.get("o-1").await.expect("read-only get").value, b"paid");
    let err = reader.put("o-1", "refunded").await.expect_err("a read-only write");
    assert!(matches!(err, Error::Forbidden { .. }), "{err:?}");

    // Revoked: refused from then on (this coordinator revoked it, so at once).
    let info = admin.revoke_token(rw.info.expect("info").token_id).await.expect("RevokeToken");
    assert_ne!(info.info.expect("info").revoked_at_us, 0);
    let err = orders.get("o-1").await.expect_err("a revoked token");
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
}
