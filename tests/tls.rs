//! TLS on the gRPC ports (`rpc.tls`), with real processes and certificates made at test time
//! (rcgen, into a temporary folder; none are committed).
//!
//! - `grpcio_calls_a_tls_coordinator`: grpcio (Python), trusting only the test CA, calls
//!   `grpc.health.v1.Health/Check` and `GetTenant` (answered: NOT_FOUND) on a coordinator whose
//!   client port has TLS, on both HTTP/2 layers (`rpc.http2: native` and `h2`); so do our own
//!   channel with TLS, on both client layers, and the `pairdb` CLI with `--tls-ca` (without it,
//!   it is refused).
//! - `plaintext_clients_are_refused_on_a_tls_port`: our channel without TLS (both layers) and
//!   grpcio's insecure channel get no service from a TLS coordinator, and
//!   `pairdb_rpc_tls_handshake_failures_total` counts them.
//! - `coordinators_reach_storage_nodes_over_mutual_tls`: storage nodes that require client
//!   certificates (`rpc.tls.client_ca_file`) serve coordinators that present one
//!   (`rpc.tls.storage_*`): CreateTenant, write and read through the coordinator, one node and
//!   coordinator per HTTP/2 layer (the h2 one checks `storage_server_name`). A client without a
//!   certificate, with one from another CA, or without TLS is refused by the storage node.
//! - `certificates_are_read_again_on_sighup`: after SIGHUP, a coordinator serves new connections
//!   with the certificate now in its files; a broken file leaves the old one in use.
//! - `a_silent_client_is_dropped_after_the_handshake_timeout`: a TCP client that sends nothing
//!   is closed after the 10 s handshake timeout, and counted.
//! - `a_bad_tls_file_stops_the_start`: a coordinator whose key file is no PEM refuses to start
//!   and names `rpc.tls.key_file`.

mod common;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use bytes::Bytes;
use common::{
    coordinator_path, output_with_timeout, repo_root, require_python_grpc, run_local, storage_path,
    CoordinatorOptions, CoordinatorProcess, StorageProcess, CALL_TIMEOUT,
};
use pairdb::{
    config::TlsSection,
    proto::{coordinator as api, health, storage as pb},
    rpc::{client::Http2Impl, tls::ClientTls, Channel, ClientConfig, Code, Status},
};

fn tempdir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("pairdb-tls-{name}-")).tempdir().expect("tempdir")
}

/// The server name in every server certificate, besides 127.0.0.1 and localhost.
const STORAGE_NAME: &str = "storage.pairdb.test";

/// A test PKI: a CA, a server certificate (127.0.0.1, localhost, [`STORAGE_NAME`]) and a client
/// certificate it signed, and a client certificate from another CA.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    rogue_cert: PathBuf,
    rogue_key: PathBuf,
}

fn make_ca(name: &str) -> (rcgen::Certificate, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    (cert, rcgen::Issuer::new(params, key))
}

fn make_leaf(
    issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
    names: &[&str],
) -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .unwrap();
    (params.signed_by(&key, issuer).unwrap(), key)
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let write = |name: &str, text: String| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let (ca, issuer) = make_ca("pairdb test CA");
        let (server, server_key) = make_leaf(&issuer, &["127.0.0.1", "localhost", STORAGE_NAME]);
        let (client, client_key) = make_leaf(&issuer, &["coordinator.pairdb.test"]);
        let (_, rogue_issuer) = make_ca("another CA");
        let (rogue, rogue_key) = make_leaf(&rogue_issuer, &["coordinator.pairdb.test"]);
        Pki {
            ca: write("ca.pem", ca.pem()),
            server_cert: write("server.pem", server.pem()),
            server_key: write("server.key", server_key.serialize_pem()),
            client_cert: write("client.pem", client.pem()),
            client_key: write("client.key", client_key.serialize_pem()),
            rogue_cert: write("rogue.pem", rogue.pem()),
            rogue_key: write("rogue.key", rogue_key.serialize_pem()),
        }
    }

    /// The `rpc:` YAML of a TLS server port on `http2`, requiring client certificates when
    /// `mutual`.
    fn server_yaml(&self, http2: &str, mutual: bool) -> String {
        let mut yaml = format!(
            "rpc:\n  http2: {http2}\n  tls:\n    cert_file: {}\n    key_file: {}\n",
            self.server_cert.display(),
            self.server_key.display()
        );
        if mutual {
            yaml.push_str(&format!("    client_ca_file: {}\n", self.ca.display()));
        }
        yaml
    }

    /// Our client TLS trusting the test CA, presenting `cert` (a certificate and its key).
    fn client(&self, cert: Option<(&Path, &Path)>) -> ClientTls {
        let section = TlsSection {
            storage_ca_file: Some(self.ca.clone()),
            storage_cert_file: cert.map(|(c, _)| c.to_owned()),
            storage_key_file: cert.map(|(_, k)| k.to_owned()),
            ..TlsSection::default()
        };
        ClientTls::new(section.storage_client_config().unwrap().unwrap(), None)
    }
}

