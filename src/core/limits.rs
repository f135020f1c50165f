//! Per-tenant limits, with no I/O: the token bucket, how a tenant's own limits, the
//! coordinator's defaults (`limits:`) and the global caps (`max_key_bytes`, `max_value_bytes`)
//! combine, and the decision for one key-value request.
//!
//! Every coordinator core keeps its own buckets (no lock, no shared counter on the request
//! path), each with `1 / cores` of the tenant's rate and a burst of one second of that share
//! ([`TenantBuckets::new`]). The limit is therefore per coordinator process: a tenant served by
//! three coordinators may send three times its rate in all. A client whose connections all land
//! on one core gets that core's share only.
//!
//! Time comes in as an [`Instant`] argument; nothing here reads a clock.

use std::time::{Duration, Instant};

use crate::error::PairError;

/// A tenant's own limits as stored (`0` = the coordinator's default from `limits:`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TenantLimits {
    /// Key-value requests per second; 0 = the default.
    pub requests_per_second: u64,
    /// Key and value bytes per second; 0 = the default.
    pub bytes_per_second: u64,
    /// Longest key, bytes; 0 = the default.
    pub max_key_bytes: u64,
    /// Longest value, bytes; 0 = the default.
    pub max_value_bytes: u64,
}

/// The limits in force for a tenant once defaults and caps are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Effective {
    /// Requests per second for the whole process; 0 = unlimited.
    pub requests_per_second: u64,
    /// Bytes per second for the whole process; 0 = unlimited.
    pub bytes_per_second: u64,
    /// Longest key, bytes (never above the global `max_key_bytes`).
    pub max_key_bytes: usize,
    /// Longest value, bytes (never above the global `max_value_bytes`).
    pub max_value_bytes: usize,
}

/// Resolves a tenant's limits: its own value where set, else `defaults`' (where a default size
/// of 0 means the global cap); sizes are capped by `max_key_bytes` / `max_value_bytes`.
pub fn effective(
    tenant: &TenantLimits,
    defaults: &TenantLimits,
    max_key_bytes: usize,
    max_value_bytes: usize,
) -> Effective {
    let pick = |own: u64, default: u64| if own != 0 { own } else { default };
    let size = |own: u64, default: u64, cap: usize| match pick(own, default) {
        0 => cap,
        n => usize::try_from(n).unwrap_or(usize::MAX).min(cap),
    };
    Effective {
        requests_per_second: pick(tenant.requests_per_second, defaults.requests_per_second),
        bytes_per_second: pick(tenant.bytes_per_second, defaults.bytes_per_second),
        max_key_bytes: size(tenant.max_key_bytes, defaults.max_key_bytes, max_key_bytes),
        max_value_bytes: size(tenant.max_value_bytes, defaults.max_value_bytes, max_value_bytes),
    }
}

/// A token bucket: `rate` tokens per second, holding at most `burst`.
///
/// A request may take more tokens than `burst` (a value larger than a second of the byte
/// rate): it is let through when the bucket is full and leaves it in debt, so that large
/// requests are slowed, never starved.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `rate` must be positive; `burst` is raised to at least 1.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        let burst = burst.max(1.0);
        Self { rate, burst, tokens: burst, last: now }
    }

    /// Tokens per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Tokens available at `now` (negative while in debt).
    pub fn available(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens
    }

    fn refill(&mut self, now: Instant) {
        // A `now` before `last` (callers on one core pass a monotonic clock, but be safe) adds
        // nothing.
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = self.last.max(now);
    }

    /// How long until `n` tokens may be taken, `Duration::ZERO` when they may now.
    pub fn wait(&mut self, n: f64, now: Instant) -> Duration {
        self.refill(now);
        let needed = n.min(self.burst);
        if self.tokens >= needed {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((needed - self.tokens) / self.rate)
    }

    /// Takes `n` tokens (call after [`TokenBucket::wait`] said zero).
    pub fn take(&mut self, n: f64, now: Instant) {
        self.refill(now);
        self.tokens -= n;
    }

    /// Takes `n` tokens if it may now, else says how long to wait.
    pub fn try_take(&mut self, n: f64, now: Instant) -> Result<(), Duration> {
        match self.wait(n, now) {
            Duration::ZERO => {
                self.take(n, now);
                Ok(())
            }
            wait => Err(wait),
        }
    }
}

/// Which limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// `requests_per_second`.
    Requests,
    /// `bytes_per_second`.
    Bytes,
}

