//! [`MetadataStore`] for [`EmbeddedStore`]: tenants, storage nodes and migrations, and their
//! prost encodings.

use prost::Message;
use redb::ReadableTable;

use super::{
    check_id, corrupt, DecodeError, EmbeddedStore, Fail, MIGRATIONS, NODES, TENANTS, TOKENS,
};
use crate::core::limits::TenantLimits;
use crate::meta::{
    MetaError, MetadataStore, MigrationRecord, NodeRecord, NodeState, RecordKind, TenantRecord,
    TokenRecord,
};

impl MetadataStore for EmbeddedStore {
    fn create_tenant(&self, tenant: &TenantRecord) -> Result<(), MetaError> {
        check_id(RecordKind::Tenant, &tenant.tenant_id)?;
        self.write(|txn| {
            let mut table = txn.open_table(TENANTS)?;
            if table.get(tenant.tenant_id.as_str())?.is_some() {
                return Err(Fail::Meta(MetaError::AlreadyExists {
                    kind: RecordKind::Tenant,
                    id: tenant.tenant_id.clone(),
                }));
            }
            table.insert(tenant.tenant_id.as_str(), encode_tenant(tenant).as_slice())?;
            Ok(())
        })
    }

    fn tenant(&self, tenant_id: &str) -> Result<Option<TenantRecord>, MetaError> {
        self.read(|txn| {
            let table = txn.open_table(TENANTS)?;
            let found = table.get(tenant_id)?;
            found.map(|g| decode_tenant(tenant_id, g.value())).transpose()
        })
    }

