//! Parsing what the command line gives: addresses, durations, vector clocks and values.

use std::{
    ffi::OsString,
    io::{self, Read as _},
    path::PathBuf,
    time::Duration,
};

use pairdb::proto::coordinator as api;

use super::Failure;

/// Accepts `HOST:PORT`, `[V6]:PORT` and `http://HOST:PORT[/]`; returns `HOST:PORT`.
pub(super) fn parse_addr(s: &str) -> Result<String, String> {
    if s.starts_with("https://") {
        return Err("write HOST:PORT; for a TLS port add --tls-ca FILE (PAIRDB_TLS_CA)".into());
    }
    let hostport = s.strip_prefix("http://").unwrap_or(s).trim_end_matches('/');
    let (host, port) = hostport.rsplit_once(':').ok_or("expected HOST:PORT")?;
    if host.is_empty() || host.contains('/') {
        return Err("expected HOST:PORT".into());
    }
    port.parse::<u16>().map_err(|e| format!("bad port {port:?}: {e}"))?;
    Ok(hostport.to_owned())
}

/// `5s`, `500ms`, `2m`, `100us`, or a bare number of seconds.
pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number.parse().map_err(|_| format!("expected a duration like 5s, got {s:?}"))?;
    let seconds = match unit {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" => n / 1e6,
        "m" => n * 60.0,
        _ => return Err(format!("unknown unit {unit:?}: use us, ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} is not a positive duration"))
}

/// `ACTOR=COUNTER,ACTOR=COUNTER`, the form [`clock_text`] prints. Actors may contain `=`: the
/// counter is after the last one.
pub(super) fn parse_clock(s: &str) -> Result<api::VectorClock, String> {
    let mut entries = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (actor, counter) =
            part.rsplit_once('=').ok_or_else(|| format!("{part:?} is not ACTOR=COUNTER"))?;
        if actor.is_empty() {
            return Err(format!("{part:?} has an empty actor"));
        }
        let counter: i64 = counter
            .parse()
            .ok()
            .filter(|c| *c >= 0)
            .ok_or_else(|| format!("{part:?}: the counter must be a number from 0"))?;
        entries.push(api::VectorClockEntry {
            coordinator_node_id: actor.to_owned(),
            logical_timestamp: counter,
        });
    }
    Ok(api::VectorClock { entries })
}

/// The bytes of a command-line argument, as the OS passed them.
pub(super) fn os_bytes(s: OsString) -> Vec<u8> {
    use std::os::unix::ffi::OsStringExt as _;
    s.into_vec()
}

pub(super) fn read_value(path: &PathBuf) -> Result<Vec<u8>, Failure> {
    if path.as_os_str() == "-" {
        let mut value = Vec::new();
        io::stdin()
            .read_to_end(&mut value)
            .map_err(|e| Failure::Local(format!("cannot read the value from stdin: {e}")))?;
        return Ok(value);
    }
    std::fs::read(path)
        .map_err(|e| Failure::Local(format!("cannot read the value from {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::output::clock_text;

    #[test]
    fn addresses() {
        let cases = [
            ("127.0.0.1:50051", Ok("127.0.0.1:50051")),
            ("http://localhost:7000", Ok("localhost:7000")),
            ("http://[::1]:7000/", Ok("[::1]:7000")),
            ("localhost", Err(())),
            ("https://h:1", Err(())),
            ("h:99999", Err(())),
        ];
        for (input, want) in cases {
            let got = parse_addr(input);
            assert_eq!(got.as_deref().map_err(|_| ()), want, "{input}");
        }
    }

    #[test]
    fn durations() {
        let cases = [
            ("5s", Some(Duration::from_secs(5))),
            ("5", Some(Duration::from_secs(5))),
            ("250ms", Some(Duration::from_millis(250))),
            ("1.5s", Some(Duration::from_millis(1500))),
            ("2m", Some(Duration::from_secs(120))),
            ("0s", None),
            ("5h", None),
            ("s", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input).ok(), want, "{input}");
        }
    }

    #[test]
    fn clocks_round_trip_through_text() {
        let text = "coord-1/0=3,coord-2/1=12";
        let clock = parse_clock(text).unwrap();
        assert_eq!(clock.entries.len(), 2);
        assert_eq!(clock_text(Some(&clock)), text);
        assert!(parse_clock("a=-1").is_err());
        assert!(parse_clock("=1").is_err());
        assert!(parse_clock("a").is_err());
        assert_eq!(parse_clock("").unwrap().entries.len(), 0);
    }
}
