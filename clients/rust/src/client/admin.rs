//! Tenant and admin calls: tenants, replication factor, storage nodes, migrations.

use super::{
    retry::{with_timeout, Idempotence},
    Client,
};
use crate::{error::Result, proto};

impl Client {
    /// Creates a tenant; `replication_factor` 0 means the server's default (3). Fails with
    /// [`Error::TenantExists`] when it exists (also when an earlier attempt of this call created
    /// it and its answer was lost).
    ///
    /// [`Error::TenantExists`]: crate::Error::TenantExists
    pub async fn create_tenant(
        &self,
        tenant_id: impl Into<String>,
        replication_factor: u32,
    ) -> Result<proto::CreateTenantResponse> {
        let request = proto::CreateTenantRequest {
            tenant_id: tenant_id.into(),
            replication_factor: i32::try_from(replication_factor).unwrap_or(i32::MAX),
            ..Default::default()
        };
        self.call(self.timeout, Idempotence::Unsafe, |mut c, t| {
            let request = request.clone();
            async move { c.create_tenant(with_timeout(request, t)).await }
        })
        .await
    }

    /// A tenant's configuration; [`Error::TenantNotFound`] when it does not exist.
    ///
    /// [`Error::TenantNotFound`]: crate::Error::TenantNotFound
    pub async fn get_tenant(
        &self,
        tenant_id: impl Into<String>,
    ) -> Result<proto::GetTenantResponse> {
        let request = proto::GetTenantRequest { tenant_id: tenant_id.into() };
        self.call(self.timeout, Idempotence::Safe, |mut c, t| {
            let request = request.clone();
            async move { c.get_tenant(with_timeout(request, t)).await }
        })
        .await
    }

    /// Changes a tenant's replication factor; the answer names the migration it starts.
    pub async fn update_replication_factor(
        &self,
        tenant_id: impl Into<String>,
        replication_factor: u32,
    ) -> Result<proto::UpdateReplicationFactorResponse> {
        let request = proto::UpdateReplicationFactorRequest {
            tenant_id: tenant_id.into(),
            new_replication_factor: i32::try_from(replication_factor).unwrap_or(i32::MAX),
        };
        self.call(self.timeout, Idempotence::Unsafe, |mut c, t| {
            let request = request.clone();
            async move { c.update_replication_factor(with_timeout(request, t)).await }
        })
        .await
    }

    /// Replaces a tenant's limits (requests and bytes per second, per coordinator; longest key
    /// and value); a field of 0 follows the coordinator's default. Admin only. Setting the same
    /// limits twice is harmless, so the call is retried like a read.
    pub async fn update_tenant_limits(
        &self,
        tenant_id: impl Into<String>,
        limits: proto::TenantLimits,
    ) -> Result<proto::UpdateTenantLimitsResponse> {
        let request =
            proto::UpdateTenantLimitsRequest { tenant_id: tenant_id.into(), limits: Some(limits) };
        self.call(self.timeout, Idempotence::Safe, |mut c, t| {
            let request = request.clone();
            async move { c.update_tenant_limits(with_timeout(request, t)).await }
        })
        .await
    }

    /// The registered storage nodes.
    pub async fn list_storage_nodes(&self) -> Result<Vec<proto::StorageNodeInfo>> {
        let r = self
            .call(self.timeout, Idempotence::Safe, |mut c, t| async move {
                c.list_storage_nodes(with_timeout(proto::ListStorageNodesRequest {}, t)).await
            })
            .await?;
        Ok(r.nodes)
    }

    /// Registers a storage node; `virtual_nodes` 0 means the default (150).
    pub async fn add_storage_node(
        &self,
        node_id: impl Into<String>,
        host: impl Into<String>,
        port: u16,
        virtual_nodes: u32,
    ) -> Result<proto::AddStorageNodeResponse> {
        let request = proto::AddStorageNodeRequest {
            node_id: node_id.into(),
            host: host.into(),
            port: i32::from(port),
            virtual_nodes: i32::try_from(virtual_nodes).unwrap_or(i32::MAX),
        };
        self.call(self.timeout, Idempotence::Unsafe, |mut c, t| {
            let request = request.clone();
            async move { c.add_storage_node(with_timeout(request, t)).await }
        })
        .await
    }

    /// Removes a storage node; `force` removes it even when it may hold the only copy of keys.
    pub async fn remove_storage_node(
        &self,
        node_id: impl Into<String>,
        force: bool,
    ) -> Result<proto::RemoveStorageNodeResponse> {
        let request = proto::RemoveStorageNodeRequest { node_id: node_id.into(), force };
        self.call(self.timeout, Idempotence::Unsafe, |mut c, t| {
            let request = request.clone();
            async move { c.remove_storage_node(with_timeout(request, t)).await }
        })
        .await
    }

    /// A migration's status.
    pub async fn get_migration_status(
        &self,
        migration_id: impl Into<String>,
    ) -> Result<proto::GetMigrationStatusResponse> {
        let request = proto::GetMigrationStatusRequest { migration_id: migration_id.into() };
        self.call(self.timeout, Idempotence::Safe, |mut c, t| {
            let request = request.clone();
            async move { c.get_migration_status(with_timeout(request, t)).await }
        })
        .await
    }

    /// Creates a bearer token (admin only): `role` is `admin`, `tenant-rw` or `tenant-ro`;
    /// `tenant_id` names the tenant of a tenant token and is empty for `admin`. The answer
    /// carries the token itself, shown this once. Not retried on timeouts (a retry would make a
    /// second token).
    pub async fn create_token(
        &self,
        tenant_id: impl Into<String>,
        role: impl Into<String>,
    ) -> Result<proto::CreateTokenResponse> {
        let request = proto::CreateTokenRequest { tenant_id: tenant_id.into(), role: role.into() };
        self.call(self.timeout, Idempotence::Unsafe, |mut c, t| {
            let request = request.clone();
            async move { c.create_token(with_timeout(request, t)).await }
        })
        .await
    }

    /// The tokens (never their secrets), of one tenant or, with an empty `tenant_id`, all.
    pub async fn list_tokens(
        &self,
        tenant_id: impl Into<String>,
    ) -> Result<proto::ListTokensResponse> {
        let request = proto::ListTokensRequest { tenant_id: tenant_id.into() };
        self.call(self.timeout, Idempotence::Safe, |mut c, t| {
            let request = request.clone();
            async move { c.list_tokens(with_timeout(request, t)).await }
        })
        .await
    }

    /// Revokes a token by its id; every coordinator refuses it within a second or two.
    /// Revoking is idempotent, so the call is retried like a read.
    pub async fn revoke_token(
        &self,
        token_id: impl Into<String>,
    ) -> Result<proto::RevokeTokenResponse> {
        let request = proto::RevokeTokenRequest { token_id: token_id.into() };
        self.call(self.timeout, Idempotence::Safe, |mut c, t| {
            let request = request.clone();
            async move { c.revoke_token(with_timeout(request, t)).await }
        })
        .await
    }
}
