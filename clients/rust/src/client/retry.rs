//! The retry and failover engine: [`Client::call`] runs one logical call over the addresses,
//! with per-attempt deadlines, backoff and the rules for what may be retried.

use std::{future::Future, sync::atomic::Ordering, time::Duration};

use super::{Client, Stub};
use crate::error::{Error, Result};
use tokio::time::Instant;

/// Whether a call may be repeated after a timeout (it cannot apply twice).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Idempotence {
    /// Reads, and writes that carry an idempotency key.
    Safe,
    /// Admin changes: retried on UNAVAILABLE only.
    Unsafe,
}

impl Client {
    // --------------------------------------------------------------------------------------------
    // The retry loop.
    // --------------------------------------------------------------------------------------------

    /// Runs one logical call: attempts on the preferred address, moving to the next on
    /// transport failures and UNAVAILABLE, retrying what is safe with backoff, at most
    /// `max_attempts` times and within `timeout` in all.
    pub(super) async fn call<T, F, Fut>(
        &self,
        timeout: Duration,
        idempotence: Idempotence,
        mut f: F,
    ) -> Result<T>
    where
        F: FnMut(Stub, Duration) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let shared = &*self.shared;
        let n = shared.targets.len();
        let deadline = Instant::now() + timeout;
        let mut index = shared.preferred.load(Ordering::Relaxed) % n;
        let mut tried = vec![false; n];
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            tried[index] = true;
            let target = &shared.targets[index];
            let left = deadline.saturating_duration_since(Instant::now());
            let budget = shared.attempt_timeout.map_or(left, |t| t.min(left));
            // `silent`: this address gave no answer in time (tonic enforces the `grpc-timeout`
            // it sends; the outer timeout is a backstop).
            let (error, silent) = if budget.is_zero() {
                let message = format!("the call's deadline of {timeout:?} passed before an answer");
                (Error::DeadlineExceeded { message }, false)
            } else {
                let no_answer = || Error::DeadlineExceeded {
                    message: format!(
                        "no answer from {} within {budget:?} (attempt {attempt})",
                        target.address
                    ),
                };
                match tokio::time::timeout(budget, f(target.client(), budget)).await {
                    Ok(Ok(response)) => {
                        shared.preferred.store(index, Ordering::Relaxed);
                        return Ok(response.into_inner());
                    }
                    Ok(Err(status)) if crate::error::is_client_timeout(&status) => {
                        (no_answer(), true)
                    }
                    Ok(Err(status)) => (Error::from_status(&status, &target.address), false),
                    Err(_) => (no_answer(), true),
                }
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let retryable =
                error.is_retryable() || (error.is_timeout() && idempotence == Idempotence::Safe);
            if !retryable || attempt >= shared.max_attempts || left.is_zero() {
                return Err(error);
            }
            // A coordinator that is down, unreachable, or silent: move to the next address (and
            // start later calls there). A server's DEADLINE_EXCEEDED or an in-progress duplicate
            // retries where it was, where its idempotency record is.
            let moved = n > 1 && (error.moves_to_next_address() || silent);
            if moved {
                index = (index + 1) % n;
                shared.preferred.store(index, Ordering::Relaxed);
            }
            // Failing over to an address this call has not tried yet is immediate; anything
            // else (the same address again, a second round) waits first.
            if !moved || tried[index] {
                let delay = backoff_delay(shared.backoff_base, shared.backoff_max, attempt);
                if delay >= left {
                    return Err(error);
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// The delay before retry number `attempt` (1 = the first retry): `base * 2^(attempt-1)`,
/// capped at `max`, jittered to between half and all of it.
fn backoff_delay(base: Duration, max: Duration, attempt: u32) -> Duration {
    let full = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(max);
    let half = full / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// A tonic request that tells the server the attempt's deadline (`grpc-timeout`), so that it
/// stops working on it (and releases its idempotency claim) when the client stops waiting.
pub(super) fn with_timeout<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_ceiling() {
        let (base, max) = (Duration::from_millis(100), Duration::from_millis(350));
        for _ in 0..100 {
            let d1 = backoff_delay(base, max, 1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= base, "{d1:?}");
            let d2 = backoff_delay(base, max, 2);
            assert!(d2 >= Duration::from_millis(100) && d2 <= Duration::from_millis(200));
            let d9 = backoff_delay(base, max, 40);
            assert!(d9 >= Duration::from_millis(175) && d9 <= max);
        }
    }
}
