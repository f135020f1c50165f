//! [`MetadataStore`] for [`PostgresStore`]: tenants, storage nodes and migrations.

use postgres::Transaction;

use super::listen::notify;
use super::{check_id, corrupt, exists, DecodeError, Fail, PostgresStore};
use crate::core::limits::TenantLimits;
use crate::meta::{
    MetaError, MetadataStore, MigrationRecord, NodeRecord, NodeState, RecordKind, TenantRecord,
    TokenRecord,
};

impl MetadataStore for PostgresStore {
    fn create_tenant(&self, tenant: &TenantRecord) -> Result<(), MetaError> {
        check_id(RecordKind::Tenant, &tenant.tenant_id)?;
        let rf = to_i32(tenant.replication_factor);
        let [rps, bps, key, value] = limit_params(&tenant.limits);
        self.write(|tx| {
            tx.execute(
                "INSERT INTO tenants (tenant_id, replication_factor, created_at, updated_at,
                     requests_per_second, bytes_per_second, max_key_bytes, max_value_bytes)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &tenant.tenant_id,
                    &rf,
                    &tenant.created_at,
                    &tenant.updated_at,
                    &rps,
                    &bps,
                    &key,
                    &value,
                ],
            )
            .map_err(|e| exists(e, RecordKind::Tenant, &tenant.tenant_id))?;
            notify(tx, "tenants")
        })
    }

    fn tenant(&self, tenant_id: &str) -> Result<Option<TenantRecord>, MetaError> {
        self.with(|c| {
            let row = c.query_opt(
                "SELECT tenant_id, replication_factor, created_at, updated_at, requests_per_second,
                     bytes_per_second, max_key_bytes, max_value_bytes
                 FROM tenants WHERE tenant_id = $1",
                &[&tenant_id],
            )?;
            Ok(row.as_ref().map(tenant_from_row))
        })
    }

    fn tenants(&self) -> Result<Vec<TenantRecord>, MetaError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT tenant_id, replication_factor, created_at, updated_at, requests_per_second,
                     bytes_per_second, max_key_bytes, max_value_bytes
                 FROM tenants ORDER BY tenant_id",
                &[],
            )?;
            Ok(rows.iter().map(tenant_from_row).collect())
        })
    }

    fn update_replication_factor(
        &self,
        tenant_id: &str,
        replication_factor: u32,
        now: i64,
        migration: &MigrationRecord,
    ) -> Result<TenantRecord, MetaError> {
        check_id(RecordKind::Migration, &migration.migration_id)?;
        let rf = to_i32(replication_factor);
        self.write(|tx| {
            let Some(row) = tx.query_opt(
                "SELECT tenant_id, replication_factor, created_at, updated_at, requests_per_second,
                     bytes_per_second, max_key_bytes, max_value_bytes
                 FROM tenants WHERE tenant_id = $1 FOR UPDATE",
                &[&tenant_id],
            )?
            else {
                return Err(Fail::Meta(MetaError::NotFound {
                    kind: RecordKind::Tenant,
                    id: tenant_id.to_owned(),
                }));
            };
            let old = tenant_from_row(&row);
            tx.execute(
                "UPDATE tenants SET replication_factor = $2, updated_at = $3 WHERE tenant_id = $1",
                &[&tenant_id, &rf, &now],
            )?;
            put_migration(tx, migration)?;
            notify(tx, "tenants")?;
            Ok(old)
        })
    }

    fn update_tenant_limits(
        &self,
        tenant_id: &str,
        limits: &TenantLimits,
        now: i64,
    ) -> Result<TenantRecord, MetaError> {
        let [rps, bps, key, value] = limit_params(limits);
        self.write(|tx| {
            let Some(row) = tx.query_opt(
                "UPDATE tenants SET requests_per_second = $2, bytes_per_second = $3,
                     max_key_bytes = $4, max_value_bytes = $5, updated_at = $6
                 WHERE tenant_id = $1
                 RETURNING tenant_id, replication_factor, created_at, updated_at,
                     requests_per_second, bytes_per_second, max_key_bytes, max_value_bytes",
                &[&tenant_id, &rps, &bps, &key, &value, &now],
            )?
            else {
                return Err(Fail::Meta(MetaError::NotFound {
                    kind: RecordKind::Tenant,
                    id: tenant_id.to_owned(),
                }));
            };
            notify(tx, "tenants")?;
            Ok(tenant_from_row(&row))
        })
    }

    fn add_node(&self, node: &NodeRecord) -> Result<(), MetaError> {
        check_id(RecordKind::Node, &node.node_id)?;
        self.write(|tx| {
            tx.execute(
                "INSERT INTO storage_nodes (node_id, host, port, virtual_nodes, state, added_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &node_params(node).as_params(),
            )
            .map_err(|e| exists(e, RecordKind::Node, &node.node_id))?;
            notify(tx, "nodes")
        })
    }

    fn upsert_node(&self, node: &NodeRecord) -> Result<(), MetaError> {
        check_id(RecordKind::Node, &node.node_id)?;
        self.write(|tx| {
            tx.execute(
                "INSERT INTO storage_nodes (node_id, host, port, virtual_nodes, state, added_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (node_id) DO UPDATE SET host = EXCLUDED.host, port = EXCLUDED.port,
                     virtual_nodes = EXCLUDED.virtual_nodes, state = EXCLUDED.state,
                     added_at = EXCLUDED.added_at",
                &node_params(node).as_params(),
            )?;
            notify(tx, "nodes")
        })
    }

    fn remove_node(&self, node_id: &str) -> Result<NodeRecord, MetaError> {
        self.write(|tx| {
            let row = tx.query_opt(
                "DELETE FROM storage_nodes WHERE node_id = $1
                 RETURNING node_id, host, port, virtual_nodes, state, added_at",
                &[&node_id],
            )?;
            let Some(row) = row else {
                return Err(Fail::Meta(MetaError::NotFound {
                    kind: RecordKind::Node,
                    id: node_id.to_owned(),
                }));
            };
            let node = node_from_row(&row)?;
            notify(tx, "nodes")?;
            Ok(node)
        })
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>, MetaError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT node_id, host, port, virtual_nodes, state, added_at
                 FROM storage_nodes ORDER BY node_id",
                &[],
            )?;
            rows.iter().map(node_from_row).collect()
        })
    }

    fn put_migration(&self, migration: &MigrationRecord) -> Result<(), MetaError> {
        check_id(RecordKind::Migration, &migration.migration_id)?;
        self.write(|tx| put_migration(tx, migration))
    }

    fn migration(&self, migration_id: &str) -> Result<Option<MigrationRecord>, MetaError> {
        self.with(|c| {
            let row = c.query_opt(
                &format!("SELECT {MIGRATION_COLUMNS} FROM migrations WHERE migration_id = $1"),
                &[&migration_id],
            )?;
            Ok(row.as_ref().map(migration_from_row))
        })
    }

    fn migrations(&self, limit: usize) -> Result<Vec<MigrationRecord>, MetaError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|c| {
            let rows = c.query(
                &format!(
                    "SELECT {MIGRATION_COLUMNS} FROM migrations
                     ORDER BY started_at DESC, migration_id DESC LIMIT $1"
                ),
                &[&limit],
            )?;
            Ok(rows.iter().map(migration_from_row).collect())
        })
    }

    fn begin_migration(
        &self,
        migration: &MigrationRecord,
        node: Option<&NodeRecord>,
    ) -> Result<(), MetaError> {
        check_id(RecordKind::Migration, &migration.migration_id)?;
        if let Some(n) = node {
            check_id(RecordKind::Node, &n.node_id)?;
        }
        self.write(|tx| {
            // Serialises concurrent starts from several coordinators: one runs at a time.
            tx.batch_execute("LOCK TABLE migrations IN SHARE ROW EXCLUSIVE MODE")?;
            let active = tx.query_opt(
                "SELECT migration_id FROM migrations WHERE status IN ('PENDING', 'IN_PROGRESS')
                 LIMIT 1",
                &[],
            )?;
            if let Some(row) = active {
                return Err(Fail::Meta(MetaError::AlreadyExists {
                    kind: RecordKind::Migration,
                    id: row.get(0),
                }));
            }
            if let Some(n) = node {
                tx.execute(
                    "INSERT INTO storage_nodes (node_id, host, port, virtual_nodes, state, added_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &node_params(n).as_params(),
                )
                .map_err(|e| exists(e, RecordKind::Node, &n.node_id))?;
                notify(tx, "nodes")?;
            }
            put_migration(tx, migration)
        })
    }

    fn request_cancel(&self, migration_id: &str) -> Result<(), MetaError> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE migrations SET cancel_requested = true WHERE migration_id = $1",
                &[&migration_id],
            )?;
            if n == 0 {
                return Err(Fail::Meta(MetaError::NotFound {
                    kind: RecordKind::Migration,
                    id: migration_id.to_owned(),
                }));
            }
            Ok(())
        })
    }

    fn beat(&self, beat: &crate::meta::CoordinatorBeat) -> Result<(), MetaError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO coordinator_beats (coordinator_id, at_ms, migration_id, stage)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (coordinator_id) DO UPDATE SET at_ms = EXCLUDED.at_ms,
                     migration_id = EXCLUDED.migration_id, stage = EXCLUDED.stage",
                &[&beat.coordinator_id, &beat.at_ms, &beat.migration_id, &beat.stage],
            )?;
            Ok(())
        })
    }

    fn beats(&self) -> Result<Vec<crate::meta::CoordinatorBeat>, MetaError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT coordinator_id, at_ms, migration_id, stage FROM coordinator_beats",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| crate::meta::CoordinatorBeat {
                    coordinator_id: r.get(0),
                    at_ms: r.get(1),
                    migration_id: r.get(2),
                    stage: r.get(3),
                })
                .collect())
        })
    }

    fn create_token(&self, token: &TokenRecord) -> Result<(), MetaError> {
        check_id(RecordKind::Token, &token.token_id)?;
        self.write(|tx| {
            tx.execute(
                "INSERT INTO tokens
                     (token_id, tenant_id, role, created_at_us, revoked_at_us, secret_hash)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &token.token_id,
                    &token.tenant_id,
                    &token.role,
                    &token.created_at_us,
                    &token.revoked_at_us,
                    &token.secret_hash,
                ],
            )
            .map_err(|e| exists(e, RecordKind::Token, &token.token_id))?;
            notify(tx, "tokens")
        })
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, MetaError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT token_id, tenant_id, role, created_at_us, revoked_at_us, secret_hash
                 FROM tokens ORDER BY token_id",
                &[],
            )?;
            Ok(rows.iter().map(token_from_row).collect())
        })
    }

    fn revoke_token(&self, token_id: &str, now_us: i64) -> Result<TokenRecord, MetaError> {
        self.write(|tx| {
            let row = tx.query_opt(
                "UPDATE tokens SET revoked_at_us = CASE WHEN revoked_at_us = 0 THEN $2
                                                       ELSE revoked_at_us END
                 WHERE token_id = $1
                 RETURNING token_id, tenant_id, role, created_at_us, revoked_at_us, secret_hash",
                &[&token_id, &now_us],
            )?;
            let Some(row) = row else {
                return Err(Fail::Meta(MetaError::NotFound {
                    kind: RecordKind::Token,
                    id: token_id.to_owned(),
                }));
            };
            notify(tx, "tokens")?;
            Ok(token_from_row(&row))
        })
    }

    fn migration_counts(&self) -> Result<Vec<(String, u64)>, MetaError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT status, count(*) FROM migrations GROUP BY status ORDER BY status",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| {
                    let n: i64 = r.get(1);
                    (r.get(0), n as u64)
                })
                .collect())
        })
    }
}

