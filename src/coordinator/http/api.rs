//! The routes of the HTTP/JSON API: each turns a request into the protobuf request of one
//! `CoordinatorService` method, calls the shard's handler for it (the very one gRPC calls) and
//! turns the answer into JSON.
//!
//! JSON follows the protobuf JSON mapping with the proto's own field names (snake_case, as
//! grpc-gateway's `UseProtoNames`): `bytes` in base64, `int64` as decimal strings (numbers are
//! accepted too), enums by name; every field of an answer is present. Errors are
//! `{"error_code", "message"}`: the `pairdb-error-code` and message of the same
//! `From<&PairError> for Status` that gRPC uses, under the HTTP status of its gRPC code
//! (`rpc::Code::http_status`).

use std::{collections::HashMap, net::SocketAddr, rc::Rc, time::Instant};

use base64::{
    alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    Engine as _,
};
use bytes::Bytes;
use percent_encoding::percent_decode_str;
use serde::{de::DeserializeOwned, Deserialize};
use serde_json::{json, Value};

use crate::{
    coordinator::shard::Shard,
    error::PairError,
    proto::coordinator as api,
    rpc::{CallContext, Status},
};

/// One parsed HTTP request, as the routes see it.
pub(crate) struct Request<'a> {
    pub method: &'a str,
    /// The path, before any `?`.
    pub path: &'a str,
    /// The query string, after the `?` (empty when none).
    pub query: &'a str,
    /// The `Idempotency-Key` header, when sent.
    pub idempotency_key: Option<&'a str>,
    pub body: &'a [u8],
    pub peer: Option<SocketAddr>,
    /// When the client stops waiting (`Grpc-Timeout`), if it said.
    pub deadline: Option<Instant>,
}

/// What goes back: the HTTP status, the JSON body and, for 405, the methods allowed; `route`
/// names the route for the metrics (`POST /v1/key-value`, `other` for no route).
pub(crate) struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub allow: Option<&'static str>,
    pub route: &'static str,
}

/// The metrics' route label of requests that match no route (or are refused before routing).
pub(crate) const OTHER_ROUTE: &str = "other";

impl Reply {
    fn ok(body: Value) -> Reply {
        Reply { status: 200, body: body.to_string().into_bytes(), allow: None, route: OTHER_ROUTE }
    }

    /// The error reply of `e`: its status and code from the one gRPC mapping; `http_status`
    /// replaces the status where HTTP has a more precise one (404 for an unknown route, 405,
    /// 413, 431, ...).
    pub fn error(e: &PairError, http_status: Option<u16>) -> Reply {
        let status = Status::from(e);
        let body = json!({
            "error_code": status.error_code.as_deref().unwrap_or(""),
            "message": status.message,
        });
        Reply {
            status: http_status.unwrap_or_else(|| status.code.http_status()),
            body: body.to_string().into_bytes(),
            allow: None,
            route: OTHER_ROUTE,
        }
    }
}

/// The resources of the API.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    KeyValue,
    Tenants,
    Tenant(String),
    TenantReplicationFactor(String),
    StorageNodes,
    StorageNode(String),
    Migration(String),
}

impl Route {
    /// The route of `path`; `Ok(None)` for no route. Segments are percent-decoded.
    fn of(path: &str) -> Result<Option<Route>, PairError> {
        let Some(rest) = path.strip_prefix("/v1/") else { return Ok(None) };
        let segments = rest
            .split('/')
            .map(|s| {
                percent_decode_str(s).decode_utf8().map(|s| s.into_owned()).map_err(|_| {
                    PairError::invalid(format!("path segment {s:?} is not UTF-8 once decoded"))
                })
            })
            .collect::<Result<Vec<String>, _>>()?;
        let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
        Ok(match parts.as_slice() {
            ["key-value"] => Some(Route::KeyValue),
            ["tenants"] => Some(Route::Tenants),
            ["tenants", id] => Some(Route::Tenant((*id).to_owned())),
            ["tenants", id, "replication-factor"] => {
                Some(Route::TenantReplicationFactor((*id).to_owned()))
            }
            ["admin", "storage-nodes"] => Some(Route::StorageNodes),
            ["admin", "storage-nodes", id] => Some(Route::StorageNode((*id).to_owned())),
            ["admin", "migrations", id] => Some(Route::Migration((*id).to_owned())),
            _ => None,
        })
    }

