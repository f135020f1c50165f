//! The management handlers of a shard: tenants (`CreateTenant`, `GetTenant`,
//! `UpdateReplicationFactor`), storage nodes (`AddStorageNode`, `RemoveStorageNode`,
//! `ListStorageNodes`) and `GetMigrationStatus`.
//!
//! Every change is made once, in the metadata store, on the blocking pool (never on a request
//! core: that includes resolving a node's host name), then broadcast to every core.

use std::{rc::Rc, sync::atomic::Ordering};

use crate::{
    coordinator::{
        limits::to_proto_limits,
        migrate, resolve_nodes,
        shard::{blocking, meta_error, unix_now_secs, Shard},
        Update,
    },
    core::migration::Stage,
    core::{
        ids::NodeId,
        ring::{DEFAULT_VIRTUAL_NODES, MAX_VIRTUAL_NODES},
        validate,
    },
    error::PairError,
    meta::{MetaError, MigrationRecord, NodeRecord, NodeState, RecordKind, TenantRecord},
    proto::{coordinator as api, storage as pb},
    rpc::CallContext,
};

impl Shard {
    pub(crate) async fn create_tenant(
        self: Rc<Self>,
        req: api::CreateTenantRequest,
        _: CallContext,
    ) -> Result<api::CreateTenantResponse, PairError> {
        validate::tenant_id(&req.tenant_id)?;
        let limits = self.checked_limits(req.limits.as_ref())?;
        let rf = match req.replication_factor {
            0 => self.shared.config.default_replication_factor,
            n => validate::replication_factor(n, self.registered_nodes())?,
        };
        if let Some(p) = self.placement().filter(|p| p.rf_change.is_none()) {
            // A membership change planned for the factors tenants had when it started: a tenant
            // of another factor would have no plan to move its keys.
            let groups = self.tenant_groups().await?;
            if !groups.iter().any(|g| g.0 == rf as usize) {
                return Err(PairError::MigrationInProgress(format!(
                    "migration {} is changing the ring and no tenant has replication factor {rf}; \
                     create this tenant once it completes, or with the factor of an existing tenant",
                    p.migration_id
                )));
            }
        }
        let now = unix_now_secs();
        let record = TenantRecord {
            tenant_id: req.tenant_id.clone(),
            replication_factor: rf,
            created_at: now,
            updated_at: now,
            limits,
        };
        let meta = self.shared.meta.clone();
        let stored = record.clone();
        blocking(move || meta.create_tenant(&stored)).await.map_err(meta_error)?;
        self.shared.broadcast(Update::Tenant(record.clone()));
        Ok(api::CreateTenantResponse {
            replication_factor: rf as i32,
            created_at: now,
            limits: Some(to_proto_limits(&record.limits)),
            effective_limits: Some(self.effective_proto(&record)),
            tenant_id: record.tenant_id,
        })
    }

    pub(crate) async fn get_tenant(
        self: Rc<Self>,
        req: api::GetTenantRequest,
        _: CallContext,
    ) -> Result<api::GetTenantResponse, PairError> {
        if req.tenant_id.is_empty() {
            return Err(PairError::invalid("tenant_id is required"));
        }
        let t = self.tenant(&req.tenant_id).await?;
        Ok(api::GetTenantResponse {
            tenant_id: t.tenant_id.clone(),
            replication_factor: t.replication_factor as i32,
            created_at: t.created_at,
            updated_at: t.updated_at,
            limits: Some(to_proto_limits(&t.limits)),
            effective_limits: Some(self.effective_proto(&t)),
        })
    }

