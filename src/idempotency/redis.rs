//! [`RedisIdempotencyStore`]: idempotency records in a Redis server shared by several
//! coordinators, so that a retry answered by another coordinator is still recognised.
//!
//! One record per request, under `idempotency:{tenant_id}:{key}:{idempotency_key}`, holding a
//! one-byte state, the body's fingerprint (8 bytes, little endian) and, once done, the encoded
//! response:
//!
//! ```text
//!   'P' fingerprint              pending claim, expires after pending_timeout (an abandoned claim
//!                                frees itself, as the embedded table's takeover does)
//!   'D' fingerprint response     done, expires after ttl (24 h by default)
//! ```
//!
//! Each transition of [`crate::core::idempotency`]'s state machine is one Lua script, which Redis runs
//! atomically: a claim reads the record and, only when there is none, stores the pending one
//! (`SET … PX`), so of two coordinators claiming the same record at the same moment exactly one
//! wins; completing replaces only this body's pending claim; releasing deletes only it.
//!
//! Request cores must never block on Redis, so the client runs on one dedicated thread with a
//! synchronous connection. Cores send it commands over a bounded channel and await the answer
//! (flume's async receive). The thread takes every command waiting in the channel and sends them
//! as one pipeline: one round trip for all the writes that arrived meanwhile, from every core.
//! Completions and releases are sent without waiting for the answer; they are ordered after the
//! claim on the same channel.
//!
//! Redis down: every command fails with [`Claim::Unavailable`] (the coordinator then proceeds
//! without idempotency or rejects, as configured). After a failed connection attempt the thread
//! answers at once for [`RECONNECT_BACKOFF`] rather than wait a connect timeout per pipeline,
//! then tries again, so it recovers by itself when Redis returns.
//!
//! The record key is the issue's fixed format. Tenant ids cannot contain ':', but keys and
//! idempotency keys can, so two different (key, idempotency key) pairs can share a record key;
//! the fingerprint then tells them apart as a conflict rather than answering one with the other's
//! response, unless their bodies are identical too.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Claim, IdempotencyKey};

/// Commands waiting for the Redis thread before new ones are answered [`Claim::Unavailable`]:
/// 65,536, far above what the cores have in flight (a few thousand writes), so it only fills when
/// Redis stalls.
pub const MAX_QUEUED_COMMANDS: usize = 65_536;

/// Most commands in one pipeline: 1,024. Bounds the size of one round trip's request and reply.
pub const MAX_PIPELINE: usize = 1024;

/// How long after a failed connection attempt commands are answered unavailable without trying
/// again: 500 ms. Short enough that a returning Redis is used within a second.
pub const RECONNECT_BACKOFF: Duration = Duration::from_millis(500);

const CLAIM: &str = r"
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ''
";

const COMPLETE: &str = r"
local v = redis.call('GET', KEYS[1])
if (not v) or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Settings of a [`RedisIdempotencyStore`].
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// How long a completed response is kept.
    pub ttl: Duration,
    /// How long a pending claim lives before another may take over.
    pub pending_timeout: Duration,
    /// Longest wait for a connection or one round trip.
    pub timeout: Duration,
}

/// Why the store could not be created.
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    /// The URL does not parse.
    #[error("invalid redis url")]
    Url(#[source] redis::RedisError),
    /// The client thread could not be started.
    #[error("cannot start the redis client thread")]
    Thread(#[source] std::io::Error),
}

enum Op {
    Claim { fingerprint: u64, reply: flume::Sender<Claim> },
    Complete { done: Vec<u8> },
    Release,
}

struct Command {
    record_key: String,
    fingerprint: u64,
    op: Op,
}

/// The shared idempotency table in Redis. `claim` is async (it awaits the client thread);
/// nothing here blocks the caller.
pub struct RedisIdempotencyStore {
    commands: flume::Sender<Command>,
    config: RedisConfig,
}

impl std::fmt::Debug for RedisIdempotencyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisIdempotencyStore")
            .field("queued", &self.commands.len())
            .finish_non_exhaustive()
    }
}

