//! [`HintStore`] for [`EmbeddedStore`], and the hint's prost encoding.

use std::collections::{btree_map, BTreeMap};

use prost::Message;
use redb::ReadableTable;

use super::{
    check_id, corrupt, DecodeError, EmbeddedStore, Fail, HINTS, HINTS_BY_TIME, HINT_COUNTS,
    HINT_KEYS, NEXT_HINT_ID_KEY, SETTINGS,
};
use crate::core::version::Version;
use crate::meta::{coalesce_batch, Hint, HintStore, HintsAdded, MetaError, RecordKind};
use crate::proto::storage;

impl HintStore for EmbeddedStore {
    fn add_hints(&self, hints: &[Hint]) -> Result<HintsAdded, MetaError> {
        for hint in hints {
            check_id(RecordKind::Hint, &hint.target_node)?;
        }
        let (batch, folded) = coalesce_batch(hints);
        let mut out = HintsAdded { coalesced: folded, ..HintsAdded::default() };
        if batch.is_empty() {
            return Ok(out);
        }
        let max_hints = self.max_hints;
        self.write(|txn| {
            let mut settings = txn.open_table(SETTINGS)?;
            let mut next_id = settings.get(NEXT_HINT_ID_KEY)?.map_or(1, |g| g.value());
            let mut tables = HintTables::open(txn)?;
            let mut counts = txn.open_table(HINT_COUNTS)?;
            let mut total = 0u64;
            for row in counts.iter()? {
                total += row?.1.value();
            }
            let mut added: BTreeMap<&str, u64> = BTreeMap::new();
            for hint in &batch {
                let node = hint.target_node.as_str();
                let triple = (node, hint.tenant_id.as_str(), hint.key.as_str());
                let existing = tables.keys.get(triple)?.map(|g| g.value());
                // An index entry whose hint is gone (it did not decode when removed) counts as
                // no hint: the new one replaces the entry.
                let stored = match existing {
                    Some(id) => tables
                        .hints
                        .get((node, id))?
                        .map(|g| (id, decode_hint(node, id, g.value()))),
                    None => None,
                };
                match stored {
                    Some((id, stored)) => {
                        out.coalesced += 1;
                        // A stored hint that no longer decodes is replaced by the new one.
                        let kept = match stored {
                            Ok(stored) => Hint::coalesce(&stored, hint),
                            Err(_) => Some(hint.clone()),
                        };
                        if let Some(kept) = kept {
                            tables.remove(node, id)?;
                            tables.insert(next_id, &kept)?;
                            next_id += 1;
                        }
                    }
                    None if total >= max_hints => out.dropped += 1,
                    None => {
                        tables.insert(next_id, hint)?;
                        next_id += 1;
                        total += 1;
                        *added.entry(node).or_default() += 1;
                        out.stored += 1;
                    }
                }
            }
            settings.insert(NEXT_HINT_ID_KEY, next_id)?;
            for (node, n) in added {
                let current = counts.get(node)?.map_or(0, |g| g.value());
                counts.insert(node, current + n)?;
            }
            Ok(out)
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
            let mut tables = HintTables::open(txn)?;
            let mut removed = 0u64;
            for &id in ids {
                if tables.remove(node, id)? {
                    removed += 1;
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
            let mut tables = HintTables::open(txn)?;
            // `(cutoff_us, "", 0)` sorts before every real key with that timestamp (node ids are
            // never empty), so this range is exactly the hints created before the cutoff.
            let mut expired = Vec::new();
            for row in tables.by_time.range(..(cutoff_us, "", 0u64))? {
                let (k, _) = row?;
                let (t, node, id) = k.value();
                expired.push((t, node.to_owned(), id));
            }
            let mut dropped: BTreeMap<&str, u64> = BTreeMap::new();
            for (t, node, id) in &expired {
                // Removed here too in case the hint is gone or does not decode.
                tables.by_time.remove((*t, node.as_str(), *id))?;
                if tables.remove(node, *id)? {
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

/// The three tables a hint is in, open in one write transaction. `hint_counts` is kept by the
/// callers, which batch its updates per node.
struct HintTables<'txn> {
    hints: redb::Table<'txn, (&'static str, u64), &'static [u8]>,
    by_time: redb::Table<'txn, (i64, &'static str, u64), ()>,
    keys: redb::Table<'txn, (&'static str, &'static str, &'static str), u64>,
}

impl<'txn> HintTables<'txn> {
    fn open(txn: &'txn redb::WriteTransaction) -> Result<Self, Fail> {
        Ok(Self {
            hints: txn.open_table(HINTS)?,
            by_time: txn.open_table(HINTS_BY_TIME)?,
            keys: txn.open_table(HINT_KEYS)?,
        })
    }

    /// Stores `hint` as `id` of its target node, the one hint of its key.
    fn insert(&mut self, id: u64, hint: &Hint) -> Result<(), Fail> {
        let node = hint.target_node.as_str();
        self.hints.insert((node, id), encode_hint(hint).as_slice())?;
        self.by_time.insert((hint.created_at_us, node, id), ())?;
        self.keys.insert((node, hint.tenant_id.as_str(), hint.key.as_str()), id)?;
        Ok(())
    }

    /// Removes hint `id` of `node` and its index entries; false when it was not stored.
    fn remove(&mut self, node: &str, id: u64) -> Result<bool, Fail> {
        let value = match self.hints.remove((node, id))? {
            None => return Ok(false),
            Some(g) => HintValue::decode(g.value()).ok(),
        };
        // A hint that does not decode is still removed; its index entries then stay: the time
        // entry until drop_older_than passes it, the key entry until the next hint for that key
        // finds its hint gone. Both tolerate that.
        if let Some(v) = value {
            self.by_time.remove((v.created_at_us, node, id))?;
            let triple = (node, v.tenant_id.as_str(), v.key.as_str());
            if self.keys.get(triple)?.map(|g| g.value()) == Some(id) {
                self.keys.remove(triple)?;
            }
        }
        Ok(true)
    }
}

/// Upgrades a schema 1 file: fills `hint_keys`, keeping of several hints for one key the one
/// created last (the highest id on a tie) and removing the others. Returns how many it removed.
pub(super) fn index_v1_hints(txn: &redb::WriteTransaction) -> Result<u64, Fail> {
    let mut tables = HintTables::open(txn)?;
    // Per (node, tenant, key): the hint kept so far, as (created_at_us, id).
    let mut keep: BTreeMap<(String, String, String), (i64, u64)> = BTreeMap::new();
    let mut losers: Vec<(String, u64)> = Vec::new();
    for row in tables.hints.iter()? {
        let (k, v) = row?;
        let (node, id) = k.value();
        // Undecodable hints are left alone, to expire; they have no key to index.
        let Ok(v) = HintValue::decode(v.value()) else { continue };
        match keep.entry((node.to_owned(), v.tenant_id, v.key)) {
            btree_map::Entry::Vacant(e) => {
                e.insert((v.created_at_us, id));
            }
            btree_map::Entry::Occupied(mut e) => {
                let (created_at_us, kept) = *e.get();
                if (v.created_at_us, id) > (created_at_us, kept) {
                    losers.push((node.to_owned(), kept));
                    e.insert((v.created_at_us, id));
                } else {
                    losers.push((node.to_owned(), id));
                }
            }
        }
    }
    let mut removed: BTreeMap<&str, u64> = BTreeMap::new();
    for (node, id) in &losers {
        if tables.remove(node, *id)? {
            *removed.entry(node.as_str()).or_default() += 1;
        }
    }
    for ((node, tenant_id, key), (_, id)) in &keep {
        tables.keys.insert((node.as_str(), tenant_id.as_str(), key.as_str()), *id)?;
    }
    let mut counts = txn.open_table(HINT_COUNTS)?;
    for (node, n) in removed {
        subtract_count(&mut counts, node, n)?;
    }
    Ok(losers.len() as u64)
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
