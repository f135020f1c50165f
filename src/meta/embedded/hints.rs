//! [`HintStore`] for [`EmbeddedStore`], and the hint's prost encoding.

use std::collections::BTreeMap;

use prost::Message;
use redb::ReadableTable;

use super::{
    check_id, corrupt, DecodeError, EmbeddedStore, Fail, HINTS, HINTS_BY_TIME, HINT_COUNTS,
    NEXT_HINT_ID_KEY, SETTINGS,
};
use crate::core::version::Version;
use crate::meta::{Hint, HintStore, MetaError, RecordKind};
use crate::proto::storage;

impl HintStore for EmbeddedStore {
    fn add_hints(&self, hints: &[Hint]) -> Result<(), MetaError> {
        if hints.is_empty() {
            return Ok(());
        }
        for hint in hints {
            check_id(RecordKind::Hint, &hint.target_node)?;
        }
        self.write(|txn| {
            let mut settings = txn.open_table(SETTINGS)?;
            let mut next_id = settings.get(NEXT_HINT_ID_KEY)?.map_or(1, |g| g.value());
            let mut table = txn.open_table(HINTS)?;
            let mut by_time = txn.open_table(HINTS_BY_TIME)?;
            let mut added: BTreeMap<&str, u64> = BTreeMap::new();
            for hint in hints {
                let node = hint.target_node.as_str();
                let id = next_id;
                next_id += 1;
                table.insert((node, id), encode_hint(hint).as_slice())?;
                by_time.insert((hint.created_at_us, node, id), ())?;
                *added.entry(node).or_default() += 1;
            }
            settings.insert(NEXT_HINT_ID_KEY, next_id)?;
            let mut counts = txn.open_table(HINT_COUNTS)?;
            for (node, n) in added {
                let current = counts.get(node)?.map_or(0, |g| g.value());
                counts.insert(node, current + n)?;
            }
            Ok(())
        })
    }

    fn hints_for(&self, node: &str, limit: usize) -> Result<Vec<(u64, Hint)>, MetaError> {
        self.read(|txn| {
            let table = txn.open_table(HINTS)?;
            let mut out = Vec::with_capacity(limit.min(1024));
            for row in table.range((node, 0u64)..=(node, u64::MAX))?.take(limit) {
                let (k, v) = row?;
                let (_, id) = k.value();
                out.push((id, decode_hint(node, id, v.value())?));
            }
            Ok(out)
        })
    }

    fn remove_hints(&self, node: &str, ids: &[u64]) -> Result<(), MetaError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.write(|txn| {
            let mut table = txn.open_table(HINTS)?;
            let mut by_time = txn.open_table(HINTS_BY_TIME)?;
            let mut removed = 0u64;
            for &id in ids {
                let created_at_us = match table.remove((node, id))? {
                    None => continue,
                    // A hint that does not decode is still removed; its time index entry then
                    // stays until drop_older_than passes it, which tolerates a missing hint.
                    Some(g) => HintValue::decode(g.value()).ok().map(|h| h.created_at_us),
                };
                removed += 1;
                if let Some(t) = created_at_us {
                    by_time.remove((t, node, id))?;
                }
            }
            let mut counts = txn.open_table(HINT_COUNTS)?;
            subtract_count(&mut counts, node, removed)?;
            Ok(())
        })
    }

    fn pending_counts(&self) -> Result<Vec<(String, u64)>, MetaError> {
        self.read(|txn| {
            let counts = txn.open_table(HINT_COUNTS)?;
            let mut out = Vec::new();
            for row in counts.iter()? {
                let (k, v) = row?;
                out.push((k.value().to_owned(), v.value()));
            }
            Ok(out)
        })
    }

    fn drop_older_than(&self, cutoff_us: i64) -> Result<usize, MetaError> {
        self.write(|txn| {
            let mut by_time = txn.open_table(HINTS_BY_TIME)?;
            // `(cutoff_us, "", 0)` sorts before every real key with that timestamp (node ids are
            // never empty), so this range is exactly the hints created before the cutoff.
            let mut expired = Vec::new();
            for row in by_time.range(..(cutoff_us, "", 0u64))? {
                let (k, _) = row?;
                let (t, node, id) = k.value();
                expired.push((t, node.to_owned(), id));
            }
            let mut table = txn.open_table(HINTS)?;
            let mut dropped: BTreeMap<&str, u64> = BTreeMap::new();
            for (t, node, id) in &expired {
                by_time.remove((*t, node.as_str(), *id))?;
                if table.remove((node.as_str(), *id))?.is_some() {
                    *dropped.entry(node.as_str()).or_default() += 1;
                }
            }
            let mut counts = txn.open_table(HINT_COUNTS)?;
            let mut total = 0usize;
            for (node, n) in dropped {
                subtract_count(&mut counts, node, n)?;
                total += usize::try_from(n).unwrap_or(usize::MAX);
            }
            Ok(total)
        })
    }
}

/// Lowers `node`'s pending count by `n`, removing the row at zero so that
/// [`HintStore::pending_counts`] lists only nodes with hints.
fn subtract_count(
    counts: &mut redb::Table<'_, &'static str, u64>,
    node: &str,
    n: u64,
) -> Result<(), Fail> {
    if n == 0 {
        return Ok(());
    }
    let current = counts.get(node)?.map_or(0, |g| g.value());
    match current.saturating_sub(n) {
        0 => {
            counts.remove(node)?;
        }
        left => {
            counts.insert(node, left)?;
        }
    }
    Ok(())
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct HintValue {
    #[prost(string, tag = "1")]
    tenant_id: String,
    #[prost(string, tag = "2")]
    key: String,
    #[prost(message, optional, tag = "3")]
    version: Option<storage::Version>,
    #[prost(int64, tag = "4")]
    created_at_us: i64,
}

pub(super) fn encode_hint(h: &Hint) -> Vec<u8> {
    HintValue {
        tenant_id: h.tenant_id.clone(),
        key: h.key.clone(),
        version: Some(storage::Version::from(&h.version)),
        created_at_us: h.created_at_us,
    }
    .encode_to_vec()
}

pub(super) fn decode_hint(node: &str, id: u64, bytes: &[u8]) -> Result<Hint, Fail> {
    let fail = |e: DecodeError| corrupt(RecordKind::Hint, &format!("{node}/{id}"), e);
    let v = HintValue::decode(bytes).map_err(|e| fail(e.into()))?;
    let wire = v.version.ok_or_else(|| fail(DecodeError::MissingVersion))?;
    let version = Version::try_from(&wire).map_err(|e| fail(e.into()))?;
    Ok(Hint {
        target_node: node.to_owned(),
        tenant_id: v.tenant_id,
        key: v.key,
        version,
        created_at_us: v.created_at_us,
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::meta::embedded::tests::hint;

    #[test]
    fn hints_round_trip_through_their_encoding() {
        let h = Hint {
            version: Version { tombstone: true, value: Bytes::new(), ..hint("n1", "k", 9).version },
            ..hint("n1", "k", 9)
        };
        assert_eq!(decode_hint("n1", 1, &encode_hint(&h)).ok(), Some(h));
    }
}
