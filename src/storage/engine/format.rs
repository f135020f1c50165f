//! The on-disk encoding of the engine's keys and values.
//!
//! One fjall keyspace, `data`. A storage key is
//!
//! ```text
//!   token (u64 BE, 8 bytes) | tenant_id length (u16 BE) | tenant_id | key
//! ```
//!
//! where `token` is [`key_token`]`(tenant_id, key)`, the ring position. Keys sort by token
//! first, so a token range (what data movement asks for) is one range scan, and the tenant id is
//! part of the key, so tenants never see each other's keys even when they use the same key or
//! their tokens collide. The value is a compact custom encoding rather than prost's, so that
//! purge and the start-up count can read the tombstone flag and timestamp from a fixed 10-byte
//! header without decoding the clock:
//!
//! ```text
//!   offset  size  field
//!   0       1     format tag, 1
//!   1       1     flags: bit 0 = tombstone
//!   2       8     timestamp_us, i64 BE
//!   10      2     writer length W, u16 BE
//!   12      W     writer, UTF-8
//!   ..      2     clock entry count N, u16 BE
//!   ..      N *   (actor length A: u16 BE, actor: A bytes, counter: u64 BE)
//!   ..      rest  the user's value (empty for tombstones)
//! ```

use bytes::Bytes;

use super::EngineError;
use crate::core::ring::key_token;
use crate::core::vclock::VClock;
use crate::core::version::Version;

/// Largest storage key fjall (lsm-tree 3) accepts is 65536 bytes; we stay one below so the
/// length always fits a `u16`. A storage key is `token + tenant length + tenant_id + key`.
pub const MAX_STORAGE_KEY_BYTES: usize = u16::MAX as usize;

/// Longest writer or actor id. Ids look like `coord-1/3`; 255 bytes is generous and keeps the
/// largest clock header (64 entries) under 17 KiB.
pub const MAX_ACTOR_BYTES: usize = 255;

/// Largest user value: lsm-tree caps a stored value at 2^32 bytes and the header takes the rest.
/// The service layer enforces a much smaller message limit; this only guards the format.
pub const MAX_VALUE_BYTES: usize = u32::MAX as usize - 64 * 1024;

const FORMAT_V1: u8 = 1;
const FLAG_TOMBSTONE: u8 = 1;
const VALUE_HEADER_BYTES: usize = 10;
const TOKEN_BYTES: usize = 8;
const KEY_PREFIX_BYTES: usize = TOKEN_BYTES + 2;

/// The token and storage key of `(tenant_id, key)`; see the module doc for the layout.
pub(super) fn storage_key(tenant_id: &str, key: &str) -> Result<(u64, Vec<u8>), EngineError> {
    let len = KEY_PREFIX_BYTES + tenant_id.len() + key.len();
    if len > MAX_STORAGE_KEY_BYTES {
        return Err(EngineError::KeyTooLarge { len, max: MAX_STORAGE_KEY_BYTES });
    }
    let token = key_token(tenant_id, key).0;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&token.to_be_bytes());
    // Fits: tenant_id.len() < len <= u16::MAX.
    out.extend_from_slice(&(tenant_id.len() as u16).to_be_bytes());
    out.extend_from_slice(tenant_id.as_bytes());
    out.extend_from_slice(key.as_bytes());
    Ok((token, out))
}

pub(super) fn parse_storage_key(skey: &[u8]) -> Result<(u64, &str, &str), EngineError> {
    const BAD: EngineError = EngineError::Corrupt { what: "storage key" };
    let Some((token, rest)) = skey.split_first_chunk::<TOKEN_BYTES>() else { return Err(BAD) };
    let Some((tenant_len, rest)) = rest.split_first_chunk::<2>() else { return Err(BAD) };
    let tenant_len = usize::from(u16::from_be_bytes(*tenant_len));
    if rest.len() < tenant_len {
        return Err(BAD);
    }
    let (tenant, key) = rest.split_at(tenant_len);
    let tenant = std::str::from_utf8(tenant).map_err(|_| BAD)?;
    let key = std::str::from_utf8(key).map_err(|_| BAD)?;
    Ok((u64::from_be_bytes(*token), tenant, key))
}

/// The token prefix of a storage key we wrote (at least 10 bytes by construction).
pub(super) fn token_of_storage_key(skey: &[u8]) -> u64 {
    skey.first_chunk::<TOKEN_BYTES>().map_or(0, |t| u64::from_be_bytes(*t))
}