    pub(crate) async fn update_replication_factor(
        self: Rc<Self>,
        req: api::UpdateReplicationFactorRequest,
        _: CallContext,
    ) -> Result<api::UpdateReplicationFactorResponse, PairError> {
        if req.tenant_id.is_empty() {
            return Err(PairError::invalid("tenant_id is required"));
        }
        let rf = validate::replication_factor(req.new_replication_factor, self.registered_nodes())?;
        let tenant = self.tenant(&req.tenant_id).await?;
        self.ensure_no_migration().await?;
        let old_rf = tenant.replication_factor;
        let now = unix_now_secs();
        if rf == old_rf {
            // Nothing moves: an empty change, complete at once.
            let mut m =
                self.new_migration(MigrationRecord::REPLICATION_CHANGE, &req.tenant_id, now);
            m.status = MigrationRecord::COMPLETED.into();
            m.completed_at = now;
            let meta = self.shared.meta.clone();
            let stored = m.clone();
            blocking(move || meta.put_migration(&stored)).await.map_err(meta_error)?;
            return Ok(api::UpdateReplicationFactorResponse {
                tenant_id: req.tenant_id,
                old_replication_factor: old_rf as i32,
                new_replication_factor: rf as i32,
                migration_id: m.migration_id,
                updated_at: now,
            });
        }
        let members = self.members();
        let state = migrate::State {
            old_members: members.clone(),
            new_members: members,
            rf_change: Some(migrate::RfChangeState {
                tenant_id: req.tenant_id.clone(),
                rf0: old_rf as usize,
                rf1: rf as usize,
            }),
            groups: vec![(old_rf as usize, rf as usize)],
            ..Default::default()
        };
        let m =
            self.begin(MigrationRecord::REPLICATION_CHANGE, &req.tenant_id, state, None).await?;
        Ok(api::UpdateReplicationFactorResponse {
            tenant_id: req.tenant_id,
            old_replication_factor: old_rf as i32,
            new_replication_factor: rf as i32,
            migration_id: m,
            updated_at: now,
        })
    }

    /// The ring's members (active nodes), as stored in a migration state.
    fn members(&self) -> Vec<(String, u32)> {
        let mut members: Vec<(String, u32)> = self
            .node_records()
            .into_iter()
            .filter(|n| n.state != NodeState::Joining)
            .map(|n| (n.node_id, n.virtual_nodes))
            .collect();
        members.sort();
        members
    }

    /// The replication-factor groups a membership change plans for: every tenant's factor.
    async fn tenant_groups(&self) -> Result<Vec<(usize, usize)>, PairError> {
        let meta = self.shared.meta.clone();
        let tenants = blocking(move || meta.tenants()).await.map_err(meta_error)?;
        let mut rfs: Vec<usize> = tenants.iter().map(|t| t.replication_factor as usize).collect();
        rfs.sort_unstable();
        rfs.dedup();
        Ok(rfs.into_iter().map(|r| (r, r)).collect())
    }

    /// Refuses a change while a migration is active (MIGRATION_IN_PROGRESS), before any other
    /// check, so that the operator learns what blocks them first. `begin_migration` checks it
    /// again atomically.
    async fn ensure_no_migration(&self) -> Result<(), PairError> {
        let meta = self.shared.meta.clone();
        let newest = blocking(move || meta.migrations(1)).await.map_err(meta_error)?;
        match newest.into_iter().next().filter(|m| m.is_active()) {
            Some(m) => Err(PairError::MigrationInProgress(format!(
                "migration {id} is running; one change runs at a time (watch it with `pairdb migration status {id}`, or cancel it)",
                id = m.migration_id
            ))),
            None => Ok(()),
        }
    }

    /// Answers whether `node` answers a Stats call now.
    async fn reachable(&self, node: &str) -> bool {
        let Some(link) = self.link(&NodeId::new(node.to_owned())) else { return false };
        link.call::<_, pb::StatsResponse>(
            "/pairdb.storage.v1.StorageService/Stats",
            &pb::StatsRequest {},
        )
        .await
        .is_ok()
    }

    /// Stores a new migration (refused while another is active) and starts its driver on this
    /// core. Returns its id.
    async fn begin(
        self: &Rc<Self>,
        migration_type: &str,
        subject: &str,
        mut state: migrate::State,
        node: Option<NodeRecord>,
    ) -> Result<String, PairError> {
        let now = unix_now_secs();
        state.owner = self.shared.config.node_id.clone();
        state.stage = Stage::Planned.as_str().into();
        state.thin_ranges = migrate::plan::thin_ranges(&state).map_err(PairError::Internal)?;
        let mut record = self.new_migration(migration_type, subject, now);
        record.state = state.encode();
        let meta = self.shared.meta.clone();
        let (stored, n) = (record.clone(), node.clone());
        let begun = blocking(move || meta.begin_migration(&stored, n.as_ref())).await;
        match begun {
            Ok(()) => {}
            Err(MetaError::AlreadyExists { kind: RecordKind::Migration, id }) => {
                return Err(PairError::MigrationInProgress(format!(
                    "migration {id} is running; one change runs at a time (watch it with `pairdb migration status {id}`, or cancel it)"
                )))
            }
            Err(e) => return Err(meta_error(e)),
        }
        if node.is_some() {
            // The joining node gets a link on every core; the ring is unchanged.
            let meta = self.shared.meta.clone();
            let nodes =
                blocking(move || meta.nodes().map(resolve_nodes)).await.map_err(meta_error)?;
            self.broadcast_nodes(nodes);
        }
        migrate::adopt::start(self.clone(), record.clone());
        Ok(record.migration_id)
    }