fn put_migration(tx: &mut Transaction<'_>, m: &MigrationRecord) -> Result<(), Fail> {
    tx.execute(
        "INSERT INTO migrations (migration_id, migration_type, node_id, status, keys_migrated,
                                 total_keys, started_at, completed_at, error_message, state)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (migration_id) DO UPDATE SET migration_type = EXCLUDED.migration_type,
             node_id = EXCLUDED.node_id, status = EXCLUDED.status,
             keys_migrated = EXCLUDED.keys_migrated, total_keys = EXCLUDED.total_keys,
             started_at = EXCLUDED.started_at, completed_at = EXCLUDED.completed_at,
             error_message = EXCLUDED.error_message, state = EXCLUDED.state",
        &[
            &m.migration_id,
            &m.migration_type,
            &m.node_id,
            &m.status,
            &m.keys_migrated,
            &m.total_keys,
            &m.started_at,
            &m.completed_at,
            &m.error_message,
            &m.state,
        ],
    )?;
    Ok(())
}

/// A node's columns, owned so that they can be passed as `&[&dyn ToSql]`.
struct NodeParams {
    node_id: String,
    host: String,
    port: i32,
    virtual_nodes: i32,
    state: &'static str,
    added_at: i64,
}

impl NodeParams {
    fn as_params(&self) -> [&(dyn postgres::types::ToSql + Sync); 6] {
        [&self.node_id, &self.host, &self.port, &self.virtual_nodes, &self.state, &self.added_at]
    }
}

