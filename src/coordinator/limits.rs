//! Per-tenant limits on the key-value path, and `UpdateTenantLimits`.
//!
//! Each core keeps its own token buckets per tenant (`Shard::buckets`), built from the tenant's
//! limits in the core's tenant cache, the `limits:` defaults and the global size caps
//! (`core::limits::effective`), with `1 / cores` of each rate. A request is checked before its
//! idempotency claim and before anything is sent to a storage node, so a refusal costs a map
//! lookup. A change of a tenant's limits reaches the cores as an `Update::Tenant` (and, with
//! PostgreSQL, the other coordinators through `NOTIFY`); the next request on a core whose
//! buckets were built for other limits rebuilds them, full.

use std::{rc::Rc, time::Instant};

use crate::{
    coordinator::{
        shard::{blocking, meta_error, unix_now_secs, Shard},
        Update,
    },
    core::limits::{self, Effective, Reason, TenantBuckets, TenantLimits},
    error::PairError,
    meta::TenantRecord,
    proto::coordinator as api,
    rpc::CallContext,
};

impl Shard {
    /// The limits in force for `tenant` on this coordinator.
    pub fn effective_limits(&self, tenant: &TenantRecord) -> Effective {
        let cfg = &self.shared.config;
        limits::effective(
            &tenant.limits,
            &cfg.limits.defaults(),
            cfg.max_key_bytes,
            cfg.max_value_bytes,
        )
    }

    /// Checks one key-value request of `tenant` against its limits: the key and value sizes
    /// (KEY_TOO_LARGE / VALUE_TOO_LARGE), then this core's buckets, charged with one request
    /// and `key_len + value_len` bytes (RATE_LIMITED with a retry hint, counted by reason).
    pub fn admit(
        &self,
        tenant: &TenantRecord,
        key_len: usize,
        value_len: usize,
    ) -> Result<(), PairError> {
        let eff = self.effective_limits(tenant);
        limits::check_sizes(&eff, key_len, value_len)?;
        if eff.requests_per_second == 0 && eff.bytes_per_second == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.borrow_mut();
        let cores = self.shared.mesh.len();
        let b = match buckets.get_mut(&tenant.tenant_id) {
            Some(b) if *b.limits() == eff => b,
            _ => {
                buckets.insert(tenant.tenant_id.clone(), TenantBuckets::new(eff, cores, now));
                buckets.get_mut(&tenant.tenant_id).expect("just inserted")
            }
        };
        b.admit(key_len + value_len, now).map_err(|refused| {
            let counter = match refused.reason {
                Reason::Requests => &self.metrics.rate_limited_requests,
                Reason::Bytes => &self.metrics.rate_limited_bytes,
            };
            counter.set(counter.get() + 1);
            refused.to_error(&tenant.tenant_id)
        })
    }

    /// Charges the bytes of a value read to its tenant's byte bucket on this core (see
    /// `TenantBuckets::charge`).
    pub fn charge_read(&self, tenant_id: &str, bytes: usize) {
        if let Some(b) = self.buckets.borrow_mut().get_mut(tenant_id) {
            b.charge(bytes, Instant::now());
        }
    }

    pub(crate) async fn update_tenant_limits(
        self: Rc<Self>,
        req: api::UpdateTenantLimitsRequest,
        _: CallContext,
    ) -> Result<api::UpdateTenantLimitsResponse, PairError> {
        if req.tenant_id.is_empty() {
            return Err(PairError::invalid("tenant_id is required"));
        }
        let limits = self.checked_limits(req.limits.as_ref())?;
        let meta = self.shared.meta.clone();
        let id = req.tenant_id.clone();
        let now = unix_now_secs();
        let record = blocking(move || meta.update_tenant_limits(&id, &limits, now))
            .await
            .map_err(meta_error)?;
        self.shared.broadcast(Update::Tenant(record.clone()));
        Ok(api::UpdateTenantLimitsResponse {
            tenant_id: record.tenant_id.clone(),
            limits: Some(to_proto_limits(&record.limits)),
            effective_limits: Some(self.effective_proto(&record)),
            updated_at: record.updated_at,
        })
    }

    /// A request's limits, refused when a size is above the global cap (INVALID_REQUEST).
    pub(crate) fn checked_limits(
        &self,
        limits: Option<&api::TenantLimits>,
    ) -> Result<TenantLimits, PairError> {
        let l = limits.map(from_proto_limits).unwrap_or_default();
        let cfg = &self.shared.config;
        if l.max_key_bytes > cfg.max_key_bytes as u64 {
            return Err(PairError::invalid(format!(
                "max_key_bytes {} is above this cluster's max_key_bytes, {}",
                l.max_key_bytes, cfg.max_key_bytes
            )));
        }
        if l.max_value_bytes > cfg.max_value_bytes as u64 {
            return Err(PairError::invalid(format!(
                "max_value_bytes {} is above this cluster's max_value_bytes, {}",
                l.max_value_bytes, cfg.max_value_bytes
            )));
        }
        Ok(l)
    }

    /// The limits in force for `tenant`, as the API shows them.
    pub(crate) fn effective_proto(&self, tenant: &TenantRecord) -> api::TenantLimits {
        let e = self.effective_limits(tenant);
        api::TenantLimits {
            requests_per_second: e.requests_per_second,
            bytes_per_second: e.bytes_per_second,
            max_key_bytes: e.max_key_bytes as u64,
            max_value_bytes: e.max_value_bytes as u64,
        }
    }
}

/// Stored limits as the API shows them.
pub fn to_proto_limits(l: &TenantLimits) -> api::TenantLimits {
    api::TenantLimits {
        requests_per_second: l.requests_per_second,
        bytes_per_second: l.bytes_per_second,
        max_key_bytes: l.max_key_bytes,
        max_value_bytes: l.max_value_bytes,
    }
}

/// The API's limits as stored.
pub fn from_proto_limits(l: &api::TenantLimits) -> TenantLimits {
    TenantLimits {
        requests_per_second: l.requests_per_second,
        bytes_per_second: l.bytes_per_second,
        max_key_bytes: l.max_key_bytes,
        max_value_bytes: l.max_value_bytes,
    }
}