    /// Storage nodes registered (every member of the ring, up or down).
    fn registered_nodes(&self) -> usize {
        self.node_records().len()
    }

    pub(crate) async fn add_storage_node(
        self: Rc<Self>,
        req: api::AddStorageNodeRequest,
        _: CallContext,
    ) -> Result<api::AddStorageNodeResponse, PairError> {
        if req.node_id.is_empty() || req.node_id.len() > 128 {
            return Err(PairError::invalid("node_id must be 1 to 128 bytes"));
        }
        if req.host.is_empty() {
            return Err(PairError::invalid("host is required"));
        }
        let port = u16::try_from(req.port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| PairError::invalid("port must be 1 to 65535"))?;
        let virtual_nodes = match req.virtual_nodes {
            0 => DEFAULT_VIRTUAL_NODES,
            n if (1..=MAX_VIRTUAL_NODES as i32).contains(&n) => n as u32,
            _ => return Err(PairError::invalid("virtual_nodes must be 1 to 1024")),
        };
        let now = unix_now_secs();
        let record = NodeRecord {
            node_id: req.node_id.clone(),
            host: req.host.clone(),
            port,
            virtual_nodes,
            state: NodeState::Active,
            added_at: now,
        };
        let addr = {
            let (host, port) = (record.host.clone(), record.port);
            blocking(move || crate::config::resolve("host", &host, port)).await
        };
        let addr = addr.map_err(|e| PairError::invalid(e.to_string()))?;
        // The same request again while its migration runs answers that migration.
        let meta = self.shared.meta.clone();
        let newest = blocking(move || meta.migrations(1)).await.map_err(meta_error)?;
        if let Some(m) = newest.into_iter().next().filter(|m| m.is_active()) {
            let same = m.migration_type == MigrationRecord::NODE_ADDITION
                && m.node_id == req.node_id
                && self.node(&req.node_id).is_some_and(|n| {
                    n.host == record.host
                        && n.port == record.port
                        && n.virtual_nodes == virtual_nodes
                });
            if same {
                return Ok(api::AddStorageNodeResponse {
                    node_id: req.node_id,
                    migration_id: m.migration_id,
                    message: "this node is already being added; its migration is running".into(),
                });
            }
        }
        self.ensure_no_migration().await?;
        // Data is streamed to it at once: a node that does not answer would stall the change.
        probe(addr, &req.node_id, &self.link_config.client).await?;
        if self.node(&req.node_id).is_some() {
            return Err(PairError::NodeExists(format!(
                "storage node {:?} already exists",
                req.node_id
            )));
        }
        let old_members = self.members();
        let mut new_members = old_members.clone();
        new_members.push((req.node_id.clone(), virtual_nodes));
        new_members.sort();
        let state = migrate::State {
            old_members,
            new_members,
            groups: self.tenant_groups().await?,
            ..Default::default()
        };
        let record = NodeRecord { state: NodeState::Joining, ..record };
        let id =
            self.begin(MigrationRecord::NODE_ADDITION, &req.node_id, state, Some(record)).await?;
        Ok(api::AddStorageNodeResponse {
            node_id: req.node_id,
            migration_id: id,
            message: "node joining: its ranges are being copied to it; it serves them once the migration completes".into(),
        })
    }

    pub(crate) async fn remove_storage_node(
        self: Rc<Self>,
        req: api::RemoveStorageNodeRequest,
        _: CallContext,
    ) -> Result<api::RemoveStorageNodeResponse, PairError> {
        let Some(record) = self.node(&req.node_id) else {
            return Err(PairError::NodeNotFound { node_id: req.node_id });
        };
        self.ensure_no_migration().await?;
        let old_members = self.members();
        let new_members: Vec<(String, u32)> =
            old_members.iter().filter(|(id, _)| *id != req.node_id).cloned().collect();
        let groups = self.tenant_groups().await?;
        if let Some(rf) = groups.iter().map(|g| g.1).max().filter(|rf| *rf > new_members.len()) {
            return Err(PairError::NodeInUse(format!(
                "removing storage node {:?} would leave {} nodes, fewer than a tenant's replication factor {rf}; lower that factor first",
                req.node_id,
                new_members.len()
            )));
        }
        if !req.force && !self.reachable(&req.node_id).await {
            return Err(PairError::NodeInUse(format!(
                "storage node {:?} is down, so its data cannot be drained from it; bring it back, or remove it with force to re-replicate its ranges from the surviving replicas",
                req.node_id
            )));
        }
        let state = migrate::State {
            old_members,
            new_members,
            groups,
            dead: req.force.then(|| req.node_id.clone()),
            ..Default::default()
        };
        let id = self.begin(MigrationRecord::NODE_REMOVAL, &record.node_id, state, None).await?;
        let meta = self.shared.meta.clone();
        let draining = NodeRecord { state: NodeState::Draining, ..record.clone() };
        blocking(move || meta.upsert_node(&draining)).await.map_err(meta_error)?;
        Ok(api::RemoveStorageNodeResponse {
            node_id: record.node_id,
            migration_id: id,
            message: if req.force {
                "node removed: its ranges are being re-replicated from the surviving replicas"
                    .into()
            } else {
                "node draining: its ranges are being copied to their new owners".into()
            },
        })
    }