fn node_params(n: &NodeRecord) -> NodeParams {
    NodeParams {
        node_id: n.node_id.clone(),
        host: n.host.clone(),
        port: i32::from(n.port),
        virtual_nodes: to_i32(n.virtual_nodes),
        state: n.state.as_str(),
        added_at: n.added_at,
    }
}

fn token_from_row(r: &postgres::Row) -> TokenRecord {
    TokenRecord {
        token_id: r.get(0),
        tenant_id: r.get(1),
        role: r.get(2),
        created_at_us: r.get(3),
        revoked_at_us: r.get(4),
        secret_hash: r.get(5),
    }
}

fn tenant_from_row(r: &postgres::Row) -> TenantRecord {
    let rf: i32 = r.get(1);
    TenantRecord {
        tenant_id: r.get(0),
        // The CHECK constraint keeps it positive.
        replication_factor: rf.max(0) as u32,
        created_at: r.get(2),
        updated_at: r.get(3),
        // The CHECK constraints keep them non-negative.
        limits: TenantLimits {
            requests_per_second: r.get::<_, i64>(4).max(0) as u64,
            bytes_per_second: r.get::<_, i64>(5).max(0) as u64,
            max_key_bytes: r.get::<_, i64>(6).max(0) as u64,
            max_value_bytes: r.get::<_, i64>(7).max(0) as u64,
        },
    }
}

