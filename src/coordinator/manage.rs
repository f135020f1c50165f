//! The management handlers of a shard: tenants (`CreateTenant`, `GetTenant`,
//! `UpdateReplicationFactor`), storage nodes (`AddStorageNode`, `RemoveStorageNode`,
//! `ListStorageNodes`) and `GetMigrationStatus`.
//!
//! Every change is made once, in the metadata store, on the blocking pool (never on a request
//! core: that includes resolving a node's host name), then broadcast to every core.

use std::{rc::Rc, sync::atomic::Ordering};

use crate::{
    coordinator::{
        resolve_nodes,
        shard::{blocking, meta_error, unix_now_secs, Shard},
        Update,
    },
    core::{
        ids::NodeId,
        ring::{DEFAULT_VIRTUAL_NODES, MAX_VIRTUAL_NODES},
        validate,
    },
    error::PairError,
    meta::{MigrationRecord, NodeRecord, NodeState, TenantRecord},
    proto::{coordinator as api, storage as pb},
    rpc::{CallContext, Status},
};

impl Shard {
    pub(crate) async fn create_tenant(
        self: Rc<Self>,
        req: api::CreateTenantRequest,
        _: CallContext,
    ) -> Result<api::CreateTenantResponse, PairError> {
        validate::tenant_id(&req.tenant_id)?;
        let rf = match req.replication_factor {
            0 => self.shared.config.default_replication_factor,
            n => validate::replication_factor(n, self.registered_nodes())?,
        };
        let now = unix_now_secs();
        let record = TenantRecord {
            tenant_id: req.tenant_id.clone(),
            replication_factor: rf,
            created_at: now,
            updated_at: now,
        };
        let meta = self.shared.meta.clone();
        let stored = record.clone();
        blocking(move || meta.create_tenant(&stored)).await.map_err(meta_error)?;
        self.shared.broadcast(Update::Tenant(record.clone()));
        Ok(api::CreateTenantResponse {
            tenant_id: record.tenant_id,
            replication_factor: rf as i32,
            created_at: now,
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
        let now = unix_now_secs();
        let migration = self.ring_change(MigrationRecord::REPLICATION_CHANGE, &req.tenant_id, now);
        let meta = self.shared.meta.clone();
        let (id, m) = (req.tenant_id.clone(), migration.clone());
        let old = blocking(move || meta.update_replication_factor(&id, rf, now, &m))
            .await
            .map_err(meta_error)?;
        self.shared.broadcast(Update::Tenant(TenantRecord {
            replication_factor: rf,
            updated_at: now,
            ..old.clone()
        }));
        Ok(api::UpdateReplicationFactorResponse {
            tenant_id: req.tenant_id,
            old_replication_factor: old.replication_factor as i32,
            new_replication_factor: rf as i32,
            migration_id: migration.migration_id,
            updated_at: now,
        })
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
        let migration = self.ring_change(MigrationRecord::NODE_ADDITION, &req.node_id, now);
        let meta = self.shared.meta.clone();
        let (r, m) = (record.clone(), migration.clone());
        let nodes = blocking(move || {
            // Name resolution blocks (getaddrinfo): here, on the blocking pool, never on a core.
            crate::config::resolve("host", &r.host, r.port)
                .map_err(|e| PairError::invalid(e.to_string()))?;
            meta.add_node(&r).map_err(meta_error)?;
            meta.put_migration(&m).map_err(meta_error)?;
            Ok::<_, PairError>(resolve_nodes(meta.nodes().map_err(meta_error)?))
        })
        .await?;
        self.broadcast_nodes(nodes);
        Ok(api::AddStorageNodeResponse {
            node_id: req.node_id,
            migration_id: migration.migration_id,
            message:
                "node added to the ring; existing keys are not moved to it (data movement is not \
                      implemented yet): it fills through new writes, read repair and hinted handoff"
                    .into(),
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
        if !req.force {
            let link = self.link(&NodeId::new(req.node_id.clone()));
            let stats = match link {
                Some(link) => {
                    link.call::<_, pb::StatsResponse>(
                        "/pairdb.storage.v1.StorageService/Stats",
                        &pb::StatsRequest {},
                    )
                    .await
                }
                None => Err(Status::unavailable("no link")),
            };
            match stats {
                Ok(s) if s.key_count == 0 => {}
                Ok(s) => {
                    return Err(PairError::NodeInUse(format!(
                        "storage node {:?} still holds {} keys; data movement is not implemented yet, so removing it \
                         loses those copies (use force to remove anyway)",
                        req.node_id, s.key_count
                    )))
                }
                Err(e) => {
                    return Err(PairError::NodeInUse(format!(
                        "cannot confirm that storage node {:?} is empty ({e}); use force to remove it anyway",
                        req.node_id
                    )))
                }
            }
        }
        let now = unix_now_secs();
        let migration = self.ring_change(MigrationRecord::NODE_REMOVAL, &record.node_id, now);
        let meta = self.shared.meta.clone();
        let (id, m) = (record.node_id.clone(), migration.clone());
        let nodes = blocking(move || {
            meta.remove_node(&id)?;
            meta.put_migration(&m)?;
            Ok(resolve_nodes(meta.nodes()?))
        })
        .await
        .map_err(meta_error)?;
        self.broadcast_nodes(nodes);
        Ok(api::RemoveStorageNodeResponse {
            node_id: record.node_id,
            migration_id: migration.migration_id,
            message: "node removed from the ring".into(),
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
        let percentage = if m.total_keys > 0 {
            100.0 * m.keys_migrated as f64 / m.total_keys as f64
        } else {
            100.0
        };
        Ok(api::GetMigrationStatusResponse {
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
            ..Default::default()
        })
    }

    fn broadcast_nodes(&self, nodes: Vec<crate::coordinator::ResolvedNode>) {
        let epoch = self.shared.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        self.shared.broadcast(Update::Nodes { epoch, nodes });
    }

    /// The migration record of a membership or replication change. Nothing is copied in the
    /// background yet (data movement is a later piece of work): new replicas fill through writes,
    /// read repair and hints, so the record is complete at once, with no keys moved, and says so
    /// instead of pretending to move data.
    fn ring_change(&self, migration_type: &str, subject: &str, now: i64) -> MigrationRecord {
        MigrationRecord {
            migration_id: self.new_id("mig"),
            migration_type: migration_type.into(),
            node_id: subject.into(),
            status: MigrationRecord::COMPLETED.into(),
            keys_migrated: 0,
            total_keys: 0,
            started_at: now,
            completed_at: now,
            error_message: String::new(),
        }
    }
}