    pub(crate) async fn list_storage_nodes(
        self: Rc<Self>,
        _: api::ListStorageNodesRequest,
        _: CallContext,
    ) -> Result<api::ListStorageNodesResponse, PairError> {
        let records = self.node_records();
        let calls = records.iter().map(|r| {
            let link = self.link(&NodeId::new(r.node_id.clone()));
            async move {
                match link {
                    Some(link) if !link.is_down() => link
                        .call::<_, pb::StatsResponse>(
                            "/pairdb.storage.v1.StorageService/Stats",
                            &pb::StatsRequest {},
                        )
                        .await
                        .ok(),
                    _ => None,
                }
            }
        });
        let stats = futures_util::future::join_all(calls).await;
        let nodes = records
            .into_iter()
            .zip(stats)
            .map(|(r, s)| {
                let is_down = self.is_down(&r.node_id) || s.is_none();
                api::StorageNodeInfo {
                    status: if is_down { "DOWN".into() } else { r.state.as_str().into() },
                    keys_count: s.as_ref().map(|s| s.key_count as i64).unwrap_or(-1),
                    disk_usage_percent: s.as_ref().map(|s| s.disk_usage_percent).unwrap_or(-1.0),
                    node_id: r.node_id,
                    host: r.host,
                    port: i32::from(r.port),
                    virtual_nodes: r.virtual_nodes as i32,
                }
            })
            .collect();
        Ok(api::ListStorageNodesResponse { nodes })
    }

    pub(crate) async fn get_migration_status(
        self: Rc<Self>,
        req: api::GetMigrationStatusRequest,
        _: CallContext,
    ) -> Result<api::GetMigrationStatusResponse, PairError> {
        if req.migration_id.is_empty() {
            return Err(PairError::invalid("migration_id is required"));
        }
        let meta = self.shared.meta.clone();
        let id = req.migration_id.clone();
        let Some(m) = blocking(move || meta.migration(&id)).await.map_err(meta_error)? else {
            return Err(PairError::MigrationNotFound { migration_id: req.migration_id });
        };
        Ok(status_of(m))
    }

    pub(crate) async fn list_migrations(
        self: Rc<Self>,
        req: api::ListMigrationsRequest,
        _: CallContext,
    ) -> Result<api::ListMigrationsResponse, PairError> {
        let limit = match req.limit {
            0 => 20,
            n if (1..=1000).contains(&n) => n as usize,
            _ => return Err(PairError::invalid("limit must be 0 (20) to 1000")),
        };
        let meta = self.shared.meta.clone();
        let list = blocking(move || meta.migrations(limit)).await.map_err(meta_error)?;
        Ok(api::ListMigrationsResponse { migrations: list.into_iter().map(status_of).collect() })
    }

    pub(crate) async fn cancel_migration(
        self: Rc<Self>,
        req: api::CancelMigrationRequest,
        _: CallContext,
    ) -> Result<api::CancelMigrationResponse, PairError> {
        if req.migration_id.is_empty() {
            return Err(PairError::invalid("migration_id is required"));
        }
        let meta = self.shared.meta.clone();
        let id = req.migration_id.clone();
        let Some(m) = blocking(move || meta.migration(&id)).await.map_err(meta_error)? else {
            return Err(PairError::MigrationNotFound { migration_id: req.migration_id });
        };
        let stage = migrate::State::decode(&m.state)
            .ok()
            .and_then(|s| Stage::parse(&s.stage))
            .unwrap_or(Stage::Completed);
        if !m.is_active() || matches!(stage, Stage::UseNew | Stage::Cleanup | Stage::Completed) {
            return Err(PairError::MigrationNotCancellable(format!(
                "migration {} is {} (stage {}): reads and writes already moved to the new placement, so going back would lose writes",
                m.migration_id,
                m.status,
                stage.as_str()
            )));
        }
        let meta = self.shared.meta.clone();
        let id = m.migration_id.clone();
        blocking(move || meta.request_cancel(&id)).await.map_err(meta_error)?;
        Ok(api::CancelMigrationResponse {
            migration_id: m.migration_id,
            status: m.status,
            stage: stage.as_str().into(),
            message: "cancel requested: the migration reverts to the placement it started from"
                .into(),
        })
    }

