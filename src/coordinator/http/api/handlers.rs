//! The route handlers: one per route and method, each turning the request into the protobuf
//! request of one `CoordinatorService` method, calling the shard's handler for it (the very one
//! gRPC calls) and turning the answer into JSON. The request bodies they accept are declared
//! here beside them; the shared conversions are in [`super::json`].

use std::rc::Rc;

use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    json::{
        body, clock_json, consistency, consistency_name, decode_base64, idempotency_key,
        limits_json, no_body, no_query, query, JsonClock, JsonLimits,
    },
    Request,
};
use crate::{
    coordinator::shard::Shard, error::PairError, proto::coordinator as api, rpc::CallContext,
};

// ------------------------------------------------------------------------------------------------
// Key-value.
// ------------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteBody {
    #[serde(default)]
    tenant_id: String,
    #[serde(default)]
    key: String,
    /// Base64.
    value: String,
    #[serde(default)]
    consistency: Option<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    vector_clock: Option<JsonClock>,
}

pub(super) async fn write(
    shard: Rc<Shard>,
    req: &Request<'_>,
    ctx: CallContext,
) -> Result<Value, PairError> {
    no_query(req)?;
    let b: WriteBody = body(req)?;
    let value = decode_base64(&b.value)
        .map_err(|e| PairError::invalid(format!("value is not valid base64: {e}")))?;
    let grpc = api::WriteKeyValueRequest {
        tenant_id: b.tenant_id,
        key: b.key,
        value: Bytes::from(value),
        consistency: consistency(b.consistency.as_deref())?,
        idempotency_key: idempotency_key(req.idempotency_key, b.idempotency_key)?,
        vector_clock: b.vector_clock.map(JsonClock::into_proto).transpose()?,
    };
    let r = shard.guarded("WriteKeyValue", grpc, ctx, Shard::write_key_value).await?;
    Ok(json!({
        "key": r.key,
        "idempotency_key": r.idempotency_key,
        "vector_clock": clock_json(r.vector_clock.as_ref()),
        "replica_count": r.replica_count,
        "consistency": consistency_name(r.consistency),
        "is_duplicate": r.is_duplicate,
    }))
}