    /// The metrics' label of `method` on this route; [`OTHER_ROUTE`] for a method it does not
    /// answer.
    fn label(&self, method: &str) -> &'static str {
        match (self, method) {
            (Route::KeyValue, "POST") => "POST /v1/key-value",
            (Route::KeyValue, "GET") => "GET /v1/key-value",
            (Route::KeyValue, "DELETE") => "DELETE /v1/key-value",
            (Route::Tenants, "POST") => "POST /v1/tenants",
            (Route::Tenant(_), "GET") => "GET /v1/tenants/{id}",
            (Route::TenantReplicationFactor(_), "PUT") => "PUT /v1/tenants/{id}/replication-factor",
            (Route::StorageNodes, "POST") => "POST /v1/admin/storage-nodes",
            (Route::StorageNodes, "GET") => "GET /v1/admin/storage-nodes",
            (Route::StorageNode(_), "DELETE") => "DELETE /v1/admin/storage-nodes/{id}",
            (Route::Migration(_), "GET") => "GET /v1/admin/migrations/{id}",
            _ => OTHER_ROUTE,
        }
    }

    /// The methods the route answers, for `Allow`.
    fn allow(&self) -> &'static str {
        match self {
            Route::KeyValue => "GET, POST, DELETE",
            Route::Tenants => "POST",
            Route::Tenant(_) | Route::Migration(_) => "GET",
            Route::TenantReplicationFactor(_) => "PUT",
            Route::StorageNodes => "GET, POST",
            Route::StorageNode(_) => "DELETE",
        }
    }
}

/// Answers one request on this core's shard.
pub(crate) async fn handle(shard: Rc<Shard>, req: Request<'_>) -> Reply {
    let route = match Route::of(req.path) {
        Ok(Some(route)) => route,
        Ok(None) => {
            let e = PairError::UnknownMethod(format!(
                "no route {} {}: see docs/OPERATIONS.md, \"HTTP/JSON API\"",
                req.method, req.path
            ));
            return Reply::error(&e, Some(404));
        }
        Err(e) => return Reply::error(&e, None),
    };
    // As the gRPC router does before every call: apply the updates other cores broadcast.
    if shard.catch_up() {
        shard.resync().await;
    }
    let ctx = CallContext { deadline: req.deadline, peer: req.peer };
    let label = route.label(req.method);
    let result = match (&route, req.method) {
        (Route::KeyValue, "POST") => write(shard, &req, ctx).await,
        (Route::KeyValue, "GET") => read(shard, &req, ctx).await,
        (Route::KeyValue, "DELETE") => delete(shard, &req, ctx).await,
        (Route::Tenants, "POST") => create_tenant(shard, &req, ctx).await,
        (Route::Tenant(id), "GET") => get_tenant(shard, &req, id, ctx).await,
        (Route::TenantReplicationFactor(id), "PUT") => {
            update_replication_factor(shard, &req, id, ctx).await
        }
        (Route::StorageNodes, "POST") => add_storage_node(shard, &req, ctx).await,
        (Route::StorageNodes, "GET") => list_storage_nodes(shard, &req, ctx).await,
        (Route::StorageNode(id), "DELETE") => remove_storage_node(shard, &req, id, ctx).await,
        (Route::Migration(id), "GET") => get_migration(shard, &req, id, ctx).await,
        (route, method) => {
            let e = PairError::UnknownMethod(format!(
                "{method} is not allowed on {}; allowed: {}",
                req.path,
                route.allow()
            ));
            let mut reply = Reply::error(&e, Some(405));
            reply.allow = Some(route.allow());
            return reply;
        }
    };
    let mut reply = match result {
        Ok(body) => Reply::ok(body),
        Err(e) => Reply::error(&e, None),
    };
    reply.route = label;
    reply
}

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

async fn write(shard: Rc<Shard>, req: &Request<'_>, ctx: CallContext) -> Result<Value, PairError> {
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
    let r = shard.write_key_value(grpc, ctx).await?;
    Ok(json!({
        "key": r.key,
        "idempotency_key": r.idempotency_key,
        "vector_clock": clock_json(r.vector_clock.as_ref()),
        "replica_count": r.replica_count,
        "consistency": consistency_name(r.consistency),
        "is_duplicate": r.is_duplicate,
    }))
}

