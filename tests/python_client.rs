//! The Python client package (`clients/python`, `pairdb_client`) against a real cluster: starts
//! `pairdb dev` (a coordinator and three storage nodes, one core) on free loopback ports and runs
//! `python3 -m pytest clients/python/tests` with the coordinator's address in `PAIRDB_ADDR`.
//!
//! The tests import the package from the working tree (`PYTHONPATH=clients/python`), so an
//! older installed copy cannot stand in for the code under test; `scripts/test` also
//! pip-installs the package, which checks that it installs. A missing python3, grpcio or pytest
//! fails this test with what to run, and a skipped Python test fails it too: a skipped client
//! test is a passing build that proves nothing.

mod common;

use std::{
    os::unix::process::CommandExt as _,
    process::Command,
    time::{Duration, Instant},
};

use common::{output_with_timeout, repo_root, require_python_grpc, spawn_until_line};

/// How long `pairdb dev` may take to print its banner: a debug build on a loaded 2-core machine.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the whole pytest run may take (it takes seconds; this only stops a hang).
const PYTEST_TIMEOUT: Duration = Duration::from_secs(300);

/// The bootstrap admin token of the secured cluster.
const SECURED_TOKEN: &str = "python-client-bootstrap-token-0123456789abcdef";

/// A CA and a server certificate for 127.0.0.1 it signed, written to `dir`: the files of the
/// CA certificate, the server certificate and its key.
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
    let files = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&files.0, ca.pem()).unwrap();
    std::fs::write(&files.1, leaf.pem()).unwrap();
    std::fs::write(&files.2, key.serialize_pem()).unwrap();
    let show = |p: std::path::PathBuf| p.display().to_string();
    (show(files.0), show(files.1), show(files.2))
}

/// Starts `pairdb dev` (one core, free ports) with `env`, logging to `log_path`; returns the
/// child and the coordinator's address.
fn start_dev(
    data_dir: &std::path::Path,
    log_path: &std::path::Path,
    env: &[(&str, &str)],
) -> (common::ChildGuard, String) {
    let log = std::fs::File::create(log_path).expect("creating the dev log");
    let mut dev = Command::new(env!("CARGO_BIN_EXE_pairdb"));
    dev.arg("dev")
        .arg("--data-dir")
        .arg(data_dir)
        // Port 0: the coordinator takes a free port and the storage nodes the next free ones.
        .args(["--port", "0", "--cores", "1"])
        .env("PAIRDB_LOG", std::env::var("PAIRDB_LOG").unwrap_or_else(|_| "warn".into()))
        .stderr(log);
    for (name, value) in env {
        dev.env(name, value);
    }
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        dev.pre_exec(|| {
            // The cluster dies with this test even if no destructor runs.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let (child, rest) = spawn_until_line(&mut dev, "pairdb dev: coordinator on ", READY_TIMEOUT);
    (child, rest.split_whitespace().next().expect("an address after the banner").to_owned())
}

#[test]
fn python_client_against_dev_cluster() {
    require_python_grpc();
    require_pytest();
    let tmp = tempfile::tempdir().expect("tempdir");
    let log_path = tmp.path().join("dev.log");
    let (_cluster, addr) = start_dev(&tmp.path().join("data"), &log_path, &[]);
    // A second cluster that requires tokens and serves TLS, for the client's token and TLS
    // tests (test_auth.py).
    let (ca, cert, key) = pki(tmp.path());
    let secured_log = tmp.path().join("secured.log");
    let (_secured, secured_addr) = start_dev(
        &tmp.path().join("secured"),
        &secured_log,
        &[
            ("PAIRDB_AUTH_MODE", "required"),
            ("PAIRDB_AUTH_BOOTSTRAP_TOKEN", SECURED_TOKEN),
            ("PAIRDB_DEV_TLS_CERT", &cert),
            ("PAIRDB_DEV_TLS_KEY", &key),
        ],
    );

    let root = repo_root();
    let started = Instant::now();
    let out = output_with_timeout(
        Command::new("python3")
            .args(["-m", "pytest", "clients/python/tests", "-q", "-rs", "-p", "no:cacheprovider"])
            .current_dir(&root)
            .env("PAIRDB_ADDR", &addr)
            .env("PAIRDB_SECURED_ADDR", &secured_addr)
            .env("PAIRDB_SECURED_TOKEN", SECURED_TOKEN)
            .env("PAIRDB_SECURED_CA", &ca)
            .env("PYTHONPATH", root.join("clients/python"))
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        PYTEST_TIMEOUT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "pytest ({:?}) stdout:\n{stdout}\nstderr:\n{stderr}\npairdb dev log (tail):\n{}",
            started.elapsed(),
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    };
    assert!(out.status.success(), "the Python client tests failed ({}):\n{}", out.status, report());
    let summary = stdout.lines().rev().find(|l| l.contains(" passed")).unwrap_or_default();
    assert!(!summary.is_empty(), "no pytest summary line:\n{}", report());
    assert!(
        !summary.contains("skipped") && !summary.contains("deselected"),
        "Python client tests were skipped ({summary}):\n{}",
        report()
    );
    println!("python client tests: {summary}");
}

/// Checks that pytest is importable; panics (never skips) with what to run when it is not.
fn require_pytest() {
    let out = Command::new("python3").args(["-c", "import pytest"]).output();
    let hint = "the Python client tests need pytest (tests/python/requirements.txt): run \
                scripts/test, or `python3 -m pip install -r tests/python/requirements.txt`";
    match out {
        Err(e) => panic!("cannot run python3 ({e}); {hint}"),
        Ok(out) if !out.status.success() => {
            panic!("{hint}\npython3 said:\n{}", String::from_utf8_lossy(&out.stderr))
        }
        Ok(_) => {}
    }
}