/// A tenant's limits as BIGINT parameters (values above `i64::MAX` are stored as `i64::MAX`:
/// unlimited in practice).
fn limit_params(l: &TenantLimits) -> [i64; 4] {
    [l.requests_per_second, l.bytes_per_second, l.max_key_bytes, l.max_value_bytes]
        .map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

fn node_from_row(r: &postgres::Row) -> Result<NodeRecord, Fail> {
    let node_id: String = r.get(0);
    let state: String = r.get(4);
    let port: i32 = r.get(2);
    let virtual_nodes: i32 = r.get(3);
    let state = NodeState::parse(&state)
        .ok_or_else(|| corrupt(RecordKind::Node, &node_id, DecodeError::NodeState(state)))?;
    let port =
        u16::try_from(port).map_err(|_| corrupt(RecordKind::Node, &node_id, DecodeError::Port))?;
    Ok(NodeRecord {
        host: r.get(1),
        port,
        virtual_nodes: virtual_nodes.max(0) as u32,
        state,
        added_at: r.get(5),
        node_id,
    })
}

fn to_i32(n: u32) -> i32 {
    // Replication factors and virtual node counts are validated far below i32::MAX.
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The columns [`migration_from_row`] reads, in order.
const MIGRATION_COLUMNS: &str = "migration_id, migration_type, node_id, status, keys_migrated, \
     total_keys, started_at, completed_at, error_message, state, cancel_requested";

fn migration_from_row(r: &postgres::Row) -> MigrationRecord {
    MigrationRecord {
        migration_id: r.get(0),
        migration_type: r.get(1),
        node_id: r.get(2),
        status: r.get(3),
        keys_migrated: r.get(4),
        total_keys: r.get(5),
        started_at: r.get(6),
        completed_at: r.get(7),
        error_message: r.get(8),
        state: r.get(9),
        cancel_requested: r.get(10),
    }
}
