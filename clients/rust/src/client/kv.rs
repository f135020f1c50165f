//! The key-value calls: get, put and delete, each with its `_with` variant taking options.

use super::{
    new_idempotency_key,
    retry::{with_timeout, Idempotence},
    Client, ReadOptions, Versioned, WriteOptions, Written,
};
use crate::{
    error::{Error, Result},
    proto,
};

impl Client {
    /// Reads `key` at QUORUM. A key never written or deleted fails with
    /// [`Error::KeyNotFound`]; see [`Client::get_opt`] for an `Option`.
    pub async fn get(&self, key: impl Into<String>) -> Result<Versioned> {
        self.get_with(key, ReadOptions::default()).await
    }

    /// Reads `key`, `None` when it has no live version.
    pub async fn get_opt(&self, key: impl Into<String>) -> Result<Option<Versioned>> {
        match self.get(key).await {
            Ok(v) => Ok(Some(v)),
            Err(Error::KeyNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads `key` with these options.
    pub async fn get_with(
        &self,
        key: impl Into<String>,
        options: ReadOptions,
    ) -> Result<Versioned> {
        let request = proto::ReadKeyValueRequest {
            tenant_id: self.tenant.to_string(),
            key: key.into(),
            consistency: options.consistency.unwrap_or_default().to_proto(),
        };
        let timeout = options.timeout.unwrap_or(self.timeout);
        let r = self
            .call(timeout, Idempotence::Safe, |mut c, t| {
                let request = request.clone();
                async move { c.read_key_value(with_timeout(request, t)).await }
            })
            .await?;
        Ok(Versioned {
            key: r.key,
            value: r.value,
            clock: r.vector_clock.unwrap_or_default(),
            replica_count: u32::try_from(r.replica_count).unwrap_or(0),
        })
    }

    /// Writes `value` under `key` at QUORUM, blind, with a generated idempotency key.
    pub async fn put(&self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Result<Written> {
        self.put_with(key, value, WriteOptions::default()).await
    }

    /// Writes `value` under `key` with these options. The idempotency key (given or generated
    /// here, once) is the same on every retry of this call.
    pub async fn put_with(
        &self,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
        options: WriteOptions,
    ) -> Result<Written> {
        let request = proto::WriteKeyValueRequest {
            tenant_id: self.tenant.to_string(),
            key: key.into(),
            value: value.into(),
            consistency: options.consistency.unwrap_or_default().to_proto(),
            idempotency_key: options.idempotency_key.unwrap_or_else(new_idempotency_key),
            vector_clock: options.context,
        };
        let timeout = options.timeout.unwrap_or(self.timeout);
        let r = self
            .call(timeout, Idempotence::Safe, |mut c, t| {
                let request = request.clone();
                async move { c.write_key_value(with_timeout(request, t)).await }
            })
            .await?;
        Ok(Written {
            key: r.key,
            idempotency_key: r.idempotency_key,
            clock: r.vector_clock.unwrap_or_default(),
            replica_count: u32::try_from(r.replica_count).unwrap_or(0),
            is_duplicate: r.is_duplicate,
        })
    }

    /// Deletes `key` (writes a tombstone) at QUORUM, with a generated idempotency key. Deleting
    /// a key that does not exist succeeds.
    pub async fn delete(&self, key: impl Into<String>) -> Result<Written> {
        self.delete_with(key, WriteOptions::default()).await
    }

    /// Deletes `key` with these options (see [`Client::put_with`]).
    pub async fn delete_with(
        &self,
        key: impl Into<String>,
        options: WriteOptions,
    ) -> Result<Written> {
        let request = proto::DeleteKeyValueRequest {
            tenant_id: self.tenant.to_string(),
            key: key.into(),
            consistency: options.consistency.unwrap_or_default().to_proto(),
            idempotency_key: options.idempotency_key.unwrap_or_else(new_idempotency_key),
            vector_clock: options.context,
        };
        let timeout = options.timeout.unwrap_or(self.timeout);
        let r = self
            .call(timeout, Idempotence::Safe, |mut c, t| {
                let request = request.clone();
                async move { c.delete_key_value(with_timeout(request, t)).await }
            })
            .await?;
        Ok(Written {
            key: r.key,
            idempotency_key: r.idempotency_key,
            clock: r.vector_clock.unwrap_or_default(),
            replica_count: u32::try_from(r.replica_count).unwrap_or(0),
            is_duplicate: r.is_duplicate,
        })
    }
}
