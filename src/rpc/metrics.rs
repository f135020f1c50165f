//! One core's gRPC calls by method and status, their latency, and the calls in flight: recorded
//! by the server for every routed unary call, rendered as [`Sample`]s when scraped. It lives in
//! `rpc` (not `metrics`) because it speaks gRPC status codes; `metrics` stays generic.

use std::{
    cell::{Cell, RefCell},
    time::{Duration, Instant},
};

use ahash::AHashMap;

use crate::rpc::http2::server::ConnStats;
use crate::{
    metrics::{Hist, Sample},
    rpc::Code,
};

/// gRPC status codes 0 to 16; anything else is counted as UNKNOWN.
const CODES: usize = 17;

#[derive(Default)]
struct MethodStats {
    by_code: [u64; CODES],
    latency: Hist,
}

/// One core's calls by method and status, their latency, and the calls in flight.
#[derive(Default)]
pub struct RpcMetrics {
    methods: RefCell<AHashMap<String, MethodStats>>,
    in_flight: Cell<u64>,
    /// What native HTTP/2 connections refused or resisted on this core.
    http2: RefCell<ConnStats>,
    /// Calls refused for a missing or wrong credential (see `Router::require_bearer`).
    unauthenticated: Cell<u64>,
    /// Connections on a TLS port whose handshake failed or timed out (`rpc.tls`).
    tls_handshake_failures: Cell<u64>,
}

/// Counts a call as in flight until dropped (a connection that dies mid-call drops it too).
pub struct InFlight<'a> {
    metrics: &'a RpcMetrics,
    started: Instant,
}

impl InFlight<'_> {
    /// When the call started.
    pub fn started(&self) -> Instant {
        self.started
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.metrics.in_flight.set(self.metrics.in_flight.get().saturating_sub(1));
    }
}

