//! Client authentication on the coordinator: who is calling ([`Shard::guarded`] checks the
//! bearer token of every `CoordinatorService` call, gRPC and HTTP API alike, before the
//! handler runs), what they may do (`core::auth::allowed`), and the audit log of admin calls.
//!
//! Tokens live in the metadata store (only a hash of each secret); every core keeps its own
//! [`TokenSet`] snapshot (an `Arc`, swapped by an [`Update::Tokens`] broadcast), so the request
//! path takes no lock. A token created or revoked here is broadcast at once
//! ([`AuthShared::reload`]); with PostgreSQL, other coordinators hear of it by `NOTIFY tokens`.
//!
//! Audit lines are `tracing` events of target `audit` with `token_id`, `rpc`, `target` and
//! `outcome`; no token, secret or value is ever logged.

use std::{
    collections::HashMap,
    future::Future,
    rc::Rc,
    sync::{Arc, Mutex},
};

use crate::{
    config::CoordinatorConfig,
    coordinator::{shard::Shard, Shared, Update},
    core::auth::{self, Action, Role},
    error::PairError,
    meta::{MetaError, MetadataStore, TokenRecord},
    proto::coordinator as api,
    rpc::CallContext,
};

/// The valid (unrevoked) tokens, by id.
#[derive(Debug, Default)]
pub struct TokenSet {
    by_id: HashMap<String, ValidToken>,
}

#[derive(Debug)]
struct ValidToken {
    role: Role,
    tenant_id: String,
    secret_hash: String,
}

impl TokenSet {
    /// The set of the unrevoked `records` with a known role (others are skipped with a warning).
    pub fn from_records(records: &[TokenRecord]) -> TokenSet {
        let mut by_id = HashMap::with_capacity(records.len());
        for r in records.iter().filter(|r| r.revoked_at_us == 0) {
            let Some(role) = Role::parse(&r.role) else {
                tracing::warn!(token_id = %r.token_id, role = %r.role, "token with an unknown role ignored");
                continue;
            };
            by_id.insert(
                r.token_id.clone(),
                ValidToken {
                    role,
                    tenant_id: r.tenant_id.clone(),
                    secret_hash: r.secret_hash.clone(),
                },
            );
        }
        TokenSet { by_id }
    }

    /// How many valid tokens there are.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// The process's authentication settings and the latest token set.
pub struct AuthShared {
    /// Whether calls need a token.
    pub required: bool,
    /// SHA-256 (hex) of the bootstrap admin token, if one is configured.
    bootstrap_hash: Option<String>,
    /// The records of the latest token set, and the set; locked only to reload it (off the
    /// request path) and when a core is built.
    current: Mutex<(Vec<TokenRecord>, Arc<TokenSet>)>,
}

impl AuthShared {
    /// From the configuration and the stored tokens. Fails when the bootstrap token is set but
    /// unusable (unreadable file, too short).
    pub fn new(config: &CoordinatorConfig, tokens: &[TokenRecord]) -> Result<AuthShared, String> {
        let required = config.auth.mode == crate::config::AuthMode::Required;
        let bootstrap = config.auth.bootstrap().map_err(|e| e.to_string())?;
        if required {
            tracing::info!(
                bootstrap = bootstrap.is_some(),
                tokens = tokens.iter().filter(|t| t.revoked_at_us == 0).count(),
                "authentication required: every call but health checks and reflection needs a bearer token"
            );
        } else {
            tracing::warn!(
                "authentication is off (auth.mode: off): any client that reaches the coordinator's \
                 ports can read and write every tenant's keys and run admin calls; see docs/SECURITY.md"
            );
        }
        Ok(AuthShared {
            required,
            bootstrap_hash: bootstrap.map(|t| auth::hash_secret(&t)),
            current: Mutex::new((tokens.to_vec(), Arc::new(TokenSet::from_records(tokens)))),
        })
    }

    /// The token set a new core starts with.
    pub fn snapshot(&self) -> Arc<TokenSet> {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).1.clone()
    }