impl RedisIdempotencyStore {
    /// Starts the client thread. It connects on first use, so a Redis that is down at start-up
    /// only makes the first writes go without idempotency.
    pub fn start(config: RedisConfig) -> Result<Self, RedisSetupError> {
        let client = redis::Client::open(config.url.as_str()).map_err(RedisSetupError::Url)?;
        let (tx, rx) = flume::bounded(MAX_QUEUED_COMMANDS);
        let mut worker = Worker {
            client,
            connection: None,
            retry_at: None,
            timeout: config.timeout,
            ttl_ms: millis(config.ttl),
            pending_ms: millis(config.pending_timeout),
        };
        std::thread::Builder::new()
            .name("pairdb-redis".into())
            .spawn(move || worker.run(rx))
            .map_err(RedisSetupError::Thread)?;
        Ok(Self { commands: tx, config })
    }

    /// The settings it was started with.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// Claims the record of `key` for a body with `fingerprint`; see [`Claim`].
    pub async fn claim(&self, key: &IdempotencyKey, fingerprint: u64) -> Claim {
        let (reply, answer) = flume::bounded(1);
        let command = Command {
            record_key: record_key(key),
            fingerprint,
            op: Op::Claim { fingerprint, reply },
        };
        if self.commands.try_send(command).is_err() {
            return Claim::Unavailable;
        }
        answer.recv_async().await.unwrap_or(Claim::Unavailable)
    }

    /// Stores the response of a claimed request (sent without waiting for the answer).
    pub fn complete(&self, key: &IdempotencyKey, fingerprint: u64, response: &[u8]) {
        let done = record(b'D', fingerprint, response);
        let command =
            Command { record_key: record_key(key), fingerprint, op: Op::Complete { done } };
        // A full queue loses the completion: a retry then runs the request again, as it would
        // with Redis down.
        let _ = self.commands.try_send(command);
    }

    /// Forgets this body's pending claim (sent without waiting for the answer).
    pub fn release(&self, key: &IdempotencyKey, fingerprint: u64) {
        let command = Command { record_key: record_key(key), fingerprint, op: Op::Release };
        let _ = self.commands.try_send(command);
    }
}

/// `idempotency:{tenant_id}:{key}:{idempotency_key}`.
pub fn record_key(key: &IdempotencyKey) -> String {
    let (tenant_id, key, idempotency_key) = key.parts();
    format!("idempotency:{tenant_id}:{key}:{idempotency_key}")
}

fn record(state: u8, fingerprint: u64, response: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + response.len());
    out.push(state);
    out.extend_from_slice(&fingerprint.to_le_bytes());
    out.extend_from_slice(response);
    out
}