impl RpcMetrics {
    /// A call started; it stays in flight until the guard drops.
    pub fn start(&self) -> InFlight<'_> {
        self.in_flight.set(self.in_flight.get() + 1);
        InFlight { metrics: self, started: Instant::now() }
    }

    /// A call to `path` ended with `code` after `elapsed`.
    pub fn finish(&self, path: &str, code: Code, elapsed: Duration) {
        let mut methods = self.methods.borrow_mut();
        let stats = match methods.get_mut(path) {
            Some(s) => s,
            // Only routed paths reach here, so the map stays as small as the router.
            None => methods.entry(path.to_owned()).or_default(),
        };
        let slot = usize::try_from(code.0).ok().filter(|c| *c < CODES).unwrap_or(2);
        stats.by_code[slot] += 1;
        stats.latency.record_duration(elapsed);
    }

    /// Adds one native connection's counters (see [`ConnStats`]).
    pub fn record_http2(&self, s: &ConnStats) {
        self.http2.borrow_mut().add(s);
    }

    /// A call was refused for a missing or wrong credential.
    pub fn record_unauthenticated(&self) {
        self.unauthenticated.set(self.unauthenticated.get() + 1);
    }

    /// A connection's TLS handshake failed (a plaintext client, an unknown certificate, a
    /// timeout).
    pub fn record_tls_handshake_failure(&self) {
        self.tls_handshake_failures.set(self.tls_handshake_failures.get() + 1);
    }

    /// Calls refused for a missing or wrong credential so far.
    pub fn unauthenticated(&self) -> u64 {
        self.unauthenticated.get()
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.get()
    }

    /// This core's samples; `core` labels the in-flight gauge.
    pub fn samples(&self, core: usize, out: &mut Vec<Sample>) {
        out.push(
            Sample::gauge(
                "pairdb_rpc_in_flight",
                "gRPC calls being served, per core.",
                self.in_flight.get() as f64,
            )
            .label("core", core.to_string()),
        );
        out.push(Sample::counter(
            "pairdb_rpc_unauthenticated_total",
            "gRPC calls refused with UNAUTHENTICATED before their handler ran: no or a wrong \
             credential (a storage node's cluster secret).",
            self.unauthenticated.get(),
        ));
        out.push(Sample::counter(
            "pairdb_rpc_tls_handshake_failures_total",
            "Connections to a TLS gRPC port closed because their TLS handshake failed or timed \
             out: plaintext clients, certificates not trusted, silent peers.",
            self.tls_handshake_failures.get(),
        ));
        let h = self.http2.borrow();
        for (kind, n) in [
            ("peer", h.peer_resets),
            ("provoked", h.provoked_resets),
            ("refused", h.refused_streams),
        ] {
            out.push(
                Sample::counter(
                    "pairdb_http2_stream_resets_total",
                    "Streams reset on native HTTP/2 connections: by the peer before their reply \
                     (peer), by this server because of the peer (provoked), or refused (refused).",
                    n,
                )
                .label("kind", kind),
            );
        }
        out.push(Sample::counter(
            "pairdb_http2_glitches_total",
            "Suspicious frames on native HTTP/2 connections (pings without traffic, settings, \
             empty data, priority, unknown types), counted against each connection's budget.",
            h.glitches,
        ));
        out.push(Sample::counter(
            "pairdb_http2_headers_too_large_total",
            "Requests refused with HTTP 431: header list over its size or field-count bound.",
            h.headers_too_large,
        ));
        for (reason, n) in [
            ("reset_flood", h.goaway_reset_flood),
            ("glitch_flood", h.goaway_glitch_flood),
            ("continuation_flood", h.goaway_continuation_flood),
            ("protocol", h.goaway_protocol),
            ("timeout", h.goaway_timeout),
        ] {
            out.push(
                Sample::counter(
                    "pairdb_http2_connection_errors_total",
                    "Native HTTP/2 connections closed with an error GOAWAY, by cause.",
                    n,
                )
                .label("reason", reason),
            );
        }
        drop(h);
        let methods = self.methods.borrow();
        let mut paths: Vec<&String> = methods.keys().collect();
        paths.sort();
        for path in paths {
            let stats = &methods[path];
            let (service, method) =
                path.trim_start_matches('/').split_once('/').unwrap_or(("", path.as_str()));
            for (code, &n) in stats.by_code.iter().enumerate() {
                if n == 0 {
                    continue;
                }
                out.push(
                    Sample::counter(
                        "pairdb_rpc_requests_total",
                        "gRPC calls answered, by service, method and status code.",
                        n,
                    )
                    .label("service", service)
                    .label("method", method)
                    .label("code", Code(code as i32).name().into_owned()),
                );
            }
            out.push(
                Sample::latency(
                    "pairdb_rpc_latency_seconds",
                    "gRPC call latency in the server, from the request headers to the reply.",
                    &stats.latency,
                )
                .label("service", service)
                .label("method", method),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{merge, render};

    #[test]
    fn rpc_metrics_count_by_code_and_track_in_flight() {
        let m = RpcMetrics::default();
        {
            let _call = m.start();
            assert_eq!(m.in_flight(), 1);
            m.finish("/p.S/M", Code::OK, Duration::from_millis(2));
        }
        m.finish("/p.S/M", Code(14), Duration::from_millis(1));
        m.finish("/p.S/M", Code(99), Duration::from_millis(1));
        assert_eq!(m.in_flight(), 0);
        let mut out = Vec::new();
        m.samples(0, &mut out);
        let text = render(&merge(out));
        for line in [
            "pairdb_rpc_requests_total{service=\"p.S\",method=\"M\",code=\"OK\"} 1",
            "pairdb_rpc_requests_total{service=\"p.S\",method=\"M\",code=\"UNAVAILABLE\"} 1",
            "pairdb_rpc_requests_total{service=\"p.S\",method=\"M\",code=\"UNKNOWN\"} 1",
            "pairdb_rpc_latency_seconds_count{service=\"p.S\",method=\"M\"} 3",
            "pairdb_rpc_in_flight{core=\"0\"} 0",
            "pairdb_rpc_unauthenticated_total 0",
            "pairdb_rpc_tls_handshake_failures_total 0",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }
}