    fn tenants(&self) -> Result<Vec<TenantRecord>, MetaError> {
        self.read(|txn| {
            let table = txn.open_table(TENANTS)?;
            let mut out = Vec::new();
            for row in table.iter()? {
                let (k, v) = row?;
                out.push(decode_tenant(k.value(), v.value())?);
            }
            Ok(out)
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
        self.write(|txn| {
            let mut tenants = txn.open_table(TENANTS)?;
            let old = match tenants.get(tenant_id)? {
                Some(g) => decode_tenant(tenant_id, g.value())?,
                None => {
                    return Err(Fail::Meta(MetaError::NotFound {
                        kind: RecordKind::Tenant,
                        id: tenant_id.to_owned(),
                    }))
                }
            };
            let new = TenantRecord { replication_factor, updated_at: now, ..old.clone() };
            tenants.insert(tenant_id, encode_tenant(&new).as_slice())?;
            let mut migrations = txn.open_table(MIGRATIONS)?;
            migrations
                .insert(migration.migration_id.as_str(), encode_migration(migration).as_slice())?;
            Ok(old)
        })
    }

    fn update_tenant_limits(
        &self,
        tenant_id: &str,
        limits: &TenantLimits,
        now: i64,
    ) -> Result<TenantRecord, MetaError> {
        self.write(|txn| {
            let mut tenants = txn.open_table(TENANTS)?;
            let old = match tenants.get(tenant_id)? {
                Some(g) => decode_tenant(tenant_id, g.value())?,
                None => {
                    return Err(Fail::Meta(MetaError::NotFound {
                        kind: RecordKind::Tenant,
                        id: tenant_id.to_owned(),
                    }))
                }
            };
            let new = TenantRecord { limits: *limits, updated_at: now, ..old };
            tenants.insert(tenant_id, encode_tenant(&new).as_slice())?;
            Ok(new)
        })
    }

    fn add_node(&self, node: &NodeRecord) -> Result<(), MetaError> {
        check_id(RecordKind::Node, &node.node_id)?;
        self.write(|txn| {
            let mut table = txn.open_table(NODES)?;
            if table.get(node.node_id.as_str())?.is_some() {
                return Err(Fail::Meta(MetaError::AlreadyExists {
                    kind: RecordKind::Node,
                    id: node.node_id.clone(),
                }));
            }
            table.insert(node.node_id.as_str(), encode_node(node).as_slice())?;
            Ok(())
        })
    }

    fn upsert_node(&self, node: &NodeRecord) -> Result<(), MetaError> {
        check_id(RecordKind::Node, &node.node_id)?;
        self.write(|txn| {
            let mut table = txn.open_table(NODES)?;
            table.insert(node.node_id.as_str(), encode_node(node).as_slice())?;
            Ok(())
        })
    }

    fn remove_node(&self, node_id: &str) -> Result<NodeRecord, MetaError> {
        self.write(|txn| {
            let mut table = txn.open_table(NODES)?;
            let removed = table.remove(node_id)?;
            match removed {
                Some(g) => decode_node(node_id, g.value()),
                None => Err(Fail::Meta(MetaError::NotFound {
                    kind: RecordKind::Node,
                    id: node_id.to_owned(),
                })),
            }
        })
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>, MetaError> {
        self.read(|txn| {
            let table = txn.open_table(NODES)?;
            let mut out = Vec::new();
            for row in table.iter()? {
                let (k, v) = row?;
                out.push(decode_node(k.value(), v.value())?);
            }
            Ok(out)
        })
    }

    fn put_migration(&self, migration: &MigrationRecord) -> Result<(), MetaError> {
        check_id(RecordKind::Migration, &migration.migration_id)?;
        self.write(|txn| {
            let mut table = txn.open_table(MIGRATIONS)?;
            let id = migration.migration_id.as_str();
            // The cancel flag is only ever set by `request_cancel`: keep what is stored.
            let cancel = match table.get(id)? {
                Some(g) => decode_migration(id, g.value())?.cancel_requested,
                None => false,
            };
            let m = MigrationRecord { cancel_requested: cancel, ..migration.clone() };
            table.insert(id, encode_migration(&m).as_slice())?;
            Ok(())
        })
    }

    fn migrations(&self, limit: usize) -> Result<Vec<MigrationRecord>, MetaError> {
        let mut all = self.read(|txn| {
            let table = txn.open_table(MIGRATIONS)?;
            let mut out = Vec::new();
            for row in table.iter()? {
                let (k, v) = row?;
                out.push(decode_migration(k.value(), v.value())?);
            }
            Ok(out)
        })?;
        all.sort_by(|a, b| (b.started_at, &b.migration_id).cmp(&(a.started_at, &a.migration_id)));
        all.truncate(limit);
        Ok(all)
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
        self.write(|txn| {
            let mut table = txn.open_table(MIGRATIONS)?;
            for row in table.iter()? {
                let (k, v) = row?;
                let m = decode_migration(k.value(), v.value())?;
                if m.is_active() {
                    return Err(Fail::Meta(MetaError::AlreadyExists {
                        kind: RecordKind::Migration,
                        id: m.migration_id,
                    }));
                }
            }
            if let Some(n) = node {
                let mut nodes = txn.open_table(NODES)?;
                if nodes.get(n.node_id.as_str())?.is_some() {
                    return Err(Fail::Meta(MetaError::AlreadyExists {
                        kind: RecordKind::Node,
                        id: n.node_id.clone(),
                    }));
                }
                nodes.insert(n.node_id.as_str(), encode_node(n).as_slice())?;
            }
            table
                .insert(migration.migration_id.as_str(), encode_migration(migration).as_slice())?;
            Ok(())
        })
    }

    fn request_cancel(&self, migration_id: &str) -> Result<(), MetaError> {
        self.write(|txn| {
            let mut table = txn.open_table(MIGRATIONS)?;
            let Some(found) = table.get(migration_id)?.map(|g| g.value().to_vec()) else {
                return Err(Fail::Meta(MetaError::NotFound {
                    kind: RecordKind::Migration,
                    id: migration_id.to_owned(),
                }));
            };
            let m = decode_migration(migration_id, &found)?;
            let m = MigrationRecord { cancel_requested: true, ..m };
            table.insert(migration_id, encode_migration(&m).as_slice())?;
            Ok(())
        })
    }

    fn beat(&self, beat: &crate::meta::CoordinatorBeat) -> Result<(), MetaError> {
        // One process owns an embedded store: beats live in memory only.
        let mut beats = self.beats.lock().unwrap_or_else(|e| e.into_inner());
        beats.insert(beat.coordinator_id.clone(), beat.clone());
        Ok(())
    }

    fn beats(&self) -> Result<Vec<crate::meta::CoordinatorBeat>, MetaError> {
        let beats = self.beats.lock().unwrap_or_else(|e| e.into_inner());
        Ok(beats.values().cloned().collect())
    }

    fn create_token(&self, token: &TokenRecord) -> Result<(), MetaError> {
        check_id(RecordKind::Token, &token.token_id)?;
        self.write(|txn| {
            let mut table = txn.open_table(TOKENS)?;
            if table.get(token.token_id.as_str())?.is_some() {
                return Err(Fail::Meta(MetaError::AlreadyExists {
                    kind: RecordKind::Token,
                    id: token.token_id.clone(),
                }));
            }
            table.insert(token.token_id.as_str(), encode_token(token).as_slice())?;
            Ok(())
        })
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, MetaError> {
        self.read(|txn| {
            let table = txn.open_table(TOKENS)?;
            let mut out = Vec::new();
            for row in table.iter()? {
                let (k, v) = row?;
                out.push(decode_token(k.value(), v.value())?);
            }
            Ok(out)
        })
    }

    fn revoke_token(&self, token_id: &str, now_us: i64) -> Result<TokenRecord, MetaError> {
        self.write(|txn| {
            let mut table = txn.open_table(TOKENS)?;
            let found = table.get(token_id)?.map(|g| decode_token(token_id, g.value()));
            let Some(mut token) = found.transpose()? else {
                return Err(Fail::Meta(MetaError::NotFound {
                    kind: RecordKind::Token,
                    id: token_id.to_owned(),
                }));
            };
            if token.revoked_at_us == 0 {
                token.revoked_at_us = now_us;
                table.insert(token_id, encode_token(&token).as_slice())?;
            }
            Ok(token)
        })
    }

    fn migration(&self, migration_id: &str) -> Result<Option<MigrationRecord>, MetaError> {
        self.read(|txn| {
            let table = txn.open_table(MIGRATIONS)?;
            let found = table.get(migration_id)?;
            found.map(|g| decode_migration(migration_id, g.value())).transpose()
        })
    }

    fn migration_counts(&self) -> Result<Vec<(String, u64)>, MetaError> {
        self.read(|txn| {
            let table = txn.open_table(MIGRATIONS)?;
            let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
            for row in table.iter()? {
                let (k, v) = row?;
                let m = decode_migration(k.value(), v.value())?;
                *counts.entry(m.status).or_default() += 1;
            }
            Ok(counts.into_iter().collect())
        })
    }
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct TokenValue {
    #[prost(string, tag = "1")]
    tenant_id: String,
    #[prost(string, tag = "2")]
    role: String,
    #[prost(int64, tag = "3")]
    created_at_us: i64,
    #[prost(int64, tag = "4")]
    revoked_at_us: i64,
    #[prost(string, tag = "5")]
    secret_hash: String,
}

fn encode_token(t: &TokenRecord) -> Vec<u8> {
    TokenValue {
        tenant_id: t.tenant_id.clone(),
        role: t.role.clone(),
        created_at_us: t.created_at_us,
        revoked_at_us: t.revoked_at_us,
        secret_hash: t.secret_hash.clone(),
    }
    .encode_to_vec()
}

fn decode_token(token_id: &str, bytes: &[u8]) -> Result<TokenRecord, Fail> {
    let v = TokenValue::decode(bytes)
        .map_err(|e| corrupt(RecordKind::Token, token_id, DecodeError::from(e)))?;
    Ok(TokenRecord {
        token_id: token_id.to_owned(),
        tenant_id: v.tenant_id,
        role: v.role,
        created_at_us: v.created_at_us,
        revoked_at_us: v.revoked_at_us,
        secret_hash: v.secret_hash,
    })
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct TenantValue {
    #[prost(uint32, tag = "1")]
    replication_factor: u32,
    #[prost(int64, tag = "2")]
    created_at: i64,
    #[prost(int64, tag = "3")]
    updated_at: i64,
    /// The tenant's limits; absent (0) in records written before limits existed: the defaults.
    #[prost(uint64, tag = "4")]
    requests_per_second: u64,
    #[prost(uint64, tag = "5")]
    bytes_per_second: u64,
    #[prost(uint64, tag = "6")]
    max_key_bytes: u64,
    #[prost(uint64, tag = "7")]
    max_value_bytes: u64,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct NodeValue {
    #[prost(string, tag = "1")]
    host: String,
    #[prost(uint32, tag = "2")]
    port: u32,
    #[prost(uint32, tag = "3")]
    virtual_nodes: u32,
    /// 1 = active, 2 = draining; 0 (unset) is refused so that a lost field is not read as a state.
    #[prost(int32, tag = "4")]
    state: i32,
    #[prost(int64, tag = "5")]
    added_at: i64,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct MigrationValue {
    #[prost(string, tag = "1")]
    migration_type: String,
    #[prost(string, tag = "2")]
    node_id: String,
    #[prost(string, tag = "3")]
    status: String,
    #[prost(int64, tag = "4")]
    keys_migrated: i64,
    #[prost(int64, tag = "5")]
    total_keys: i64,
    #[prost(int64, tag = "6")]
    started_at: i64,
    #[prost(int64, tag = "7")]
    completed_at: i64,
    #[prost(string, tag = "8")]
    error_message: String,
    #[prost(string, tag = "9")]
    state: String,
    #[prost(bool, tag = "10")]
    cancel_requested: bool,
}

pub(super) fn encode_tenant(t: &TenantRecord) -> Vec<u8> {
    TenantValue {
        replication_factor: t.replication_factor,
        created_at: t.created_at,
        updated_at: t.updated_at,
        requests_per_second: t.limits.requests_per_second,
        bytes_per_second: t.limits.bytes_per_second,
        max_key_bytes: t.limits.max_key_bytes,
        max_value_bytes: t.limits.max_value_bytes,
    }
    .encode_to_vec()
}

pub(super) fn decode_tenant(tenant_id: &str, bytes: &[u8]) -> Result<TenantRecord, Fail> {
    let v = TenantValue::decode(bytes)
        .map_err(|e| corrupt(RecordKind::Tenant, tenant_id, DecodeError::from(e)))?;
    Ok(TenantRecord {
        tenant_id: tenant_id.to_owned(),
        replication_factor: v.replication_factor,
        created_at: v.created_at,
        updated_at: v.updated_at,
        limits: TenantLimits {
            requests_per_second: v.requests_per_second,
            bytes_per_second: v.bytes_per_second,
            max_key_bytes: v.max_key_bytes,
            max_value_bytes: v.max_value_bytes,
        },
    })
}

pub(super) fn encode_node(n: &NodeRecord) -> Vec<u8> {
    let state = match n.state {
        NodeState::Active => 1,
        NodeState::Draining => 2,
        NodeState::Joining => 3,
    };
    NodeValue {
        host: n.host.clone(),
        port: u32::from(n.port),
        virtual_nodes: n.virtual_nodes,
        state,
        added_at: n.added_at,
    }
    .encode_to_vec()
}

pub(super) fn decode_node(node_id: &str, bytes: &[u8]) -> Result<NodeRecord, Fail> {
    let fail = |e: DecodeError| corrupt(RecordKind::Node, node_id, e);
    let v = NodeValue::decode(bytes).map_err(|e| fail(e.into()))?;
    let state = match v.state {
        1 => NodeState::Active,
        2 => NodeState::Draining,
        3 => NodeState::Joining,
        other => return Err(fail(DecodeError::NodeState(other))),
    };
    let port = u16::try_from(v.port).map_err(|_| fail(DecodeError::Port(v.port)))?;
    Ok(NodeRecord {
        node_id: node_id.to_owned(),
        host: v.host,
        port,
        virtual_nodes: v.virtual_nodes,
        state,
        added_at: v.added_at,
    })
}

pub(super) fn encode_migration(m: &MigrationRecord) -> Vec<u8> {
    MigrationValue {
        migration_type: m.migration_type.clone(),
        node_id: m.node_id.clone(),
        status: m.status.clone(),
        keys_migrated: m.keys_migrated,
        total_keys: m.total_keys,
        started_at: m.started_at,
        completed_at: m.completed_at,
        error_message: m.error_message.clone(),
        state: m.state.clone(),
        cancel_requested: m.cancel_requested,
    }
    .encode_to_vec()
}

pub(super) fn decode_migration(migration_id: &str, bytes: &[u8]) -> Result<MigrationRecord, Fail> {
    let v = MigrationValue::decode(bytes)
        .map_err(|e| corrupt(RecordKind::Migration, migration_id, DecodeError::from(e)))?;
    Ok(MigrationRecord {
        migration_id: migration_id.to_owned(),
        migration_type: v.migration_type,
        node_id: v.node_id,
        status: v.status,
        keys_migrated: v.keys_migrated,
        total_keys: v.total_keys,
        started_at: v.started_at,
        completed_at: v.completed_at,
        error_message: v.error_message,
        state: v.state,
        cancel_requested: v.cancel_requested,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> NodeRecord {
        NodeRecord {
            node_id: id.into(),
            host: "10.0.0.1".into(),
            port: 50051,
            virtual_nodes: 128,
            state: NodeState::Active,
            added_at: 7,
        }
    }

    #[test]
    fn records_round_trip_through_their_encoding() {
        let n = NodeRecord { state: NodeState::Draining, port: u16::MAX, ..node("n1") };
        assert_eq!(decode_node("n1", &encode_node(&n)).ok(), Some(n));
        let t = TenantRecord {
            tenant_id: "t".into(),
            replication_factor: 3,
            created_at: -1,
            updated_at: 5,
            limits: TenantLimits {
                requests_per_second: 50,
                bytes_per_second: 1 << 40,
                max_key_bytes: 0,
                max_value_bytes: 7,
            },
        };
        assert_eq!(decode_tenant("t", &encode_tenant(&t)).ok(), Some(t));
    }

    #[test]
    fn undecodable_node_is_corrupt_not_a_panic() {
        let bad = NodeValue { state: 9, ..Default::default() }.encode_to_vec();
        let err = MetaError::from(decode_node("n1", &bad).unwrap_err());
        assert!(matches!(err, MetaError::Corrupt { kind: RecordKind::Node, .. }), "{err:?}");
        let err = MetaError::from(decode_tenant("t", &[0xff, 0xff]).unwrap_err());
        assert!(matches!(err, MetaError::Corrupt { kind: RecordKind::Tenant, .. }), "{err:?}");
    }
}