/// What a claim met: the stored record (empty when the claim won).
fn answer(stored: &[u8], fingerprint: u64) -> Claim {
    if stored.is_empty() {
        return Claim::Claimed;
    }
    let (Some(&state), Some(fp)) = (stored.first(), stored.get(1..9)) else {
        tracing::warn!(len = stored.len(), "undecodable idempotency record in redis");
        return Claim::Unavailable;
    };
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(fp);
    if u64::from_le_bytes(bytes) != fingerprint {
        return Claim::Conflict;
    }
    match state {
        b'P' => Claim::InProgress,
        b'D' => Claim::Duplicate(Bytes::copy_from_slice(&stored[9..])),
        _ => {
            tracing::warn!(state, "unknown idempotency record state in redis");
            Claim::Unavailable
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The client thread's state.
struct Worker {
    client: redis::Client,
    connection: Option<redis::Connection>,
    /// Set after a failed connection attempt: no new attempt before it.
    retry_at: Option<Instant>,
    timeout: Duration,
    ttl_ms: u64,
    pending_ms: u64,
}

impl Worker {
    fn run(&mut self, commands: flume::Receiver<Command>) {
        // Ends when every sender (the store) is dropped.
        while let Ok(first) = commands.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_PIPELINE {
                match commands.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            let results = self.execute(&batch);
            for (command, result) in batch.into_iter().zip(results) {
                if let Op::Claim { fingerprint, reply } = command.op {
                    let claim = match result {
                        Some(redis::Value::BulkString(bytes)) => answer(&bytes, fingerprint),
                        Some(redis::Value::SimpleString(s)) => answer(s.as_bytes(), fingerprint),
                        Some(other) => {
                            tracing::warn!(?other, "unexpected redis reply to a claim");
                            Claim::Unavailable
                        }
                        None => Claim::Unavailable,
                    };
                    // The caller may have gone (its request was cancelled): nothing to tell.
                    let _ = reply.send(claim);
                }
            }
        }
    }

    /// Sends `batch` as one pipeline; one reply per command, `None` for all when Redis could
    /// not be reached.
    fn execute(&mut self, batch: &[Command]) -> Vec<Option<redis::Value>> {
        let mut pipe = redis::pipe();
        for c in batch {
            let pending = record(b'P', c.fingerprint, &[]);
            match &c.op {
                Op::Claim { .. } => {
                    pipe.cmd("EVAL")
                        .arg(CLAIM)
                        .arg(1)
                        .arg(&c.record_key)
                        .arg(pending)
                        .arg(self.pending_ms);
                }
                Op::Complete { done } => {
                    pipe.cmd("EVAL")
                        .arg(COMPLETE)
                        .arg(1)
                        .arg(&c.record_key)
                        .arg(pending)
                        .arg(done.as_slice())
                        .arg(self.ttl_ms);
                }
                Op::Release => {
                    pipe.cmd("EVAL").arg(RELEASE).arg(1).arg(&c.record_key).arg(pending);
                }
            }
        }
        let Some(connection) = self.connection() else { return vec![None; batch.len()] };
        match pipe.query::<Vec<redis::Value>>(connection) {
            Ok(values) if values.len() == batch.len() => values.into_iter().map(Some).collect(),
            Ok(values) => {
                tracing::warn!(
                    sent = batch.len(),
                    got = values.len(),
                    "short redis pipeline reply"
                );
                self.connection = None;
                vec![None; batch.len()]
            }
            Err(e) => {
                tracing::warn!(error = %e, commands = batch.len(), "redis pipeline failed");
                // The connection's state is unknown after a failure: start afresh.
                self.connection = None;
                vec![None; batch.len()]
            }
        }
    }

    /// The connection, opened when there is none and the backoff has passed.
    fn connection(&mut self) -> Option<&mut redis::Connection> {
        if self.connection.is_none() {
            if self.retry_at.is_some_and(|at| Instant::now() < at) {
                return None;
            }
            match self.open() {
                Ok(c) => {
                    if self.retry_at.take().is_some() {
                        tracing::info!("redis reachable again; idempotency restored");
                    }
                    self.connection = Some(c);
                }
                Err(e) => {
                    if self.retry_at.is_none() {
                        tracing::warn!(error = %e, "redis unreachable; idempotency unavailable");
                    }
                    self.retry_at = Some(Instant::now() + RECONNECT_BACKOFF);
                    return None;
                }
            }
        }
        self.connection.as_mut()
    }

    fn open(&self) -> redis::RedisResult<redis::Connection> {
        let c = self.client.get_connection_with_timeout(self.timeout)?;
        c.set_read_timeout(Some(self.timeout))?;
        c.set_write_timeout(Some(self.timeout))?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_key_is_the_documented_format() {
        let key = IdempotencyKey::new("acme", "user:1", "req-7");
        assert_eq!(record_key(&key), "idempotency:acme:user:1:req-7");
    }

    #[test]
    fn stored_records_answer_claims() {
        let done = record(b'D', 42, b"response");
        assert_eq!(answer(b"", 42), Claim::Claimed);
        assert_eq!(answer(&record(b'P', 42, &[]), 42), Claim::InProgress);
        assert_eq!(answer(&done, 42), Claim::Duplicate(Bytes::from_static(b"response")));
        assert_eq!(answer(&done, 43), Claim::Conflict);
        assert_eq!(answer(&record(b'P', 42, &[]), 43), Claim::Conflict);
        assert_eq!(answer(b"xy", 42), Claim::Unavailable);
        assert_eq!(answer(&record(b'Q', 42, &[]), 42), Claim::Unavailable);
    }
}
