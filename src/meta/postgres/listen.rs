//! [`PostgresStore::watch`]: hearing about other coordinators' metadata writes through
//! `LISTEN`/`NOTIFY` on [`CHANNEL`], with a periodic tick as the fallback.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use postgres::{fallible_iterator::FallibleIterator, NoTls, Transaction};

use super::{Fail, PostgresStore, CHANNEL};

/// What a notification (or the watcher itself) says changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// A tenant was created or changed.
    Tenants,
    /// The storage node list changed.
    Nodes,
    /// A client token was created or revoked.
    Tokens,
    /// Anything may have changed: the periodic tick, or the listener reconnected and may have
    /// missed notifications. Reload everything.
    Everything,
}

impl PostgresStore {
    /// Starts a thread that listens on [`CHANNEL`] and calls `on_change` for every notification
    /// about this store's schema and, every `every`, with [`Change::Everything`]. It reconnects by itself
    /// (once a second while the server is down) and reports [`Change::Everything`] after each
    /// reconnection, since notifications sent meanwhile were lost. The thread stops within
    /// `every` once `on_change` returns false or the returned [`Watch`] is dropped.
    pub fn watch(
        &self,
        every: Duration,
        mut on_change: impl FnMut(Change) -> bool + Send + 'static,
    ) -> std::io::Result<Watch> {
        let config = self.config.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new().name("pairdb-meta-watch".into()).spawn(move || {
            let mut first = true;
            while !stopped.load(Ordering::Relaxed) {
                let mut client = match config.connect(NoTls) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "metadata watch cannot connect; retrying");
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                };
                let listen = client
                    .batch_execute(&format!("LISTEN {CHANNEL}"))
                    .and_then(|()| client.query_one("SELECT current_schema()", &[]));
                let schema: String = match listen {
                    Ok(row) => row.get(0),
                    Err(e) => {
                        tracing::warn!(error = %e, "metadata watch cannot LISTEN; retrying");
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                };
                if !first && !on_change(Change::Everything) {
                    return;
                }
                first = false;
                // The periodic reload is a deadline, not "nothing heard for `every`": the channel
                // is shared by every schema of the database, so it may never be quiet.
                let mut next_reload = Instant::now() + every;
                while !stopped.load(Ordering::Relaxed) {
                    let mut notifications = client.notifications();
                    let mut changes = Vec::new();
                    let wait = next_reload.saturating_duration_since(Instant::now());
                    match notifications.timeout_iter(wait).next() {
                        Ok(Some(n)) => changes.extend(parse_change(n.payload(), &schema)),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "metadata watch lost its connection");
                            break;
                        }
                    }
                    // A burst of writes becomes one reload of each kind.
                    let mut pending = notifications.iter();
                    while let Ok(Some(n)) = pending.next() {
                        changes.extend(parse_change(n.payload(), &schema));
                    }
                    if Instant::now() >= next_reload {
                        changes.push(Change::Everything);
                        next_reload = Instant::now() + every;
                    }
                    if changes.contains(&Change::Everything) {
                        changes = vec![Change::Everything];
                    }
                    for kind in [Change::Everything, Change::Tenants, Change::Nodes, Change::Tokens]
                    {
                        if changes.contains(&kind) && !on_change(kind) {
                            return;
                        }
                    }
                }
            }
        })?;
        Ok(Watch { stop })
    }
}

/// Stops a [`PostgresStore::watch`] thread when dropped.
#[derive(Debug)]
pub struct Watch {
    stop: Arc<AtomicBool>,
}

impl Watch {
    /// Lets the thread run until its callback returns false, instead of until this is dropped.
    pub fn detach(self) {
        // Only the stop flag is leaked: one allocation per watch, made once per process.
        std::mem::forget(self);
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What a notification's payload, `{schema}:{what}`, says changed; `None` when it is about
/// another schema of the same database (another cluster, or another test).
fn parse_change(payload: &str, schema: &str) -> Option<Change> {
    let (from, what) = payload.rsplit_once(':')?;
    if from != schema {
        return None;
    }
    Some(match what {
        "tenants" => Change::Tenants,
        "nodes" => Change::Nodes,
        "tokens" => Change::Tokens,
        _ => Change::Everything,
    })
}

/// Notifies watchers, when the transaction commits, that `what` changed in this schema.
pub(super) fn notify(tx: &mut Transaction<'_>, what: &str) -> Result<(), Fail> {
    tx.execute("SELECT pg_notify($1, current_schema() || ':' || $2)", &[&CHANNEL, &what])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_and_other_schemas_are_ignored() {
        assert_eq!(parse_change("public:tenants", "public"), Some(Change::Tenants));
        assert_eq!(parse_change("public:nodes", "public"), Some(Change::Nodes));
        assert_eq!(parse_change("public:tokens", "public"), Some(Change::Tokens));
        assert_eq!(parse_change("public:?", "public"), Some(Change::Everything));
        assert_eq!(parse_change("other:tenants", "public"), None);
        assert_eq!(parse_change("tenants", "public"), None);
    }
}