impl Reason {
    /// The `reason` label of `pairdb_tenant_rate_limited_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Requests => "requests",
            Reason::Bytes => "bytes",
        }
    }
}

/// A refusal: which limit, and when to retry (at least 1 ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The limit that refused.
    pub reason: Reason,
    /// How long until the same request would be let through on this core.
    pub retry_after: Duration,
}

impl Refused {
    /// The error the client gets.
    pub fn to_error(self, tenant_id: &str) -> PairError {
        PairError::RateLimited {
            tenant_id: tenant_id.to_owned(),
            reason: self.reason.as_str(),
            retry_after_ms: retry_after_ms(self.retry_after),
        }
    }
}

/// A retry hint in whole milliseconds, rounded up, at least 1.
pub fn retry_after_ms(d: Duration) -> u64 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX).max(1)
}

/// One core's buckets for one tenant, built for one [`Effective`] (rebuilt when it changes).
#[derive(Clone, Debug)]
pub struct TenantBuckets {
    limits: Effective,
    requests: Option<TokenBucket>,
    bytes: Option<TokenBucket>,
}

impl TenantBuckets {
    /// Buckets for a core's share of `limits`: `rate / cores` each, with a burst of one second
    /// of that share (at least one request; a byte burst below one request's size leaves the
    /// bucket in debt, see [`TokenBucket`]). A rate of 0 has no bucket (unlimited).
    pub fn new(limits: Effective, cores: usize, now: Instant) -> Self {
        let cores = cores.max(1) as f64;
        let bucket = |rate: u64| {
            (rate > 0).then(|| {
                let share = rate as f64 / cores;
                TokenBucket::new(share, share, now)
            })
        };
        Self {
            limits,
            requests: bucket(limits.requests_per_second),
            bytes: bucket(limits.bytes_per_second),
        }
    }

    /// The limits these buckets were built for.
    pub fn limits(&self) -> &Effective {
        &self.limits
    }

    /// Charges one request of `bytes` bytes (key + value) at `now`, or refuses it without
    /// charging anything. The request bucket is asked first, so a flood of requests is named
    /// `Requests` even when bytes are short too.
    pub fn admit(&mut self, bytes: usize, now: Instant) -> Result<(), Refused> {
        let bytes = bytes as f64;
        if let Some(b) = &mut self.requests {
            let wait = b.wait(1.0, now);
            if wait > Duration::ZERO {
                return Err(Refused { reason: Reason::Requests, retry_after: wait });
            }
        }
        if let Some(b) = &mut self.bytes {
            let wait = b.wait(bytes, now);
            if wait > Duration::ZERO {
                return Err(Refused { reason: Reason::Bytes, retry_after: wait });
            }
            b.take(bytes, now);
        }
        if let Some(b) = &mut self.requests {
            b.take(1.0, now);
        }
        Ok(())
    }
}

impl TenantBuckets {
    /// Charges `bytes` known only after a request was admitted (the value a read returned),
    /// without refusing anything: the byte bucket may go into debt, which later requests wait
    /// out.
    pub fn charge(&mut self, bytes: usize, now: Instant) {
        if let Some(b) = &mut self.bytes {
            b.take(bytes as f64, now);
        }
    }
}