fn config(http2: Http2Impl, tls: Option<ClientTls>) -> ClientConfig {
    ClientConfig { http2, tls, connect_timeout: Duration::from_secs(5), ..ClientConfig::default() }
}

/// One Health/Check call on a fresh channel: connecting or the call may fail.
async fn health_check(addr: SocketAddr, config: &ClientConfig) -> Result<i32, Status> {
    let ch = Channel::connect(addr, config).await?;
    let r: health::HealthCheckResponse = ch
        .unary(
            "/grpc.health.v1.Health/Check",
            &health::HealthCheckRequest::default(),
            Some(CALL_TIMEOUT),
        )
        .await?;
    Ok(r.status)
}

fn scrape(admin: SocketAddr) -> String {
    let (status, text) = pairdb::admin::get(admin, "/metrics", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("GET /metrics on {admin}: {e}"));
    assert_eq!(status, 200, "/metrics answered {status}");
    text
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn failures(admin: SocketAddr) -> f64 {
    metric(&scrape(admin), "pairdb_rpc_tls_handshake_failures_total")
}

fn coordinator(
    dir: &Path,
    name: &str,
    nodes: Vec<(String, SocketAddr)>,
    yaml: &str,
) -> CoordinatorProcess {
    CoordinatorProcess::start(
        &dir.join(name),
        &CoordinatorOptions { node_id: name, cores: 1, storage_nodes: nodes, config_yaml: yaml },
    )
}

/// grpcio against `addr`: with `ca`, a secure channel trusting only it; without, an insecure
/// channel. Prints `health=<status>` and `get_tenant=<code>`; exits 0 when both calls answered.
const GRPCIO_SCRIPT: &str = r#"
import sys, grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
addr, ca = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
if ca:
    creds = grpc.ssl_channel_credentials(root_certificates=open(ca, 'rb').read())
    channel = grpc.secure_channel(addr, creds)
else:
    channel = grpc.insecure_channel(addr)
try:
    r = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    print("health=%s" % health_pb2.HealthCheckResponse.ServingStatus.Name(r.status))
    # GetTenant of a tenant that does not exist, in hand-encoded protobuf (field 1: tenant_id).
    name = b"no-such-tenant"
    get = channel.unary_unary("/pairdb.coordinator.v1.CoordinatorService/GetTenant")
    try:
        get(b"\x0a" + bytes([len(name)]) + name, timeout=10)
        print("get_tenant=OK")
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.UNAVAILABLE:
            raise
        codes = dict(e.trailing_metadata() or ())
        print("get_tenant=%s %s" % (e.code().name, codes.get("pairdb-error-code")))
except grpc.RpcError as e:
    print("failed=%s" % e.code().name)
    sys.exit(3)
"#;

fn grpcio(addr: SocketAddr, ca: Option<&Path>) -> (bool, String) {
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(GRPCIO_SCRIPT).arg(addr.to_string()).current_dir(repo_root());
    if let Some(ca) = ca {
        cmd.arg(ca);
    }
    let out = output_with_timeout(&mut cmd, Duration::from_secs(60));
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn grpcio_calls_a_tls_coordinator() {
    require_python_grpc();
    let tmp = tempdir("grpcio");
    let pki = Pki::new(&tmp.path().join("pki"));
    for layer in ["native", "h2"] {
        let coord = coordinator(
            tmp.path(),
            &format!("tls-{layer}"),
            vec![],
            &pki.server_yaml(layer, false),
        );
        let (ok, out) = grpcio(coord.addr, Some(&pki.ca));
        assert!(ok, "{layer}: grpcio over TLS failed:\n{out}\n{}", coord.log_tail());
        // A coordinator without storage nodes is not ready: the answer is what counts.
        assert!(out.contains("health=NOT_SERVING"), "{layer}: {out}");
        assert!(out.contains("get_tenant=NOT_FOUND TENANT_NOT_FOUND"), "{layer}: {out}");
        // Our own channel with TLS, on both client layers.
        let addr = coord.addr;
        let tls = pki.client(None);
        run_local(move || async move {
            for http2 in [Http2Impl::Native, Http2Impl::H2] {
                health_check(addr, &config(http2, Some(tls.clone())))
                    .await
                    .unwrap_or_else(|e| panic!("{layer}: our {http2:?} TLS client: {e}"));
            }
        });
        assert_eq!(failures(coord.admin), 0.0, "{layer}: no handshake failed");
        // The CLI with --tls-ca (its certificate checked against the host of --addr).
        let cli = |extra: &[&str]| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_pairdb"));
            cmd.args(["tenant", "create", &format!("cli-{layer}"), "--addr", &addr.to_string()])
                .args(extra)
                .env_remove("PAIRDB_TLS_CA");
            output_with_timeout(&mut cmd, Duration::from_secs(30))
        };
        let out = cli(&["--tls-ca", pki.ca.to_str().unwrap()]);
        assert!(out.status.success(), "{layer}: pairdb --tls-ca: {out:?}");
        let out = cli(&[]);
        assert!(!out.status.success(), "{layer}: pairdb without TLS was served: {out:?}");
    }
}

#[test]
fn plaintext_clients_are_refused_on_a_tls_port() {
    require_python_grpc();
    let tmp = tempdir("plain");
    let pki = Pki::new(&tmp.path().join("pki"));
    let coord = coordinator(tmp.path(), "tls-plain", vec![], &pki.server_yaml("native", false));
    assert_eq!(failures(coord.admin), 0.0);
    let addr = coord.addr;
    run_local(move || async move {
        for http2 in [Http2Impl::Native, Http2Impl::H2] {
            let r = health_check(addr, &config(http2, None)).await;
            assert!(r.is_err(), "a plaintext {http2:?} client was served: {r:?}");
        }
    });
    let (ok, out) = grpcio(coord.addr, None);
    assert!(!ok && out.contains("failed=UNAVAILABLE"), "grpcio insecure was served:\n{out}");
    let counted = failures(coord.admin);
    assert!(counted >= 3.0, "three plaintext clients, {counted} handshake failures counted");
    // The port still serves TLS clients.
    let tls = pki.client(None);
    run_local(move || async move {
        health_check(addr, &config(Http2Impl::Native, Some(tls)))
            .await
            .unwrap_or_else(|e| panic!("TLS after plaintext attempts: {e}"));
    });
}

#[test]
fn coordinators_reach_storage_nodes_over_mutual_tls() {
    let tmp = tempdir("mutual");
    let pki = Pki::new(&tmp.path().join("pki"));
    for layer in ["native", "h2"] {
        let id = format!("mtls-s-{layer}");
        let node = StorageProcess::start_configured(
            &tmp.path().join(&id),
            &id,
            1,
            0,
            &pki.server_yaml(layer, true),
        );
        let mut yaml = format!(
            "rpc:\n  http2: {layer}\n  tls:\n    storage_ca_file: {}\n    storage_cert_file: {}\n    \
             storage_key_file: {}\n",
            pki.ca.display(),
            pki.client_cert.display(),
            pki.client_key.display()
        );
        if layer == "h2" {
            yaml.push_str(&format!("    storage_server_name: {STORAGE_NAME}\n"));
        }
        let coord = coordinator(
            tmp.path(),
            &format!("mtls-c-{layer}"),
            vec![(node.node_id.clone(), node.addr)],
            &yaml,
        );
        let coord_addr = coord.addr;
        run_local(move || async move {
            let t = Some(CALL_TIMEOUT);
            let ch = Channel::connect(coord_addr, &ClientConfig::default()).await.unwrap();
            let _: api::CreateTenantResponse = ch
                .unary(
                    &coordinator_path("CreateTenant"),
                    &api::CreateTenantRequest {
                        tenant_id: "acme".into(),
                        replication_factor: 1,
                        ..Default::default()
                    },
                    t,
                )
                .await
                .unwrap_or_else(|e| panic!("{layer}: CreateTenant: {e}"));
            // The coordinator's links may still be connecting: retry the first write briefly.
            let write = api::WriteKeyValueRequest {
                tenant_id: "acme".into(),
                key: "k".into(),
                value: Bytes::from_static(b"over mutual TLS"),
                consistency: api::Consistency::All as i32,
                idempotency_key: "tls-write-1".into(),
                ..Default::default()
            };
            common::eventually(
                &format!("{layer}: a write through mTLS links"),
                Duration::from_secs(20),
                || {
                    let (ch, write) = (ch.clone(), write.clone());
                    async move {
                        ch.unary::<_, api::WriteKeyValueResponse>(
                            &coordinator_path("WriteKeyValue"),
                            &write,
                            t,
                        )
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                    }
                },
            )
            .await;
            let read: api::ReadKeyValueResponse = ch
                .unary(
                    &coordinator_path("ReadKeyValue"),
                    &api::ReadKeyValueRequest {
                        tenant_id: "acme".into(),
                        key: "k".into(),
                        consistency: api::Consistency::All as i32,
                    },
                    t,
                )
                .await
                .unwrap_or_else(|e| panic!("{layer}: read through mTLS links: {e}"));
            assert_eq!(read.value.as_ref(), b"over mutual TLS", "{layer}");
        });

        // Directly at the storage node: only a certificate from the cluster's CA is served.
        let before = failures(node.admin);
        let node_addr = node.addr;
        let anonymous = pki.client(None);
        let rogue = pki.client(Some((&pki.rogue_cert, &pki.rogue_key)));
        let trusted = pki.client(Some((&pki.client_cert, &pki.client_key)));
        run_local(move || async move {
            let read = pb::ReadRequest { tenant_id: "acme".into(), key: "k".into() };
            for (what, tls) in [
                ("no certificate", Some(anonymous)),
                ("another CA", Some(rogue)),
                ("plaintext", None),
            ] {
                for http2 in [Http2Impl::Native, Http2Impl::H2] {
                    let r = async {
                        let ch = Channel::connect(node_addr, &config(http2, tls.clone())).await?;
                        ch.unary::<_, pb::ReadResponse>(
                            &storage_path("Read"),
                            &read,
                            Some(CALL_TIMEOUT),
                        )
                        .await
                    }
                    .await;
                    let e = r.expect_err(&format!(
                        "{layer}: a client with {what} ({http2:?}) was served"
                    ));
                    assert_ne!(e.code, Code::OK);
                }
            }
            let ch = Channel::connect(node_addr, &config(Http2Impl::Native, Some(trusted)))
                .await
                .unwrap();
            let r: pb::ReadResponse =
                ch.unary(&storage_path("Read"), &read, Some(CALL_TIMEOUT)).await.unwrap_or_else(
                    |e| panic!("{layer}: a client with the cluster's certificate: {e}"),
                );
            assert_eq!(r.version.iter().count(), 1, "{layer}: {r:?}");
        });
        let refused = failures(node.admin) - before;
        assert!(
            refused >= 6.0,
            "{layer}: six refused clients, {refused} handshake failures counted"
        );
    }
}

#[test]
fn a_bad_tls_file_stops_the_start() {
    let tmp = tempdir("bad");
    let pki = Pki::new(&tmp.path().join("pki"));
    let garbage = tmp.path().join("garbage.key");
    std::fs::write(&garbage, "not a key\n").unwrap();
    let config = tmp.path().join("coordinator.yaml");
    std::fs::write(
        &config,
        format!(
            "rpc:\n  tls:\n    cert_file: {}\n    key_file: {}\n",
            pki.server_cert.display(),
            garbage.display()
        ),
    )
    .unwrap();
    let out = output_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_pairdb"))
            .args(["coordinator", "--port", "0", "--admin-port", "0", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(tmp.path().join("meta")),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with a bad key file: {stderr}");
    assert!(stderr.contains("rpc.tls.key_file"), "the error names no key: {stderr}");
}

/// Waits until `log` has `n` lines about a SIGHUP reload; returns the last one.
fn wait_reloads(log: &Path, n: usize) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> =
            text.lines().filter(|l| l.contains("TLS certificates read again")).collect();
        if lines.len() >= n {
            return lines[n - 1].to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "no reload line {n} in:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn certificates_are_read_again_on_sighup() {
    let tmp = tempdir("reload");
    let old = Pki::new(&tmp.path().join("old"));
    let new = Pki::new(&tmp.path().join("new"));
    let (cert, key) = (tmp.path().join("live.pem"), tmp.path().join("live.key"));
    std::fs::copy(&old.server_cert, &cert).unwrap();
    std::fs::copy(&old.server_key, &key).unwrap();
    let yaml = format!(
        "rpc:\n  tls:\n    cert_file: {}\n    key_file: {}\n",
        cert.display(),
        key.display()
    );
    let coord = coordinator(tmp.path(), "tls-reload", vec![], &yaml);
    let log = tmp.path().join("tls-reload").join("coordinator.log");
    let addr = coord.addr;
    let trusts = |pki: &Pki| {
        let tls = pki.client(None);
        run_local(move || async move {
            health_check(addr, &config(Http2Impl::Native, Some(tls))).await.is_ok()
        })
    };
    assert!(trusts(&old) && !trusts(&new), "before any reload");
    let sighup = || {
        // SAFETY: kill(2) on our own child, which its guard has not reaped.
        assert_eq!(unsafe { libc::kill(coord.pid(), libc::SIGHUP) }, 0);
    };

    // A broken key file: the reload fails, the old certificate stays in use.
    std::fs::write(&key, "not a key\n").unwrap();
    sighup();
    let line = wait_reloads(&log, 1);
    assert!(line.contains("failed=1"), "{line}");
    assert!(std::fs::read_to_string(&log).unwrap().contains("rpc.tls.key_file"));
    assert!(trusts(&old) && !trusts(&new), "after a failed reload");

    // The renewed certificate (another CA here, to tell them apart) serves new connections.
    std::fs::copy(&new.server_cert, &cert).unwrap();
    std::fs::copy(&new.server_key, &key).unwrap();
    sighup();
    let line = wait_reloads(&log, 2);
    assert!(line.contains("reloaded=1") && line.contains("failed=0"), "{line}");
    assert!(trusts(&new) && !trusts(&old), "after the reload");
    let mut coord = coord;
    coord.assert_running();
}

#[test]
fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    let tmp = tempdir("silent");
    let pki = Pki::new(&tmp.path().join("pki"));
    let coord = coordinator(tmp.path(), "tls-silent", vec![], &pki.server_yaml("native", false));
    let started = std::time::Instant::now();
    let mut silent = std::net::TcpStream::connect(coord.addr).unwrap();
    // Sends nothing; the server closes the connection once the 10 s handshake timeout passed.
    let got = common::read_until_closed(&mut silent, Duration::from_secs(30));
    let waited = started.elapsed();
    assert!(got.is_empty(), "the server sent {} bytes to a silent client", got.len());
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(25),
        "closed after {waited:?}"
    );
    assert_eq!(failures(coord.admin), 1.0, "the timeout counts as a handshake failure");
}
