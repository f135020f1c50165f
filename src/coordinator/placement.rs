//! The placement every core routes keys by while a data movement runs, and how this process
//! takes part in the cluster-wide barrier between its stages.
//!
//! One thread per process (the follower, [`follow`]) reads the newest migration from the
//! metadata store a few times a second. When its stage changed it publishes a new
//! [`Placement`] to every core ([`Update::Placement`]); once every core applied it, the next
//! beat ([`MetadataStore::beat`]) reports that stage for this coordinator. The coordinator
//! driving the migration advances a stage only once every live coordinator reported the
//! previous one, then waits one replica timeout more, so that no request routed by the older
//! stage is still in flight (`coordinator::migrate`).
//!
//! While a migration runs, a coordinator that could not beat for `migration.coordinator_lease_ms`
//! refuses key-value traffic (PLACEMENT_STALE) until it beats again: the driver stops waiting
//! for a silent coordinator that knew the migration only after the lease plus a margin, by
//! which time it has fenced itself. With no migration running nothing is fenced (a metadata
//! outage does not stop key-value traffic); a coordinator that never reported the migration is
//! waited for at each barrier until it has been silent for ten minutes.

use std::{
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use crate::{
    coordinator::{resolve_nodes, Shared, Update},
    core::{
        migration::{placement::Placement, Stage},
        ring::{Member, Ring},
    },
    meta::{CoordinatorBeat, MetaError, MigrationRecord},
};

/// This process's published placement and what its cores applied.
pub struct PlacementState {
    current: Mutex<(u64, Option<Arc<Placement>>)>,
    applied: Vec<AtomicU64>,
    /// Unix ms until which this coordinator may serve key-value traffic; `i64::MAX` when it is
    /// the only coordinator (embedded metadata).
    fresh_until_ms: AtomicI64,
    /// This process runs a migration's driver.
    pub driving: std::sync::atomic::AtomicBool,
}

impl PlacementState {
    /// No migration, `cores` cores; `fenced` when other coordinators may share the metadata.
    pub fn new(cores: usize, fenced: bool) -> Self {
        Self {
            current: Mutex::new((0, None)),
            applied: (0..cores).map(|_| AtomicU64::new(0)).collect(),
            fresh_until_ms: AtomicI64::new(if fenced { 0 } else { i64::MAX }),
            driving: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The placement last published, with its sequence number.
    pub fn current(&self) -> (u64, Option<Arc<Placement>>) {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Core `core` applied placement `seq`.
    pub fn mark_applied(&self, core: usize, seq: u64) {
        if let Some(a) = self.applied.get(core) {
            a.fetch_max(seq, Ordering::SeqCst);
        }
    }

    /// Every core applied placement `seq` or a later one.
    pub fn applied_everywhere(&self, seq: u64) -> bool {
        self.applied.iter().all(|a| a.load(Ordering::SeqCst) >= seq)
    }

    /// True while this coordinator may serve key-value requests.
    pub fn is_fresh(&self, now_ms: i64) -> bool {
        now_ms < self.fresh_until_ms.load(Ordering::SeqCst)
    }

    fn renew(&self, until_ms: i64) {
        // Never lower it, and never raise the unfenced value.
        let _ = self.fresh_until_ms.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
            (v != i64::MAX && until_ms > v).then_some(until_ms)
        });
    }
}

impl Shared {
    /// Publishes `placement` to every core, unless it routes exactly like the current one.
    /// Returns its sequence number.
    pub fn publish_placement(&self, placement: Option<Arc<Placement>>) -> u64 {
        let mut current = self.placement.current.lock().unwrap_or_else(|e| e.into_inner());
        let same = match (&current.1, &placement) {
            (None, None) => true,
            (Some(a), Some(b)) => a.migration_id == b.migration_id && a.stage == b.stage,
            _ => false,
        };
        if same {
            return current.0;
        }
        current.0 += 1;
        current.1 = placement.clone();
        let seq = current.0;
        self.broadcast(Update::Placement { seq, placement });
        seq
    }
}

/// Builds the placement a migration record describes, or `None` for a record that moves no
/// data (ended, or written before data movement existed).
pub fn placement_of(record: &MigrationRecord) -> Result<Option<Placement>, String> {
    if !record.is_active() || record.state.is_empty() {
        return Ok(None);
    }
    let state = crate::coordinator::migrate::State::decode(&record.state)?;
    let stage =
        Stage::parse(&state.stage).ok_or_else(|| format!("unknown stage {:?}", state.stage))?;
    Ok(Some(Placement {
        migration_id: record.migration_id.clone(),
        stage,
        r0: Arc::new(ring_of(&state.old_members)?),
        r1: Arc::new(ring_of(&state.new_members)?),
        rf_change: state.rf_change.clone().map(Into::into),
    }))
}

/// A ring of `members` (id and virtual nodes), all active.
pub fn ring_of(members: &[(String, u32)]) -> Result<Ring, String> {
    Ring::new(0, members.iter().map(|(id, v)| Member::new(id.as_str(), *v)).collect())
        .map_err(|e| e.to_string())
}

fn now_ms() -> i64 {
    crate::coordinator::shard::unix_now_us() / 1000
}

/// One step of the follower: load the newest migration, publish its placement, beat. When a
/// migration just ended, the membership and tenants are reloaded and broadcast first, so that
/// no core routes by the ring it replaced.
pub fn follow_once(shared: &Shared, last_seen: &mut Option<String>) -> Result<(), MetaError> {
    let lease = shared.config.migration.coordinator_lease_ms as i64;
    let started = now_ms();
    let newest = shared.meta.migrations(1)?.into_iter().next();
    let placement = match &newest {
        Some(record) => match placement_of(record) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(migration = %record.migration_id, error = %e, "unreadable migration state; keeping the current placement");
                return Ok(());
            }
        },
        None => None,
    };
    let ended = placement.is_none() && shared.placement.current().1.is_some();
    if ended {
        let nodes = resolve_nodes(shared.meta.nodes()?);
        for t in shared.meta.tenants()? {
            shared.broadcast(Update::Tenant(t));
        }
        let epoch = shared.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        shared.broadcast(Update::Nodes { epoch, nodes });
    }
    let seq = shared.publish_placement(placement.map(Arc::new));
    *last_seen = newest.as_ref().map(|r| r.migration_id.clone());
    // Report only what every core applied.
    let (migration_id, stage) = match shared.placement.current() {
        (s, Some(p)) if s == seq && shared.placement.applied_everywhere(seq) => {
            (p.migration_id.clone(), p.stage.as_str().to_owned())
        }
        (s, None) if s == seq && shared.placement.applied_everywhere(seq) => {
            (String::new(), String::new())
        }
        _ => return Ok(()),
    };
    shared.meta.beat(&CoordinatorBeat {
        coordinator_id: shared.config.node_id.clone(),
        at_ms: started,
        migration_id,
        stage,
    })?;
    shared.placement.renew(started + lease);
    Ok(())
}

/// Starts the follower thread: one [`follow_once`] now (so that the cores start on the current
/// placement), then one every 200 ms until the coordinator is dropped.
pub fn spawn_follower(shared: &Arc<Shared>) -> std::io::Result<()> {
    let mut last_seen = None;
    if let Err(e) = follow_once(shared, &mut last_seen) {
        tracing::warn!(error = %e, "cannot load the running migration at start");
    }
    let weak = Arc::downgrade(shared);
    std::thread::Builder::new().name("pairdb-placement".into()).spawn(move || {
        let mut failing = false;
        loop {
            std::thread::sleep(FOLLOW_INTERVAL);
            let Some(shared) = weak.upgrade() else { return };
            match follow_once(&shared, &mut last_seen) {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "cannot follow migrations; key-value traffic stops once the lease runs out");
                }
                Err(_) => {}
            }
        }
    })?;
    Ok(())
}

/// How often the follower reads the newest migration and beats.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);