    /// Reads the tokens from the store and, when they changed, sends the new set to every core.
    /// Blocking. Serialised, so that the last set broadcast is from the last read.
    pub fn reload(&self, meta: &dyn MetadataStore, shared: &Shared) -> Result<(), MetaError> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let records = meta.tokens()?;
        if records == current.0 {
            return Ok(());
        }
        let set = Arc::new(TokenSet::from_records(&records));
        *current = (records, set.clone());
        shared.broadcast(Update::Tokens(set));
        Ok(())
    }
}

/// Who made a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's id (`bootstrap` for the bootstrap token), `-` when auth is off.
    pub token_id: String,
    /// Its role.
    pub role: Role,
    /// Its tenant, empty for admin.
    pub tenant_id: String,
}

impl Caller {
    fn anonymous() -> Caller {
        Caller { token_id: "-".into(), role: Role::Admin, tenant_id: String::new() }
    }
}

/// Who presents `authorization`, given the settings and a core's token set.
pub fn authenticate(
    settings: &AuthShared,
    tokens: &TokenSet,
    authorization: Option<&[u8]>,
) -> Result<Caller, PairError> {
    if !settings.required {
        return Ok(Caller::anonymous());
    }
    let unauthorized = |why: &str| PairError::Unauthorized(why.to_owned());
    let Some(header) = authorization else {
        return Err(unauthorized(
            "this call needs a bearer token: send `authorization: Bearer <token>`",
        ));
    };
    let token = auth::parse_bearer(header).map_err(|e| unauthorized(&e.to_string()))?;
    if let Some((id, secret)) = auth::split_token(token) {
        if let Some(valid) = tokens.by_id.get(id) {
            if auth::constant_time_eq(
                auth::hash_secret(secret).as_bytes(),
                valid.secret_hash.as_bytes(),
            ) {
                return Ok(Caller {
                    token_id: id.to_owned(),
                    role: valid.role,
                    tenant_id: valid.tenant_id.clone(),
                });
            }
        }
    }
    if let Some(hash) = &settings.bootstrap_hash {
        if auth::is_bootstrap(token, hash) {
            return Ok(Caller {
                token_id: auth::BOOTSTRAP_ID.into(),
                role: Role::Admin,
                tenant_id: String::new(),
            });
        }
    }
    Err(unauthorized("unknown or revoked token"))
}

/// What a request does and to which tenant (or other target), for the permission check.
pub trait Guard {
    /// The action and its target (a tenant id for key-value and tenant calls).
    fn guard(&self) -> (Action, &str);
}

macro_rules! guard {
    ($($ty:ident => |$r:ident| $body:expr;)*) => {
        $(impl Guard for api::$ty {
            fn guard(&self) -> (Action, &str) {
                let $r = self;
                $body
            }
        })*
    };
}

guard! {
    WriteKeyValueRequest => |r| (Action::Write, &r.tenant_id);
    DeleteKeyValueRequest => |r| (Action::Write, &r.tenant_id);
    ReadKeyValueRequest => |r| (Action::Read, &r.tenant_id);
    GetTenantRequest => |r| (Action::TenantRead, &r.tenant_id);
    CreateTenantRequest => |r| (Action::Admin, &r.tenant_id);
    UpdateReplicationFactorRequest => |r| (Action::Admin, &r.tenant_id);
    AddStorageNodeRequest => |r| (Action::Admin, &r.node_id);
    RemoveStorageNodeRequest => |r| (Action::Admin, &r.node_id);
    ListStorageNodesRequest => |_r| (Action::Admin, "");
    GetMigrationStatusRequest => |r| (Action::Admin, &r.migration_id);
    CancelMigrationRequest => |r| (Action::Admin, &r.migration_id);
    ListMigrationsRequest => |_r| (Action::Admin, "");
    CreateTokenRequest => |r| (Action::Admin, &r.tenant_id);
    ListTokensRequest => |r| (Action::Admin, &r.tenant_id);
    RevokeTokenRequest => |r| (Action::Admin, &r.token_id);
    UpdateTenantLimitsRequest => |r| (Action::Admin, &r.tenant_id);
}