/// Rejects versions the engine must not store; after this, `encode_version` cannot fail.
pub(super) fn validate_version(v: &Version) -> Result<(), EngineError> {
    if v.tombstone && !v.value.is_empty() {
        return Err(EngineError::TombstoneWithValue);
    }
    if v.clock.is_empty() {
        return Err(EngineError::EmptyClock);
    }
    if v.value.len() > MAX_VALUE_BYTES {
        return Err(EngineError::ValueTooLarge { len: v.value.len(), max: MAX_VALUE_BYTES });
    }
    if v.writer.len() > MAX_ACTOR_BYTES {
        let len = v.writer.len();
        return Err(EngineError::ActorTooLong { field: "writer", len, max: MAX_ACTOR_BYTES });
    }
    if let Some((actor, _)) = v.clock.entries().iter().find(|(a, _)| a.len() > MAX_ACTOR_BYTES) {
        let len = actor.len();
        return Err(EngineError::ActorTooLong { field: "clock actor", len, max: MAX_ACTOR_BYTES });
    }
    Ok(())
}

/// Encodes a validated version in the layout of the module doc. Lengths fit their `u16`s because
/// `validate_version` capped ids at [`MAX_ACTOR_BYTES`] and clocks hold at most
/// `vclock::MAX_ENTRIES` entries.
pub(super) fn encode_version(v: &Version) -> Vec<u8> {
    let clock = v.clock.entries();
    let clock_bytes: usize = clock.iter().map(|(a, _)| 2 + a.len() + 8).sum();
    let mut out = Vec::with_capacity(
        VALUE_HEADER_BYTES + 2 + v.writer.len() + 2 + clock_bytes + v.value.len(),
    );
    out.push(FORMAT_V1);
    out.push(if v.tombstone { FLAG_TOMBSTONE } else { 0 });
    out.extend_from_slice(&v.timestamp_us.to_be_bytes());
    out.extend_from_slice(&(v.writer.len() as u16).to_be_bytes());
    out.extend_from_slice(v.writer.as_bytes());
    out.extend_from_slice(&(clock.len() as u16).to_be_bytes());
    for (actor, counter) in clock {
        out.extend_from_slice(&(actor.len() as u16).to_be_bytes());
        out.extend_from_slice(actor.as_bytes());
        out.extend_from_slice(&counter.to_be_bytes());
    }
    out.extend_from_slice(&v.value);
    out
}

/// `(tombstone, timestamp_us)` from the fixed header, without decoding the rest.
pub(super) fn decode_header(raw: &[u8]) -> Result<(bool, i64), EngineError> {
    let Some((header, _)) = raw.split_first_chunk::<VALUE_HEADER_BYTES>() else {
        return Err(EngineError::Corrupt { what: "value header" });
    };
    if header[0] != FORMAT_V1 {
        return Err(EngineError::Corrupt { what: "value format tag" });
    }
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&header[2..]);
    Ok((header[1] & FLAG_TOMBSTONE != 0, i64::from_be_bytes(ts)))
}

pub(super) fn decode_version(raw: &[u8]) -> Result<Version, EngineError> {
    let (tombstone, timestamp_us) = decode_header(raw)?;
    let mut r = Reader(&raw[VALUE_HEADER_BYTES..]);
    let writer_len = r.u16()?;
    let writer = r.utf8(usize::from(writer_len))?.to_owned();
    let count = r.u16()?;
    let mut entries = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let len = r.u16()?;
        let actor = r.utf8(usize::from(len))?.to_owned();
        entries.push((actor, r.u64()?));
    }
    Ok(Version {
        value: Bytes::copy_from_slice(r.0),
        clock: VClock::from_entries(entries),
        timestamp_us,
        writer,
        tombstone,
    })
}

/// A bounds-checked reader over a stored value.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EngineError> {
        if self.0.len() < n {
            return Err(EngineError::Corrupt { what: "value truncated" });
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, EngineError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u64(&mut self) -> Result<u64, EngineError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }

    fn utf8(&mut self, n: usize) -> Result<&'a str, EngineError> {
        std::str::from_utf8(self.take(n)?).map_err(|_| EngineError::Corrupt { what: "utf-8 id" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::engine::tests::{tomb, ver};

    #[test]
    fn storage_keys_carry_ring_tokens() {
        // Same pins as core::ring's `key_token_is_pinned`: the engine's layout and the ring's
        // ownership must agree on every key's token.
        for (tenant, key, want) in crate::core::ring::PINNED_TOKENS {
            let (token, skey) = storage_key(tenant, key).unwrap();
            assert_eq!(token, *want, "{tenant:?}/{key:?}");
            assert_eq!(parse_storage_key(&skey).unwrap(), (*want, *tenant, *key));
        }
    }

    #[test]
    fn value_encoding_round_trips() {
        let v = ver(&[("a", 3), ("b", u64::MAX)], -7, "a", "hello");
        assert_eq!(decode_version(&encode_version(&v)).unwrap(), v);
        let t = tomb(&[("a", 1)], 99, "a");
        assert_eq!(decode_header(&encode_version(&t)).unwrap(), (true, 99));
        assert!(decode_version(&encode_version(&v)[..12]).is_err());
    }
}
