//! Logs a person can read where they land: text logs carry ANSI colour escapes only when stderr
//! is a terminal.
//!
//! - `server_logs_in_files_are_plain_text`: a storage node and a coordinator with their stderr
//!   appended to files (the harness's usual setup) write log lines there, none with `ESC [`.
//! - `dev_log_in_a_file_is_plain_text`: the same for `pairdb dev`, through a clean shutdown.
//! - `a_terminal_gets_colour_unless_no_color`: the same `pairdb dev` with stderr on a
//!   pseudo-terminal is coloured (so the check above is not vacuous), and not with `NO_COLOR=1`.

mod common;

use std::{
    io::{BufRead, BufReader, Read},
    os::{
        fd::{FromRawFd, OwnedFd},
        unix::process::CommandExt,
    },
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use common::{CoordinatorOptions, CoordinatorProcess, StorageProcess, READY_TIMEOUT};

const ESC: &str = "\x1b[";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn assert_plain(what: &str, log: &str) {
    assert!(log.contains(" INFO "), "{what}: no INFO line in:\n{log}");
    assert!(!log.contains(ESC), "{what}: ANSI escapes in a log file:\n{log:?}");
}

#[test]
fn server_logs_in_files_are_plain_text() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let storage = StorageProcess::start(&tmp.path().join("s1"), "log-s1");
    let mut coordinator = CoordinatorProcess::start(
        &tmp.path().join("coordinator"),
        &CoordinatorOptions {
            node_id: "log-coord",
            cores: 1,
            storage_nodes: vec![(storage.node_id.clone(), storage.addr)],
            config_yaml: "",
        },
    );
    // A clean shutdown logs too.
    assert!(storage.terminate(Duration::from_secs(20)).success());
    coordinator.sigterm();
    coordinator.wait_exit(Duration::from_secs(20));
    assert_plain("storage", &read(&tmp.path().join("s1/storage.log")));
    assert_plain("coordinator", &read(&tmp.path().join("coordinator/coordinator.log")));
}

/// Runs `pairdb dev` on free ports with `stderr`, waits for its banner, SIGTERMs it and waits
/// for it to exit.
fn run_dev(dir: &Path, stderr: Stdio, env: &[(&str, &str)]) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pairdb"));
    cmd.arg("dev")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--port", "0", "--cores", "1"])
        .env("PAIRDB_LOG", "info")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = common::ChildGuard(cmd.spawn().expect("spawning pairdb dev"));
    let stdout = child.0.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(first)) = lines.next() {
            let _ = tx.send(first);
        }
        for _ in lines {}
    });
    let banner = rx.recv_timeout(READY_TIMEOUT).expect("pairdb dev's banner");
    assert!(banner.starts_with("pairdb dev: coordinator on "), "{banner}");
    let pid = libc::pid_t::try_from(child.0.id()).expect("pid");
    // SAFETY: kill(2) on our own, unreaped child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.0.try_wait().expect("try_wait").is_none() {
        assert!(Instant::now() < deadline, "pairdb dev ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn dev_log_in_a_file_is_plain_text() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = tmp.path().join("dev.log");
    let file = std::fs::File::create(&log).expect("creating the log");
    run_dev(tmp.path(), file.into(), &[]);
    let text = read(&log);
    assert!(text.contains("created tenant default"), "{text}");
    assert_plain("pairdb dev", &text);
}

/// Runs `pairdb dev` with stderr on a fresh pseudo-terminal and returns what it wrote there.
fn dev_on_a_terminal(dir: &Path, env: &[(&str, &str)]) -> String {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two fds into the given ints; the other arguments may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just opened by openpty and are owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut master = std::fs::File::from(master);
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        // Ends with EIO once every copy of the slave side is closed.
        let mut buf = [0u8; 4096];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    });
    // `slave` moves into the command, which drops it once the child has it.
    run_dev(dir, slave.into(), env);
    reader.join().expect("pty reader")
}

#[test]
fn a_terminal_gets_colour_unless_no_color() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let coloured = dev_on_a_terminal(&tmp.path().join("colour"), &[]);
    assert!(coloured.contains("created tenant default"), "{coloured}");
    assert!(coloured.contains(ESC), "no colour on a terminal:\n{coloured:?}");
    let plain = dev_on_a_terminal(&tmp.path().join("plain"), &[("NO_COLOR", "1")]);
    assert!(plain.contains("created tenant default"), "{plain}");
    assert!(!plain.contains(ESC), "colour despite NO_COLOR:\n{plain:?}");
}