    fn broadcast_nodes(&self, nodes: Vec<crate::coordinator::ResolvedNode>) {
        let epoch = self.shared.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        self.shared.broadcast(Update::Nodes { epoch, nodes });
    }

    /// A new migration record, PENDING, with no state yet.
    fn new_migration(&self, migration_type: &str, subject: &str, now: i64) -> MigrationRecord {
        MigrationRecord {
            migration_id: self.new_id("mig"),
            migration_type: migration_type.into(),
            node_id: subject.into(),
            status: MigrationRecord::PENDING.into(),
            started_at: now,
            ..Default::default()
        }
    }
}

/// The API's view of a stored migration.
fn status_of(m: MigrationRecord) -> api::GetMigrationStatusResponse {
    let state = migrate::State::decode(&m.state).ok();
    let done = m.status == MigrationRecord::COMPLETED;
    let percentage = match &state {
        _ if done => 100.0,
        Some(s) => f64::from(s.percentage.min(99)),
        // Records from before data movement: nothing was moved, nothing is left.
        None if m.total_keys == 0 => 100.0,
        None => (100.0 * m.keys_migrated as f64 / m.total_keys as f64).min(99.0),
    };
    let st = state.unwrap_or_default();
    let stage = if st.stage.is_empty() {
        if done {
            Stage::Completed.as_str().to_owned()
        } else {
            String::new()
        }
    } else {
        st.stage.clone()
    };
    let running = m.is_active();
    api::GetMigrationStatusResponse {
        migration_id: m.migration_id,
        migration_type: m.migration_type,
        node_id: m.node_id,
        status: m.status,
        progress: Some(api::MigrationProgress {
            keys_migrated: m.keys_migrated,
            total_keys: m.total_keys,
            percentage,
        }),
        started_at: m.started_at,
        completed_at: m.completed_at,
        error_message: m.error_message,
        stage,
        bytes_migrated: st.bytes as i64,
        bytes_per_second: if running { st.bytes_per_sec } else { 0.0 },
        keys_per_second: if running { st.keys_per_sec } else { 0.0 },
        estimated_completion_at: if running { st.eta } else { 0 },
        blocked_on: if running { st.blocked_on } else { String::new() },
        segments_done: st.segments_done as i64,
        segments_total: st.segments_total as i64,
    }
}

/// Checks that the storage node at `addr` answers a health check as `node_id`.
async fn probe(
    addr: std::net::SocketAddr,
    node_id: &str,
    links: &crate::rpc::ClientConfig,
) -> Result<(), PairError> {
    let unavailable = |why: String| {
        PairError::StorageUnavailable(format!(
            "storage node {node_id:?} at {addr} does not answer ({why}); start it before adding it"
        ))
    };
    // The cluster secret and TLS, if any: a storage node that requires them refuses
    // HealthCheck without.
    let config = crate::rpc::ClientConfig {
        authorization: links.authorization.clone(),
        tls: links.tls.clone(),
        ..Default::default()
    };
    let ch = glommio::timer::timeout(std::time::Duration::from_secs(3), async {
        Ok(crate::rpc::Channel::connect(addr, &config).await)
    })
    .await
    .map_err(|_| unavailable("connect timed out".into()))?
    .map_err(|e| unavailable(e.message.to_string()))?;
    let reply: pb::HealthCheckResponse = ch
        .unary(
            "/pairdb.storage.v1.StorageService/HealthCheck",
            &pb::HealthCheckRequest {},
            Some(std::time::Duration::from_secs(3)),
        )
        .await
        .map_err(|e| unavailable(e.message.to_string()))?;
    if reply.node_id != node_id {
        return Err(PairError::invalid(format!(
            "the storage node at {addr} is {:?}, not {node_id:?}",
            reply.node_id
        )));
    }
    Ok(())
}