/// The size checks of one request against a tenant's [`Effective`] limits: the errors of
/// `validate::key` / `validate::value` (`KEY_TOO_LARGE`, `VALUE_TOO_LARGE`) with the tenant's
/// maximum.
pub fn check_sizes(limits: &Effective, key_len: usize, value_len: usize) -> Result<(), PairError> {
    if key_len > limits.max_key_bytes {
        return Err(PairError::KeyTooLarge { len: key_len, max: limits.max_key_bytes });
    }
    if value_len > limits.max_value_bytes {
        return Err(PairError::ValueTooLarge { len: value_len, max: limits.max_value_bytes });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn eff(rps: u64, bps: u64) -> Effective {
        Effective {
            requests_per_second: rps,
            bytes_per_second: bps,
            max_key_bytes: 1024,
            max_value_bytes: 1 << 20,
        }
    }

    #[test]
    fn defaults_and_caps_combine() {
        let defaults = TenantLimits {
            requests_per_second: 100,
            bytes_per_second: 0,
            max_key_bytes: 0,
            max_value_bytes: 4096,
        };
        let own =
            TenantLimits { requests_per_second: 5, max_key_bytes: 1 << 20, ..Default::default() };
        let e = effective(&own, &defaults, 1024, 1 << 20);
        assert_eq!(e.requests_per_second, 5, "the tenant's own value wins");
        assert_eq!(e.bytes_per_second, 0, "0 everywhere: unlimited");
        assert_eq!(e.max_key_bytes, 1024, "capped by the global maximum");
        assert_eq!(e.max_value_bytes, 4096, "the default");
        let e = effective(&TenantLimits::default(), &TenantLimits::default(), 10, 20);
        assert_eq!((e.max_key_bytes, e.max_value_bytes), (10, 20), "0: the global maximum");
    }

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_its_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 10.0, t0);
        for _ in 0..10 {
            assert_eq!(b.try_take(1.0, t0), Ok(()));
        }
        let wait = b.try_take(1.0, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        assert_eq!(b.try_take(1.0, t0 + Duration::from_millis(100)), Ok(()));
        // A long idle time refills to the burst, no more.
        assert_eq!(b.available(t0 + Duration::from_secs(60)), 10.0);
    }

    #[test]
    fn a_request_larger_than_the_burst_passes_when_full_and_leaves_debt() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100.0, 100.0, t0);
        assert_eq!(b.try_take(250.0, t0), Ok(()));
        assert_eq!(b.available(t0), -150.0);
        let wait = b.try_take(250.0, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 2.5).abs() < 1e-9, "{wait:?}");
    }

    #[test]
    fn admit_charges_both_buckets_or_neither() {
        let t0 = Instant::now();
        // 2 cores: 5 requests/s and 50 bytes/s each.
        let mut b = TenantBuckets::new(eff(10, 100), 2, t0);
        assert_eq!(b.admit(30, t0), Ok(()));
        let refused = b.admit(30, t0).unwrap_err();
        assert_eq!(refused.reason, Reason::Bytes);
        assert!((refused.retry_after.as_secs_f64() - 0.2).abs() < 1e-9);
        // The refused request took no request token: 4 small ones still pass.
        for _ in 0..4 {
            assert_eq!(b.admit(0, t0), Ok(()));
        }
        let refused = b.admit(0, t0).unwrap_err();
        assert_eq!(refused.reason, Reason::Requests);
        assert_eq!(retry_after_ms(refused.retry_after), 200);
        assert!(matches!(
            refused.to_error("t"),
            PairError::RateLimited { reason: "requests", retry_after_ms: 200, .. }
        ));
    }

    #[test]
    fn unlimited_never_refuses() {
        let t0 = Instant::now();
        let mut b = TenantBuckets::new(eff(0, 0), 4, t0);
        for _ in 0..10_000 {
            assert_eq!(b.admit(1 << 20, t0), Ok(()));
        }
    }

    #[test]
    fn sizes_use_the_tenants_maximum() {
        let e = Effective { max_key_bytes: 4, max_value_bytes: 8, ..eff(0, 0) };
        assert_eq!(check_sizes(&e, 4, 8), Ok(()));
        assert_eq!(check_sizes(&e, 5, 0), Err(PairError::KeyTooLarge { len: 5, max: 4 }));
        assert_eq!(check_sizes(&e, 1, 9), Err(PairError::ValueTooLarge { len: 9, max: 8 }));
        assert_eq!(retry_after_ms(Duration::from_micros(1)), 1);
        assert_eq!(retry_after_ms(Duration::from_micros(1001)), 2);
    }

    proptest! {
        /// Over any schedule of requests, a core admits no more than its burst plus its rate
        /// times the time elapsed, and a refused request's retry hint is honest: retried at
        /// that time (with nothing else in between) it is admitted.
        #[test]
        fn admitted_never_exceeds_rate_times_time_plus_burst(
            rate in 1u64..2_000,
            cores in 1usize..8,
            gaps_us in proptest::collection::vec(0u64..50_000, 1..300),
        ) {
            let t0 = Instant::now();
            let mut b = TenantBuckets::new(eff(rate, 0), cores, t0);
            let share = rate as f64 / cores as f64;
            let mut now = t0;
            let mut admitted = 0u64;
            for gap in gaps_us {
                now += Duration::from_micros(gap);
                match b.admit(0, now) {
                    Ok(()) => admitted += 1,
                    Err(refused) => {
                        let mut probe = b.clone();
                        let at = now + Duration::from_millis(retry_after_ms(refused.retry_after));
                        prop_assert_eq!(probe.admit(0, at), Ok(()));
                    }
                }
                let elapsed = now.duration_since(t0).as_secs_f64();
                let bound = share.max(1.0) + share * elapsed + 1e-6;
                prop_assert!(admitted as f64 <= bound, "{} > {}", admitted, bound);
            }
        }
    }
}