async fn read(shard: Rc<Shard>, req: &Request<'_>, ctx: CallContext) -> Result<Value, PairError> {
    no_body(req)?;
    let mut q = query(req.query, &["tenant_id", "key", "consistency"])?;
    let grpc = api::ReadKeyValueRequest {
        tenant_id: q.remove("tenant_id").unwrap_or_default(),
        key: q.remove("key").unwrap_or_default(),
        consistency: consistency(q.get("consistency").map(String::as_str))?,
    };
    let r = shard.read_key_value(grpc, ctx).await?;
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

async fn delete(shard: Rc<Shard>, req: &Request<'_>, ctx: CallContext) -> Result<Value, PairError> {
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
    let r = shard.delete_key_value(grpc, ctx).await?;
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
}

async fn create_tenant(
    shard: Rc<Shard>,
    req: &Request<'_>,
    ctx: CallContext,
) -> Result<Value, PairError> {
    no_query(req)?;
    let b: CreateTenantBody = body(req)?;
    let grpc = api::CreateTenantRequest {
        tenant_id: b.tenant_id,
        replication_factor: b.replication_factor,
    };
    let r = shard.create_tenant(grpc, ctx).await?;
    Ok(json!({
        "tenant_id": r.tenant_id,
        "replication_factor": r.replication_factor,
        "created_at": r.created_at.to_string(),
    }))
}

async fn get_tenant(
    shard: Rc<Shard>,
    req: &Request<'_>,
    id: &str,
    ctx: CallContext,
) -> Result<Value, PairError> {
    no_query(req)?;
    no_body(req)?;
    let r = shard.get_tenant(api::GetTenantRequest { tenant_id: id.to_owned() }, ctx).await?;
    Ok(json!({
        "tenant_id": r.tenant_id,
        "replication_factor": r.replication_factor,
        "created_at": r.created_at.to_string(),
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

async fn update_replication_factor(
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
    let r = shard.update_replication_factor(grpc, ctx).await?;
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

async fn add_storage_node(
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
    let r = shard.add_storage_node(grpc, ctx).await?;
    Ok(json!({ "node_id": r.node_id, "migration_id": r.migration_id, "message": r.message }))
}

async fn list_storage_nodes(
    shard: Rc<Shard>,
    req: &Request<'_>,
    ctx: CallContext,
) -> Result<Value, PairError> {
    no_query(req)?;
    no_body(req)?;
    let r = shard.list_storage_nodes(api::ListStorageNodesRequest {}, ctx).await?;
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

async fn remove_storage_node(
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
    let r = shard.remove_storage_node(grpc, ctx).await?;
    Ok(json!({ "node_id": r.node_id, "migration_id": r.migration_id, "message": r.message }))
}

async fn get_migration(
    shard: Rc<Shard>,
    req: &Request<'_>,
    id: &str,
    ctx: CallContext,
) -> Result<Value, PairError> {
    no_query(req)?;
    no_body(req)?;
    let grpc = api::GetMigrationStatusRequest { migration_id: id.to_owned() };
    let r = shard.get_migration_status(grpc, ctx).await?;
    let progress = r.progress.unwrap_or_default();
    Ok(json!({
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
    }))
}

// ------------------------------------------------------------------------------------------------
// Pieces.
// ------------------------------------------------------------------------------------------------

/// A vector clock in the proto's JSON shape: `{"entries": [{"coordinator_node_id": "coord-1/0",
/// "logical_timestamp": "1733..."}]}` (the counter a string, as protobuf JSON writes an int64; a
/// number is accepted).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonClock {
    #[serde(default)]
    entries: Vec<JsonClockEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonClockEntry {
    #[serde(default)]
    coordinator_node_id: String,
    #[serde(default)]
    logical_timestamp: Option<Int64>,
}

/// An int64 as protobuf JSON allows it: a number or a decimal string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Int64 {
    Number(i64),
    Text(String),
}

impl JsonClock {
    fn into_proto(self) -> Result<api::VectorClock, PairError> {
        let entries = self
            .entries
            .into_iter()
            .map(|e| {
                let logical_timestamp = match e.logical_timestamp {
                    None => 0,
                    Some(Int64::Number(n)) => n,
                    Some(Int64::Text(s)) => s.trim().parse().map_err(|_| {
                        PairError::invalid(format!(
                            "invalid vector_clock: logical_timestamp {s:?} is not an int64"
                        ))
                    })?,
                };
                Ok(api::VectorClockEntry {
                    coordinator_node_id: e.coordinator_node_id,
                    logical_timestamp,
                })
            })
            .collect::<Result<_, PairError>>()?;
        Ok(api::VectorClock { entries })
    }
}

fn clock_json(clock: Option<&api::VectorClock>) -> Value {
    let entries: Vec<Value> = clock
        .map(|c| {
            c.entries
                .iter()
                .map(|e| {
                    json!({
                        "coordinator_node_id": e.coordinator_node_id,
                        "logical_timestamp": e.logical_timestamp.to_string(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({ "entries": entries })
}

/// `ONE`, `QUORUM`, `ALL` (any case; absent or empty: the default, QUORUM).
fn consistency(name: Option<&str>) -> Result<i32, PairError> {
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return Ok(api::Consistency::Unspecified as i32);
    };
    api::Consistency::from_str_name(&name.to_ascii_uppercase()).map(|c| c as i32).ok_or_else(|| {
        PairError::invalid(format!("consistency {name:?} is not ONE, QUORUM or ALL"))
    })
}

fn consistency_name(value: i32) -> String {
    api::Consistency::try_from(value)
        .map(|c| c.as_str_name().to_owned())
        .unwrap_or_else(|_| value.to_string())
}

/// The idempotency key from the `Idempotency-Key` header or the body's field; both must agree.
fn idempotency_key(header: Option<&str>, field: Option<String>) -> Result<String, PairError> {
    match (header, field) {
        (Some(h), Some(f)) if h != f => Err(PairError::invalid(
            "the Idempotency-Key header and the idempotency_key field differ",
        )),
        (Some(h), _) => Ok(h.to_owned()),
        (None, Some(f)) => Ok(f),
        (None, None) => Ok(String::new()),
    }
}

/// Base64 as protobuf JSON accepts it: standard or URL-safe alphabet, padded or not.
fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    GeneralPurpose::new(&alphabet::STANDARD, config)
        .decode(text)
        .or_else(|e| GeneralPurpose::new(&alphabet::URL_SAFE, config).decode(text).map_err(|_| e))
}

/// The JSON body as `T`; unknown fields are refused, as protobuf JSON parsers do.
fn body<T: DeserializeOwned>(req: &Request<'_>) -> Result<T, PairError> {
    if req.body.is_empty() {
        return Err(PairError::invalid("this route takes a JSON body"));
    }
    serde_json::from_slice(req.body)
        .map_err(|e| PairError::invalid(format!("malformed JSON body: {e}")))
}

fn no_body(req: &Request<'_>) -> Result<(), PairError> {
    if req.body.is_empty() {
        Ok(())
    } else {
        Err(PairError::invalid(format!("{} {} takes no body", req.method, req.path)))
    }
}

fn no_query(req: &Request<'_>) -> Result<(), PairError> {
    if req.query.is_empty() {
        Ok(())
    } else {
        Err(PairError::invalid(format!("{} {} takes no query parameters", req.method, req.path)))
    }
}

/// The query's parameters (form-urlencoded); unknown or repeated ones are refused.
fn query(q: &str, allowed: &[&str]) -> Result<HashMap<String, String>, PairError> {
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            return Err(PairError::invalid(format!(
                "unknown query parameter {k:?}; this route takes {}",
                allowed.join(", ")
            )));
        }
        if out.insert(k.clone().into_owned(), v.into_owned()).is_some() {
            return Err(PairError::invalid(format!("query parameter {k:?} is repeated")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(Route::of("/v1/key-value").unwrap(), Some(Route::KeyValue));
        assert_eq!(Route::of("/v1/tenants/a%2Fb").unwrap(), Some(Route::Tenant("a/b".into())));
        assert_eq!(
            Route::of("/v1/tenants/t/replication-factor").unwrap(),
            Some(Route::TenantReplicationFactor("t".into()))
        );
        assert_eq!(
            Route::of("/v1/admin/migrations/m").unwrap(),
            Some(Route::Migration("m".into()))
        );
        assert_eq!(Route::of("/v2/key-value").unwrap(), None);
        assert_eq!(Route::of("/v1/nope").unwrap(), None);
        assert!(Route::of("/v1/tenants/%FF").is_err());
    }

    #[test]
    fn errors_take_code_and_status_from_the_grpc_mapping() {
        let e = PairError::TenantNotFound { tenant_id: "t".into() };
        let reply = Reply::error(&e, None);
        assert_eq!(reply.status, 404);
        let body: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(body["error_code"], "TENANT_NOT_FOUND");
        assert_eq!(body["message"], e.to_string());
        let e = PairError::IdempotencyInProgress;
        assert_eq!(Reply::error(&e, None).status, 409);
        assert_eq!(Reply::error(&e, Some(413)).status, 413);
    }

    #[test]
    fn pieces_parse_what_protobuf_json_allows() {
        assert_eq!(decode_base64("aGk=").unwrap(), b"hi");
        assert_eq!(decode_base64("aGk").unwrap(), b"hi");
        assert_eq!(decode_base64("-_8").unwrap(), [0xfb, 0xff]);
        assert!(decode_base64("not base64!").is_err());
        assert_eq!(consistency(Some("all")).unwrap(), api::Consistency::All as i32);
        assert_eq!(consistency(None).unwrap(), 0);
        assert!(consistency(Some("MOST")).is_err());
        let clock: JsonClock = serde_json::from_str(
            r#"{"entries":[{"coordinator_node_id":"c/0","logical_timestamp":"12"},
                {"coordinator_node_id":"c/1","logical_timestamp":7}]}"#,
        )
        .unwrap();
        let proto = clock.into_proto().unwrap();
        assert_eq!(proto.entries[0].logical_timestamp, 12);
        assert_eq!(proto.entries[1].logical_timestamp, 7);
        assert_eq!(clock_json(Some(&proto))["entries"][1]["logical_timestamp"], "7");
        assert!(query("a=1&a=2", &["a"]).is_err());
        assert!(query("b=1", &["a"]).is_err());
        assert_eq!(query("a=x%20y+z", &["a"]).unwrap()["a"], "x y z");
        assert!(idempotency_key(Some("a"), Some("b".into())).is_err());
    }
}