/// One audit line.
fn audit(caller: Option<&Caller>, rpc: &str, target: &str, outcome: &str) {
    tracing::info!(
        target: "audit",
        token_id = caller.map(|c| c.token_id.as_str()).unwrap_or("-"),
        role = caller.map(|c| c.role.as_str()).unwrap_or("-"),
        rpc,
        target,
        outcome,
        "admin call"
    );
}

impl Shard {
    /// Runs `handler` for `req` if the call's token allows it, and writes the audit line of an
    /// admin call (refused ones included).
    pub(crate) async fn guarded<Req, Resp, F, Fut>(
        self: Rc<Self>,
        rpc: &'static str,
        req: Req,
        ctx: CallContext,
        handler: F,
    ) -> Result<Resp, PairError>
    where
        Req: Guard,
        F: FnOnce(Rc<Shard>, Req, CallContext) -> Fut,
        Fut: Future<Output = Result<Resp, PairError>>,
    {
        let (action, target) = req.guard();
        let caller = if self.shared.auth.required {
            authenticate(&self.shared.auth, &self.tokens(), ctx.authorization.as_deref())
        } else {
            // Auth off: no token set to look at, nothing to check.
            Ok(Caller::anonymous())
        };
        let allowed = caller.as_ref().map_err(Clone::clone).and_then(|c| {
            auth::allowed(c.role, &c.tenant_id, action, target)
                .map_err(|d| PairError::Forbidden(d.to_string()))
        });
        // Only admin calls are audited: no copy of the target on the key-value path.
        let audited = (action == Action::Admin).then(|| target.to_owned());
        if let Err(e) = allowed {
            if let Some(target) = &audited {
                let outcome = match e {
                    PairError::Forbidden(_) => "forbidden",
                    _ => "unauthorized",
                };
                audit(caller.as_ref().ok(), rpc, target, outcome);
            }
            return Err(e);
        }
        let result = handler(self, req, ctx).await;
        if let Some(target) = &audited {
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) => crate::rpc::Status::from(e).error_code.map_or("error", |c| match c {
                    std::borrow::Cow::Borrowed(s) => s,
                    std::borrow::Cow::Owned(_) => "error",
                }),
            };
            audit(caller.as_ref().ok(), rpc, target, outcome);
        }
        result
    }

    // ------------------------------------------------------------------------------------
    // Token management RPCs.
    // ------------------------------------------------------------------------------------

    pub(crate) async fn create_token(
        self: Rc<Self>,
        req: api::CreateTokenRequest,
        _: CallContext,
    ) -> Result<api::CreateTokenResponse, PairError> {
        let role = Role::parse(&req.role).ok_or_else(|| {
            PairError::invalid(format!(
                "role {:?} is not one of admin, tenant-rw, tenant-ro",
                req.role
            ))
        })?;
        if role.has_tenant() {
            crate::core::validate::tenant_id(&req.tenant_id)?;
            // A token for a tenant that does not exist would be a typo waiting to bite.
            self.tenant(&req.tenant_id).await?;
        } else if !req.tenant_id.is_empty() {
            return Err(PairError::invalid(
                "an admin token belongs to no tenant: leave tenant_id empty",
            ));
        }
        let generated = auth::generate(&mut rand::rng());
        let record = TokenRecord {
            token_id: generated.id.clone(),
            tenant_id: req.tenant_id.clone(),
            role: role.as_str().into(),
            created_at_us: crate::coordinator::shard::unix_now_us(),
            revoked_at_us: 0,
            secret_hash: generated.secret_hash.clone(),
        };
        let shared = self.shared.clone();
        let stored = record.clone();
        crate::coordinator::shard::blocking(move || {
            shared.meta.create_token(&stored)?;
            shared.auth.reload(shared.meta.as_ref(), &shared)
        })
        .await
        .map_err(crate::coordinator::shard::meta_error)?;
        Ok(api::CreateTokenResponse { token: generated.token, info: Some(token_info(&record)) })
    }

    pub(crate) async fn list_tokens(
        self: Rc<Self>,
        req: api::ListTokensRequest,
        _: CallContext,
    ) -> Result<api::ListTokensResponse, PairError> {
        let meta = self.shared.meta.clone();
        let tokens = crate::coordinator::shard::blocking(move || meta.tokens())
            .await
            .map_err(crate::coordinator::shard::meta_error)?;
        Ok(api::ListTokensResponse {
            tokens: tokens
                .iter()
                .filter(|t| req.tenant_id.is_empty() || t.tenant_id == req.tenant_id)
                .map(token_info)
                .collect(),
        })
    }

    pub(crate) async fn revoke_token(
        self: Rc<Self>,
        req: api::RevokeTokenRequest,
        _: CallContext,
    ) -> Result<api::RevokeTokenResponse, PairError> {
        if req.token_id.is_empty() {
            return Err(PairError::invalid("token_id is required"));
        }
        let shared = self.shared.clone();
        let id = req.token_id.clone();
        let now = crate::coordinator::shard::unix_now_us();
        let revoked = crate::coordinator::shard::blocking(move || {
            let r = shared.meta.revoke_token(&id, now)?;
            shared.auth.reload(shared.meta.as_ref(), &shared)?;
            Ok::<_, MetaError>(r)
        })
        .await;
        match revoked {
            Ok(r) => Ok(api::RevokeTokenResponse { info: Some(token_info(&r)) }),
            Err(MetaError::NotFound { .. }) => {
                Err(PairError::invalid(format!("token {:?} does not exist", req.token_id)))
            }
            Err(e) => Err(crate::coordinator::shard::meta_error(e)),
        }
    }
}

