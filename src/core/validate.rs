//! Request checks that need no I/O: sizes, ids and replication factors, each failing with the
//! [`PairError`] the client sees.

use crate::error::PairError;

/// Longest tenant id: ids appear in every storage key, so they stay short.
pub const MAX_TENANT_ID_BYTES: usize = 128;
/// The replication factors a tenant may have.
pub const REPLICATION_FACTORS: std::ops::RangeInclusive<i32> = 1..=10;

/// A key-value request's tenant id and key: present, and the key within `max_key_bytes`.
pub fn key(tenant_id: &str, key: &str, max_key_bytes: usize) -> Result<(), PairError> {
    if tenant_id.is_empty() {
        return Err(PairError::invalid("tenant_id is required"));
    }
    if key.is_empty() {
        return Err(PairError::invalid("key is required"));
    }
    if key.len() > max_key_bytes {
        return Err(PairError::KeyTooLarge { len: key.len(), max: max_key_bytes });
    }
    Ok(())
}

/// A value within `max_value_bytes`.
pub fn value(len: usize, max_value_bytes: usize) -> Result<(), PairError> {
    if len > max_value_bytes {
        return Err(PairError::ValueTooLarge { len, max: max_value_bytes });
    }
    Ok(())
}

/// A new tenant's id: 1 to 128 bytes of letters, digits, `-`, `_` and `.`.
pub fn tenant_id(id: &str) -> Result<(), PairError> {
    if id.is_empty() || id.len() > MAX_TENANT_ID_BYTES {
        return Err(PairError::invalid(format!(
            "tenant_id must be 1 to {MAX_TENANT_ID_BYTES} bytes"
        )));
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err(PairError::invalid(
            "tenant_id may contain only letters, digits, '-', '_' and '.'",
        ));
    }
    Ok(())
}

/// A replication factor for a cluster of `registered` storage nodes: 1 to 10, and no more than
/// the nodes registered (a factor above them could never place every replica: `ALL` would fail
/// every request and `QUORUM` would need more nodes than exist once one is down).
pub fn replication_factor(rf: i32, registered: usize) -> Result<u32, PairError> {
    if !REPLICATION_FACTORS.contains(&rf) {
        return Err(PairError::InvalidReplicationFactor { rf, registered: None });
    }
    if rf as usize > registered {
        return Err(PairError::InvalidReplicationFactor { rf, registered: Some(registered) });
    }
    Ok(rf as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_factors() {
        // rf | registered | accepted
        let cases = [
            (0, 3, false),
            (1, 3, true),
            (3, 3, true),
            (4, 3, false),
            (5, 3, false),
            (10, 10, true),
            (11, 12, false),
        ];
        for (rf, registered, ok) in cases {
            assert_eq!(replication_factor(rf, registered).is_ok(), ok, "rf {rf} on {registered}");
        }
        assert_eq!(
            replication_factor(5, 3),
            Err(PairError::InvalidReplicationFactor { rf: 5, registered: Some(3) })
        );
    }

    #[test]
    fn keys_and_tenant_ids() {
        assert!(key("t", "k", 1).is_ok());
        assert_eq!(key("t", "kk", 1), Err(PairError::KeyTooLarge { len: 2, max: 1 }));
        assert!(matches!(key("", "k", 1), Err(PairError::InvalidRequest(_))));
        assert!(tenant_id("orders-1.a_b").is_ok());
        assert!(tenant_id("no spaces").is_err());
        assert!(tenant_id(&"x".repeat(129)).is_err());
    }
}
