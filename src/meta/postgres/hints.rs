//! [`HintStore`] for [`PostgresStore`].

use std::collections::HashMap;

use postgres::Transaction;
use prost::Message;

use super::{check_id, corrupt, decode_version, Fail, PostgresStore};
use crate::meta::{coalesce_batch, Hint, HintStore, HintsAdded, MetaError, RecordKind};
use crate::proto::storage;

/// Locks the hint count row, the first lock of every hint write (see the module doc), and
/// returns the count.
fn lock_hint_total(tx: &mut Transaction<'_>) -> Result<i64, Fail> {
    Ok(tx.query_one("SELECT n FROM hint_total FOR UPDATE", &[])?.get(0))
}

impl HintStore for PostgresStore {
    fn add_hints(&self, hints: &[Hint]) -> Result<HintsAdded, MetaError> {
        for hint in hints {
            check_id(RecordKind::Hint, &hint.target_node)?;
        }
        let (batch, folded) = coalesce_batch(hints);
        if batch.is_empty() {
            return Ok(HintsAdded { coalesced: folded, ..HintsAdded::default() });
        }
        let max_hints = i64::try_from(self.max_hints).unwrap_or(i64::MAX);
        let nodes: Vec<&str> = batch.iter().map(|h| h.target_node.as_str()).collect();
        let tenants: Vec<&str> = batch.iter().map(|h| h.tenant_id.as_str()).collect();
        let keys: Vec<&str> = batch.iter().map(|h| h.key.as_str()).collect();
        self.write(|tx| {
            let mut out = HintsAdded { coalesced: folded, ..HintsAdded::default() };
            let total = lock_hint_total(tx)?;
            // The batch's keys that have a hint, locked. `md5(key)` lets the lookup use the
            // unique index; the key itself is compared too.
            let rows = tx.query(
                "SELECT h.id, h.target_node, h.tenant_id, h.key, h.version, h.created_at_us
                 FROM hints h
                 JOIN UNNEST($1::text[], $2::text[], $3::text[]) AS u(n, t, k)
                   ON h.target_node = u.n AND h.tenant_id = u.t
                      AND md5(h.key) = md5(u.k) AND h.key = u.k
                 FOR UPDATE OF h",
                &[&nodes, &tenants, &keys],
            )?;
            // Per (node, tenant, key): the stored hint's id, and the hint unless it does not
            // decode.
            let mut stored: HashMap<(String, String, String), (i64, Option<Hint>)> =
                HashMap::with_capacity(rows.len());
            for r in &rows {
                let id: i64 = r.get(0);
                let node: String = r.get(1);
                let bytes: &[u8] = r.get(4);
                let hint = decode_version(bytes).ok().map(|version| Hint {
                    target_node: node.clone(),
                    tenant_id: r.get(2),
                    key: r.get(3),
                    version,
                    created_at_us: r.get(5),
                });
                stored.insert((node, r.get(2), r.get(3)), (id, hint));
            }
            // Replaced rows are deleted and written again with the new ones, in batch order,
            // so that every written hint gets a new id: a replay that read the old id and
            // removes it after delivery cannot remove a version it never delivered.
            let mut replaced: Vec<i64> = Vec::new();
            let mut write: Vec<Hint> = Vec::with_capacity(batch.len());
            let mut new_keys = 0i64;
            for hint in &batch {
                let triple = (hint.target_node.clone(), hint.tenant_id.clone(), hint.key.clone());
                match stored.get(&triple) {
                    Some((id, old)) => {
                        out.coalesced += 1;
                        // A stored hint that no longer decodes is replaced by the new one.
                        let kept = match old {
                            Some(old) => Hint::coalesce(old, hint),
                            None => Some(hint.clone()),
                        };
                        if let Some(kept) = kept {
                            replaced.push(*id);
                            write.push(kept);
                        }
                    }
                    None if total + new_keys >= max_hints => out.dropped += 1,
                    None => {
                        new_keys += 1;
                        write.push(hint.clone());
                    }
                }
            }
            if !replaced.is_empty() {
                tx.execute("DELETE FROM hints WHERE id = ANY($1)", &[&replaced])?;
            }
            if !write.is_empty() {
                let encoded: Vec<Vec<u8>> = write
                    .iter()
                    .map(|h| storage::Version::from(&h.version).encode_to_vec())
                    .collect();
                let nodes: Vec<&str> = write.iter().map(|h| h.target_node.as_str()).collect();
                let tenants: Vec<&str> = write.iter().map(|h| h.tenant_id.as_str()).collect();
                let keys: Vec<&str> = write.iter().map(|h| h.key.as_str()).collect();
                let times: Vec<i64> = write.iter().map(|h| h.created_at_us).collect();
                // One statement for the whole batch (a core flushes up to thousands at once),
                // rows in array order so that their ids increase in the order given. A conflict
                // can only be a different key with the same md5 as a stored one (see
                // migrations/0002): that hint is dropped.
                let written = tx.execute(
                    "INSERT INTO hints (target_node, tenant_id, key, version, created_at_us)
                     SELECT n, t, k, v, c
                     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bigint[])
                          WITH ORDINALITY AS u(n, t, k, v, c, ord)
                     ORDER BY ord
                     ON CONFLICT DO NOTHING",
                    &[&nodes, &tenants, &keys, &encoded, &times],
                )?;
                // Replacements cannot conflict: their own row was deleted just above, and no
                // other key has its md5 (that key's hint would have been dropped).
                let inserted = written.saturating_sub(replaced.len() as u64);
                let new_keys = new_keys as u64;
                out.stored = inserted.min(new_keys);
                out.dropped += new_keys - out.stored;
            }
            if out.stored > 0 {
                tx.execute(
                    "UPDATE hint_total SET n = n + $1",
                    &[&i64::try_from(out.stored).unwrap_or(i64::MAX)],
                )?;
            }
            Ok(out)
        })
    }

    fn hints_for(&self, node: &str, limit: usize) -> Result<Vec<(u64, Hint)>, MetaError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|c| {
            let rows = c.query(
                "SELECT id, tenant_id, key, version, created_at_us FROM hints
                 WHERE target_node = $1 ORDER BY id LIMIT $2",
                &[&node, &limit],
            )?;
            rows.iter()
                .map(|r| {
                    let id: i64 = r.get(0);
                    let id = id as u64;
                    let bytes: &[u8] = r.get(3);
                    let version = decode_version(bytes)
                        .map_err(|e| corrupt(RecordKind::Hint, &format!("{node}/{id}"), e))?;
                    Ok((
                        id,
                        Hint {
                            target_node: node.to_owned(),
                            tenant_id: r.get(1),
                            key: r.get(2),
                            version,
                            created_at_us: r.get(4),
                        },
                    ))
                })
                .collect()
        })
    }

    fn remove_hints(&self, node: &str, ids: &[u64]) -> Result<(), MetaError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = ids.iter().filter_map(|id| i64::try_from(*id).ok()).collect();
        self.write(|tx| {
            lock_hint_total(tx)?;
            let n = tx.execute(
                "DELETE FROM hints WHERE target_node = $1 AND id = ANY($2)",
                &[&node, &ids],
            )?;
            if n > 0 {
                tx.execute(
                    "UPDATE hint_total SET n = GREATEST(n - $1, 0)",
                    &[&i64::try_from(n).unwrap_or(i64::MAX)],
                )?;
            }
            Ok(())
        })
    }

    fn pending_counts(&self) -> Result<Vec<(String, u64)>, MetaError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT target_node, count(*) FROM hints GROUP BY target_node ORDER BY target_node",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| {
                    let n: i64 = r.get(1);
                    (r.get(0), n as u64)
                })
                .collect())
        })
    }

    fn drop_older_than(&self, cutoff_us: i64) -> Result<usize, MetaError> {
        self.write(|tx| {
            lock_hint_total(tx)?;
            let n = tx.execute("DELETE FROM hints WHERE created_at_us < $1", &[&cutoff_us])?;
            // A recount rather than `n - dropped`: it costs one scan a sweep (every minute) and
            // heals a count that rows deleted by hand left wrong.
            tx.execute("UPDATE hint_total SET n = (SELECT count(*) FROM hints)", &[])?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }
}