fn token_info(t: &TokenRecord) -> api::TokenInfo {
    api::TokenInfo {
        token_id: t.token_id.clone(),
        tenant_id: t.tenant_id.clone(),
        role: t.role.clone(),
        created_at_us: t.created_at_us,
        revoked_at_us: t.revoked_at_us,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(required: bool, bootstrap: Option<&str>) -> AuthShared {
        AuthShared {
            required,
            bootstrap_hash: bootstrap.map(auth::hash_secret),
            current: Mutex::new((Vec::new(), Arc::default())),
        }
    }

    #[test]
    fn tokens_are_checked_by_id_and_secret() {
        let g = auth::generate(&mut rand::rng());
        let revoked = auth::generate(&mut rand::rng());
        let record = |g: &auth::Generated, revoked_at_us| TokenRecord {
            token_id: g.id.clone(),
            tenant_id: "t".into(),
            role: "tenant-ro".into(),
            created_at_us: 1,
            revoked_at_us,
            secret_hash: g.secret_hash.clone(),
        };
        let set = TokenSet::from_records(&[record(&g, 0), record(&revoked, 5)]);
        assert_eq!(set.len(), 1);
        let boot = "b".repeat(40);
        let s = settings(true, Some(&boot));
        let bearer = |t: &str| format!("Bearer {t}").into_bytes();
        let c = authenticate(&s, &set, Some(&bearer(&g.token))).unwrap();
        assert_eq!(
            (c.token_id.as_str(), c.role, c.tenant_id.as_str()),
            (g.id.as_str(), Role::TenantRo, "t")
        );
        let c = authenticate(&s, &set, Some(&bearer(&boot))).unwrap();
        assert_eq!(c.role, Role::Admin);
        assert_eq!(c.token_id, "bootstrap");
        for bad in [
            None,
            Some(bearer(&revoked.token)),
            Some(bearer(&g.token.replace(&g.id, &revoked.id))),
            // The last character changed (never to itself).
            Some(bearer(&format!(
                "{}{}",
                &g.token[..g.token.len() - 1],
                if g.token.ends_with('0') { '1' } else { '0' }
            ))),
            Some(bearer(&boot[1..])),
            Some(g.token.clone().into_bytes()),
        ] {
            let e = authenticate(&s, &set, bad.as_deref()).unwrap_err();
            assert!(matches!(e, PairError::Unauthorized(_)), "{e:?}");
            assert!(!e.to_string().contains(&g.token[20..]), "no secret in errors");
        }
        let off = settings(false, None);
        assert_eq!(authenticate(&off, &set, None).unwrap().role, Role::Admin);
    }
}
