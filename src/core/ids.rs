//! Identifier newtypes shared by the ring, the quorum rules and everything built on them.
//!
//! They are newtypes rather than aliases so that a storage node id can never be passed where a
//! tenant id or a key is expected, and a ring position never where a counter is. They carry no
//! behaviour beyond ordering, hashing and printing; what a token means is `core::ring`'s business.

use std::fmt;

/// The id of one storage node, as it appears in ring membership (for example `storage-3`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(String);

impl NodeId {
    /// Wraps a node id; any string is accepted, validation belongs to membership changes.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for NodeId {
    fn from(id: &str) -> Self {
        Self::new(id)
    }
}

impl From<String> for NodeId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

/// A position on the consistent-hash ring: where a key hashes to, or where a node's virtual node
/// sits. Ordered as an unsigned 64-bit integer; the ring wraps from `u64::MAX` to 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token(pub u64);

impl fmt::Display for Token {
    /// Fixed-width hex, so that printed tokens sort the same way as the numbers do.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display() {
        #[rustfmt::skip]
        let cases: &[(Token, &str)] = &[
            (Token(0),        "0000000000000000"),
            (Token(0xab),     "00000000000000ab"),
            (Token(u64::MAX), "ffffffffffffffff"),
        ];
        for (token, want) in cases {
            assert_eq!(token.to_string(), *want);
        }
        assert_eq!(NodeId::from("storage-1").to_string(), "storage-1");
    }

    #[test]
    fn tokens_order_as_unsigned_integers() {
        assert!(Token(1) < Token(u64::MAX));
        assert!(NodeId::from("a") < NodeId::from("b"));
    }
}
