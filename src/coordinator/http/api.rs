//! The HTTP/JSON API's requests and replies and their dispatch: the parsed [`Request`], the
//! [`Reply`] (with the rendering of every error as JSON), the [`Route`]s and [`handle`], which
//! routes a request to its handler in [`handlers`]; the JSON pieces those share are in [`json`].
//!
//! Each route turns a request into the protobuf request of one `CoordinatorService` method,
//! calls the shard's handler for it (the very one gRPC calls) and turns the answer into JSON.
//!
//! JSON follows the protobuf JSON mapping with the proto's own field names (snake_case, as
//! grpc-gateway's `UseProtoNames`): `bytes` in base64, `int64` as decimal strings (numbers are
//! accepted too), enums by name; every field of an answer is present. Errors are
//! `{"error_code", "message"}`: the `pairdb-error-code` and message of the same
//! `From<&PairError> for Status` that gRPC uses, under the HTTP status of its gRPC code
//! (`rpc::Code::http_status`).

use std::{net::SocketAddr, rc::Rc, time::Instant};

use bytes::Bytes;
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};

use crate::{
    coordinator::shard::Shard,
    error::PairError,
    rpc::{CallContext, Status},
};

mod handlers;
mod json;

use handlers::{
    add_storage_node, cancel_migration, create_tenant, create_token, delete, get_migration,
    get_tenant, list_migrations, list_storage_nodes, list_tokens, read, remove_storage_node,
    revoke_token, update_replication_factor, update_tenant_limits, write,
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
    /// The raw `Authorization` header, when sent (never logged).
    pub authorization: Option<Bytes>,
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
    /// `Retry-After`, whole seconds (from a RATE_LIMITED refusal's `pairdb-retry-after-ms`).
    pub retry_after_secs: Option<u64>,
}

/// The metrics' route label of requests that match no route (or are refused before routing).
pub(crate) const OTHER_ROUTE: &str = "other";

impl Reply {
    fn ok(body: Value) -> Reply {
        Reply {
            status: 200,
            body: body.to_string().into_bytes(),
            allow: None,
            route: OTHER_ROUTE,
            retry_after_secs: None,
        }
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
            // HTTP's Retry-After counts whole seconds: round the hint up.
            retry_after_secs: status.retry_after_ms.map(|ms| ms.div_ceil(1000)),
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
    /// `/v1/tenants/{id}/limits`
    TenantLimits(String),
    StorageNodes,
    StorageNode(String),
    Migration(String),
    /// `/v1/admin/migrations`
    Migrations,
    /// `/v1/admin/migrations/{id}/cancel`
    MigrationCancel(String),
    /// `/v1/admin/tokens`
    Tokens,
    /// `/v1/admin/tokens/{id}`
    Token(String),
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
            ["tenants", id, "limits"] => Some(Route::TenantLimits((*id).to_owned())),
            ["tenants", id, "replication-factor"] => {
                Some(Route::TenantReplicationFactor((*id).to_owned()))
            }
            ["admin", "storage-nodes"] => Some(Route::StorageNodes),
            ["admin", "storage-nodes", id] => Some(Route::StorageNode((*id).to_owned())),
            ["admin", "migrations"] => Some(Route::Migrations),
            ["admin", "migrations", id] => Some(Route::Migration((*id).to_owned())),
            ["admin", "migrations", id, "cancel"] => Some(Route::MigrationCancel((*id).to_owned())),
            ["admin", "tokens"] => Some(Route::Tokens),
            ["admin", "tokens", id] => Some(Route::Token((*id).to_owned())),
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
            (Route::TenantLimits(_), "PUT") => "PUT /v1/tenants/{id}/limits",
            (Route::StorageNodes, "POST") => "POST /v1/admin/storage-nodes",
            (Route::StorageNodes, "GET") => "GET /v1/admin/storage-nodes",
            (Route::StorageNode(_), "DELETE") => "DELETE /v1/admin/storage-nodes/{id}",
            (Route::Migration(_), "GET") => "GET /v1/admin/migrations/{id}",
            (Route::Migrations, "GET") => "GET /v1/admin/migrations",
            (Route::MigrationCancel(_), "POST") => "POST /v1/admin/migrations/{id}/cancel",
            (Route::Tokens, "POST") => "POST /v1/admin/tokens",
            (Route::Tokens, "GET") => "GET /v1/admin/tokens",
            (Route::Token(_), "DELETE") => "DELETE /v1/admin/tokens/{id}",
            _ => OTHER_ROUTE,
        }
    }

    /// The methods the route answers, for `Allow`.
    fn allow(&self) -> &'static str {
        match self {
            Route::KeyValue => "GET, POST, DELETE",
            Route::Tenants => "POST",
            Route::Tenant(_) | Route::Migration(_) | Route::Migrations => "GET",
            Route::MigrationCancel(_) => "POST",
            Route::TenantReplicationFactor(_) | Route::TenantLimits(_) => "PUT",
            Route::StorageNodes => "GET, POST",
            Route::StorageNode(_) | Route::Token(_) => "DELETE",
            Route::Tokens => "GET, POST",
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
    let ctx = CallContext {
        deadline: req.deadline,
        peer: req.peer,
        authorization: req.authorization.clone(),
    };
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
        (Route::TenantLimits(id), "PUT") => update_tenant_limits(shard, &req, id, ctx).await,
        (Route::StorageNodes, "POST") => add_storage_node(shard, &req, ctx).await,
        (Route::StorageNodes, "GET") => list_storage_nodes(shard, &req, ctx).await,
        (Route::StorageNode(id), "DELETE") => remove_storage_node(shard, &req, id, ctx).await,
        (Route::Migration(id), "GET") => get_migration(shard, &req, id, ctx).await,
        (Route::Migrations, "GET") => list_migrations(shard, &req, ctx).await,
        (Route::MigrationCancel(id), "POST") => cancel_migration(shard, &req, id, ctx).await,
        (Route::Tokens, "POST") => create_token(shard, &req, ctx).await,
        (Route::Tokens, "GET") => list_tokens(shard, &req, ctx).await,
        (Route::Token(id), "DELETE") => revoke_token(shard, &req, id, ctx).await,
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
        assert_eq!(Route::of("/v1/admin/tokens").unwrap(), Some(Route::Tokens));
        assert_eq!(
            Route::of("/v1/admin/tokens/0123456789abcdef").unwrap(),
            Some(Route::Token("0123456789abcdef".into()))
        );
        assert_eq!(Route::Tokens.label("POST"), "POST /v1/admin/tokens");
        assert_eq!(Route::Token("x".into()).allow(), "DELETE");
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
}
