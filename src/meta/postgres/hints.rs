//! [`HintStore`] for [`PostgresStore`].

use prost::Message;

use super::{check_id, corrupt, decode_version, PostgresStore};
use crate::meta::{Hint, HintStore, MetaError, RecordKind};
use crate::proto::storage;

impl HintStore for PostgresStore {
    fn add_hints(&self, hints: &[Hint]) -> Result<(), MetaError> {
        if hints.is_empty() {
            return Ok(());
        }
        for hint in hints {
            check_id(RecordKind::Hint, &hint.target_node)?;
        }
        let encoded: Vec<Vec<u8>> =
            hints.iter().map(|h| storage::Version::from(&h.version).encode_to_vec()).collect();
        let nodes: Vec<&str> = hints.iter().map(|h| h.target_node.as_str()).collect();
        let tenants: Vec<&str> = hints.iter().map(|h| h.tenant_id.as_str()).collect();
        let keys: Vec<&str> = hints.iter().map(|h| h.key.as_str()).collect();
        let times: Vec<i64> = hints.iter().map(|h| h.created_at_us).collect();
        // One statement for the whole batch (a core flushes up to thousands at once), rows in
        // array order so that their ids increase in the order given.
        self.write(|tx| {
            tx.execute(
                "INSERT INTO hints (target_node, tenant_id, key, version, created_at_us)
                 SELECT n, t, k, v, c
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bigint[])
                      WITH ORDINALITY AS u(n, t, k, v, c, ord)
                 ORDER BY ord",
                &[&nodes, &tenants, &keys, &encoded, &times],
            )?;
            Ok(())
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
        self.with(|c| {
            c.execute("DELETE FROM hints WHERE target_node = $1 AND id = ANY($2)", &[&node, &ids])?;
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
        self.with(|c| {
            let n = c.execute("DELETE FROM hints WHERE created_at_us < $1", &[&cutoff_us])?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }
}
