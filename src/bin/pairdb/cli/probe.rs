//! `pairdb probe`: a built-in HTTP GET of an admin URL, for container health checks.

use clap::Args;

#[derive(Args)]
pub struct ProbeArgs {
    /// The URL to GET: http://HOST:PORT/PATH (the admin port's /health/ready or /health/live).
    #[arg(long, env = "PAIRDB_PROBE_URL", default_value = "http://127.0.0.1:9090/health/ready")]
    url: String,
    /// How long to wait for the answer, milliseconds.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
}

/// `pairdb probe`: 0 when the URL answers 200, 1 otherwise (with the reason on stderr).
pub fn run(args: &ProbeArgs) -> i32 {
    let parsed = args.url.strip_prefix("http://").and_then(|rest| {
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        use std::net::ToSocketAddrs as _;
        let addr = authority.to_socket_addrs().ok()?.next()?;
        Some((addr, if path.is_empty() { "/" } else { path }))
    });
    let Some((addr, path)) = parsed else {
        eprintln!("cannot use {:?}: expected http://HOST:PORT/PATH", args.url);
        return 2;
    };
    let timeout = std::time::Duration::from_millis(args.timeout_ms);
    match pairdb::admin::get(addr, path, timeout) {
        Ok((200, body)) => {
            print!("{body}");
            0
        }
        Ok((status, body)) => {
            eprintln!("{} answered {status}: {}", args.url, body.trim_end());
            1
        }
        Err(e) => {
            eprintln!("{}: {e}", args.url);
            1
        }
    }
}