pub(super) async fn read(
    shard: Rc<Shard>,
    req: &Request<'_>,
    ctx: CallContext,
) -> Result<Value, PairError> {
    no_body(req)?;
    let mut q = query(req.query, &["tenant_id", "key", "consistency"])?;
    let grpc = api::ReadKeyValueRequest {
        tenant_id: q.remove("tenant_id").unwrap_or_default(),
        key: q.remove("key").unwrap_or_default(),
        consistency: consistency(q.get("consistency").map(String::as_str))?,
    };
    let r = shard.guarded("ReadKeyValue", grpc, ctx, Shard::read_key_value).await?;
    Ok(json!({
        "key": r.key,
        "value": base64::engine::general_purpose::STANDARD.encode(&r.value),
        "vector_clock": clock_json(r.vector_clock.as_ref()),
        "replica_count": r.replica_count,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteBody {
    #[serde(default)]
    tenant_id: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    consistency: Option<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    vector_clock: Option<JsonClock>,
}

pub(super) async fn delete(
    shard: Rc<Shard>,
    req: &Request<'_>,
    ctx: CallContext,
) -> Result<Value, PairError> {
    // The key in the query string, or everything (a vector clock too) in a JSON body.
    let b = if req.body.is_empty() {
        let mut q = query(req.query, &["tenant_id", "key", "consistency", "idempotency_key"])?;
        DeleteBody {
            tenant_id: q.remove("tenant_id").unwrap_or_default(),
            key: q.remove("key").unwrap_or_default(),
            consistency: q.remove("consistency"),
            idempotency_key: q.remove("idempotency_key"),
            vector_clock: None,
        }
    } else {
        if !req.query.is_empty() {
            return Err(PairError::invalid(
                "send the key either in the query string or in a JSON body, not both",
            ));
        }
        body(req)?
    };
    let grpc = api::DeleteKeyValueRequest {
        tenant_id: b.tenant_id,
        key: b.key,
        consistency: consistency(b.consistency.as_deref())?,
        idempotency_key: idempotency_key(req.idempotency_key, b.idempotency_key)?,
        vector_clock: b.vector_clock.map(JsonClock::into_proto).transpose()?,
    };
    let r = shard.guarded("DeleteKeyValue", grpc, ctx, Shard::delete_key_value).await?;
    Ok(json!({
        "key": r.key,
        "vector_clock": clock_json(r.vector_clock.as_ref()),
        "replica_count": r.replica_count,
        "idempotency_key": r.idempotency_key,
        "is_duplicate": r.is_duplicate,
    }))
}

// ------------------------------------------------------------------------------------------------
// Tenants.
// ------------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenantBody {
    #[serde(default)]
    tenant_id: String,
    #[serde(default)]
    replication_factor: i32,
    #[serde(default)]
    limits: Option<JsonLimits>,
}

pub(super) async fn create_tenant(
    shard: Rc<Shard>,
    req: &Request<'_>,
    ctx: CallContext,
) -> Result<Value, PairError> {
    no_query(req)?;
    let b: CreateTenantBody = body(req)?;
    let grpc = api::CreateTenantRequest {
        tenant_id: b.tenant_id,
        replication_factor: b.replication_factor,
        limits: b.limits.map(JsonLimits::into_proto).transpose()?,
    };
    let r = shard.guarded("CreateTenant", grpc, ctx, Shard::create_tenant).await?;
    Ok(json!({
        "tenant_id": r.tenant_id,
        "replication_factor": r.replication_factor,
        "created_at": r.created_at.to_string(),
        "limits": limits_json(r.limits.as_ref()),
        "effective_limits": limits_json(r.effective_limits.as_ref()),
    }))
}

pub(super) async fn get_tenant(
    shard: Rc<Shard>,
    req: &Request<'_>,
    id: &str,
    ctx: CallContext,
) -> Result<Value, PairError> {
    no_query(req)?;
    no_body(req)?;
    let r = shard
        .guarded(
            "GetTenant",
            api::GetTenantRequest { tenant_id: id.to_owned() },
            ctx,
            Shard::get_tenant,
        )
        .await?;
    Ok(json!({
        "tenant_id": r.tenant_id,
        "replication_factor": r.replication_factor,
        "created_at": r.created_at.to_string(),
        "updated_at": r.updated_at.to_string(),
        "limits": limits_json(r.limits.as_ref()),
        "effective_limits": limits_json(r.effective_limits.as_ref()),
    }))
}

pub(super) async fn update_tenant_limits(
    shard: Rc<Shard>,
    req: &Request<'_>,
    id: &str,
    ctx: CallContext,
) -> Result<Value, PairError> {
    no_query(req)?;
    let b: JsonLimits = body(req)?;
    let grpc =
        api::UpdateTenantLimitsRequest { tenant_id: id.to_owned(), limits: Some(b.into_proto()?) };
    let r = shard.guarded("UpdateTenantLimits", grpc, ctx, Shard::update_tenant_limits).await?;
    Ok(json!({
        "tenant_id": r.tenant_id,
        "limits": limits_json(r.limits.as_ref()),
        "effective_limits": limits_json(r.effective_limits.as_ref()),
        "updated_at": r.updated_at.to_string(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplicationFactorBody {
    /// The proto calls it `new_replication_factor`; both names are accepted.
    #[serde(alias = "new_replication_factor")]
    replication_factor: i32,
}

pub(super) async fn update_replication_factor(
    shard: Rc<Shard>,
    req: &Request<'_>,
    id: &str,
    ctx: CallContext,
) -> Result<Value, PairError> {
    no_query(req)?;
    let b: ReplicationFactorBody = body(req)?;
    let grpc = api::UpdateReplicationFactorRequest {
        tenant_id: id.to_owned(),
        new_replication_factor: b.replication_factor,
    };
    let r = shard
        .guarded("UpdateReplicationFactor", grpc, ctx, Shard::update_replication_factor)
        .await?;
    Ok(json!({
        "tenant_id": r.tenant_id,
        "old_replication_factor": r.old_replication_factor,
        "new_replication_factor": r.new_replication_factor,
        "migration_id": r.migration_id,
        "updated_at": r.updated_at.to_string(),
    }))
}

// ------------------------------------------------------------------------------------------------
// Storage nodes and migrations.
// ------------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddNodeBody {
    #[serde(default)]
    node_id: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    port: i32,
    #[serde(default)]
    virtual_nodes: i32,
}

pub(super) async fn add_storage_node(
    shard: Rc<Shard>,
    req: &Request<'_>,
    ctx: CallContext,
) -> Result<Value, PairError> {
    no_query(req)?;
    let b: AddNodeBody = body(req)?;
    let grpc = api::AddStorageNodeRequest {
        node_id: b.node_id,
        host: b.host,
        port: b.port,
        virtual_nodes: b.virtual_nodes,
    };
    let r = shard.guarded("AddStorageNode", grpc, ctx, Shard::add_storage_node).await?;
    Ok(json!({ "node_id": r.node_id, "migration_id": r.migration_id, "message": r.message }))
}

pub(super) async fn list_storage_nodes(
    shard: Rc<Shard>,
    req: &Request<'_>,
    ctx: CallContext,
) -> Result<Value, PairError> {
    no_query(req)?;
    no_body(req)?;
    let r = shard
        .guarded(
            "ListStorageNodes",
            api::ListStorageNodesRequest {},
            ctx,
            Shard::list_storage_nodes,
        )
        .await?;
    let nodes: Vec<Value> = r
        .nodes
        .into_iter()
        .map(|n| {
            json!({
                "node_id": n.node_id,
                "host": n.host,
                "port": n.port,
                "status": n.status,
                "virtual_nodes": n.virtual_nodes,
                "keys_count": n.keys_count.to_string(),
                "disk_usage_percent": n.disk_usage_percent,
            })
        })
        .collect();
    Ok(json!({ "nodes": nodes }))
}

pub(super) async fn remove_storage_node(
    shard: Rc<Shard>,
    req: &Request<'_>,
    id: &str,
    ctx: CallContext,
) -> Result<Value, PairError> {
    no_body(req)?;
    let q = query(req.query, &["force"])?;
    let force = match q.get("force").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(other) => {
            return Err(PairError::invalid(format!("force must be true or false, not {other:?}")))
        }
    };
    let grpc = api::RemoveStorageNodeRequest { node_id: id.to_owned(), force };
    let r = shard.guarded("RemoveStorageNode", grpc, ctx, Shard::remove_storage_node).await?;
    Ok(json!({ "node_id": r.node_id, "migration_id": r.migration_id, "message": r.message }))
}

pub(super) async fn get_migration(
    shard: Rc<Shard>,
    req: &Request<'_>,
    id: &str,
    ctx: CallContext,
) -> Result<Value, PairError> {
    no_query(req)?;
    no_body(req)?;
    let grpc = api::GetMigrationStatusRequest { migration_id: id.to_owned() };
    let r = shard.guarded("GetMigrationStatus", grpc, ctx, Shard::get_migration_status).await?;
    Ok(migration_json(r))
}

/// A migration's status as JSON: the gRPC fields, 64-bit integers as strings.
fn migration_json(r: api::GetMigrationStatusResponse) -> Value {
    let progress = r.progress.unwrap_or_default();
    json!({
        "migration_id": r.migration_id,
        "migration_type": r.migration_type,
        "node_id": r.node_id,
        "status": r.status,
        "progress": {
            "keys_migrated": progress.keys_migrated.to_string(),
            "total_keys": progress.total_keys.to_string(),
            "percentage": progress.percentage,
        },
        "started_at": r.started_at.to_string(),
        "completed_at": r.completed_at.to_string(),
        "error_message": r.error_message,
        "stage": r.stage,
        "bytes_migrated": r.bytes_migrated.to_string(),
        "bytes_per_second": r.bytes_per_second,
        "keys_per_second": r.keys_per_second,
        "estimated_completion_at": r.estimated_completion_at.to_string(),
        "blocked_on": r.blocked_on,
        "segments_done": r.segments_done.to_string(),
        "segments_total": r.segments_total.to_string(),
    })
}

pub(super) async fn list_migrations(
    shard: Rc<Shard>,
    req: &Request<'_>,
    ctx: CallContext,
) -> Result<Value, PairError> {
    no_body(req)?;
    let q = query(req.query, &["limit"])?;
    let limit = match q.get("limit") {
        Some(v) => v.parse::<i32>().map_err(|_| PairError::invalid("limit must be a number"))?,
        None => 0,
    };
    let r = shard
        .guarded(
            "ListMigrations",
            api::ListMigrationsRequest { limit },
            ctx,
            Shard::list_migrations,
        )
        .await?;
    Ok(json!({ "migrations": r.migrations.into_iter().map(migration_json).collect::<Vec<_>>() }))
}

pub(super) async fn cancel_migration(
    shard: Rc<Shard>,
    req: &Request<'_>,
    id: &str,
    ctx: CallContext,
) -> Result<Value, PairError> {
    no_query(req)?;
    no_body(req)?;
    let grpc = api::CancelMigrationRequest { migration_id: id.to_owned() };
    let r = shard.guarded("CancelMigration", grpc, ctx, Shard::cancel_migration).await?;
    Ok(json!({
        "migration_id": r.migration_id,
        "status": r.status,
        "stage": r.stage,
        "message": r.message,
    }))
}

// ------------------------------------------------------------------------------------------------
// Tokens (admin only; the same checks and audit lines as over gRPC).
// ------------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTokenBody {
    /// `admin`, `tenant-rw` or `tenant-ro`.
    role: String,
    /// The tenant of a tenant token; absent or empty for `admin`.
    #[serde(default)]
    tenant_id: String,
}

/// A token's description as JSON (never its secret); microsecond times as strings.
fn token_json(info: Option<api::TokenInfo>) -> Value {
    let t = info.unwrap_or_default();
    json!({
        "token_id": t.token_id,
        "tenant_id": t.tenant_id,
        "role": t.role,
        "created_at_us": t.created_at_us.to_string(),
        "revoked_at_us": t.revoked_at_us.to_string(),
    })
}

pub(super) async fn create_token(
    shard: Rc<Shard>,
    req: &Request<'_>,
    ctx: CallContext,
) -> Result<Value, PairError> {
    no_query(req)?;
    let b: CreateTokenBody = body(req)?;
    let grpc = api::CreateTokenRequest { tenant_id: b.tenant_id, role: b.role };
    let r = shard.guarded("CreateToken", grpc, ctx, Shard::create_token).await?;
    Ok(json!({ "token": r.token, "info": token_json(r.info) }))
}

pub(super) async fn list_tokens(
    shard: Rc<Shard>,
    req: &Request<'_>,
    ctx: CallContext,
) -> Result<Value, PairError> {
    no_body(req)?;
    let q = query(req.query, &["tenant_id"])?;
    let grpc =
        api::ListTokensRequest { tenant_id: q.get("tenant_id").cloned().unwrap_or_default() };
    let r = shard.guarded("ListTokens", grpc, ctx, Shard::list_tokens).await?;
    let tokens: Vec<Value> = r.tokens.into_iter().map(|t| token_json(Some(t))).collect();
    Ok(json!({ "tokens": tokens }))
}

pub(super) async fn revoke_token(
    shard: Rc<Shard>,
    req: &Request<'_>,
    id: &str,
    ctx: CallContext,
) -> Result<Value, PairError> {
    no_query(req)?;
    no_body(req)?;
    let grpc = api::RevokeTokenRequest { token_id: id.to_owned() };
    let r = shard.guarded("RevokeToken", grpc, ctx, Shard::revoke_token).await?;
    Ok(json!({ "info": token_json(r.info) }))
}
