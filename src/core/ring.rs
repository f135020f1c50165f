//! The consistent-hash ring: which storage nodes hold a key.
//!
//! A key is placed by [`key_token`], a 64-bit xxh3 of `(tenant_id, key)`. Each storage node owns
//! many tokens on the same 64-bit circle; a key's preference list is the first `n` distinct
//! active nodes found walking clockwise from the key's token (the first node token `>=` the key
//! token, wrapping past `u64::MAX` to 0). The first of them is the key's primary owner.
//!
//! Rings are immutable snapshots. A membership change builds a new [`Ring`] with a newer epoch,
//! which each core then swaps in behind an `Rc`; nobody ever mutates a ring that a request is
//! using. Building a ring and the lookups are pure: no clock, no RNG, no I/O, so every coordinator
//! and storage node that sees the same membership computes the same placement.
//!
//! Token scheme, and why there are more tokens than virtual nodes. A member with `v` virtual nodes
//! owns the `v * TOKENS_PER_VIRTUAL_NODE` tokens `xxh3_64("{node_id}#{t}")`, for each `t` below
//! that count (`t` in decimal, UTF-8, no terminator). With one token per virtual node, a node's
//! share of the circle is a sum of `v` random gaps, so its load varies by about `1/sqrt(v)`: 8% at
//! the default 150, which puts the busiest of 10 nodes about 13% above the mean. We measured 73% of
//! random 10-node clusters over the 10% target. Eight tokens per virtual node bring that spread to
//! about 3% (the busiest of 10 nodes 4% over the mean on average, none of 300 random clusters over
//! 10%; 6% for the tests' `node-0` to `node-9`) while keeping what makes the scheme worth having: a
//! node's tokens depend on its id alone, so adding a node only moves keys to that node, and raising
//! a node's virtual nodes only adds tokens to it. Schemes that balance better by placing tokens
//! with knowledge of the other members (fixed partitions, Cassandra's allocator) lose that property
//! or depend on join history, which a ring built from a member list cannot know.
//!
//! Compatibility: storage nodes lay out keys on disk by [`key_token`], so changing its encoding
//! or hash is a breaking on-disk change. Changing the virtual node token formula or
//! [`TOKENS_PER_VIRTUAL_NODE`] moves most keys to other nodes, which needs a full data movement.
//! Both are pinned by tests.

use std::cmp::Ordering;
use std::fmt::{self, Write as _};

use xxhash_rust::xxh3::{xxh3_64, Xxh3Default};

use crate::core::ids::{NodeId, Token};

/// Virtual nodes a member gets unless configured otherwise. 150 is the classic Dynamo-style
/// figure; with [`TOKENS_PER_VIRTUAL_NODE`] it keeps the busiest of 10 nodes about 4% over the
/// mean on average, while a ring of 100 nodes stays under 2 MB per snapshot.
pub const DEFAULT_VIRTUAL_NODES: u32 = 150;

/// Ring tokens per virtual node; see the module doc for why more than one. Changing it moves most
/// keys between nodes.
pub const TOKENS_PER_VIRTUAL_NODE: u32 = 8;

/// Most members a ring accepts: far above the clusters we plan for, low enough that a ring
/// snapshot stays bounded (with [`MAX_VIRTUAL_NODES`]).
pub const MAX_MEMBERS: usize = 1024;

/// Most virtual nodes one member may have: about 7 times the default, enough to weight a large
/// node against small ones.
pub const MAX_VIRTUAL_NODES: u32 = 1024;

/// Longest preference list [`Ring::preference_list`] returns; the replication factor is checked
/// against it at config load. Lists live on the stack, so lookups never allocate.
pub const MAX_PREFERENCE_LIST: usize = 10;

/// Encodings up to this many bytes are hashed from a stack buffer; longer ones are streamed.
const KEY_BUFFER_LEN: usize = 256;

/// The smaller stack buffer, for the common short tenant ids and keys.
const SHORT_KEY_BUFFER_LEN: usize = 64;

/// The ring position of `key` in `tenant_id`: xxh3-64 of the tenant id's length as a `u32`
/// little-endian, the tenant id's bytes, then the key's bytes. The length prefix keeps
/// `("ab", "c")` and `("a", "bc")` apart.
///
/// Storage nodes lay out keys by this token, so changing it is a breaking on-disk change.
pub fn key_token(tenant_id: &str, key: &str) -> Token {
    // Invariant: tenant ids and keys arrive in gRPC messages, whose size is capped far below
    // 4 GiB by the framing layer.
    let tenant_len = u32::try_from(tenant_id.len()).expect("tenant id shorter than 4 GiB");
    let parts = [&tenant_len.to_le_bytes()[..], tenant_id.as_bytes(), key.as_bytes()];
    let total = 4 + tenant_id.len() + key.len();
    // Two buffer sizes: zeroing the buffer costs as much as hashing a short key.
    if total <= SHORT_KEY_BUFFER_LEN {
        hash_in_buffer::<SHORT_KEY_BUFFER_LEN>(parts, total)
    } else if total <= KEY_BUFFER_LEN {
        hash_in_buffer::<KEY_BUFFER_LEN>(parts, total)
    } else {
        let mut hasher = Xxh3Default::new();
        for part in parts {
            hasher.update(part);
        }
        Token(hasher.digest())
    }
}

/// xxh3-64 of the concatenated `parts`, `total` bytes that fit in `N`, copied to the stack.
fn hash_in_buffer<const N: usize>(parts: [&[u8]; 3], total: usize) -> Token {
    let mut buf = [0u8; N];
    let mut at = 0;
    for part in parts {
        buf[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    Token(xxh3_64(&buf[..total]))
}

/// The `t`-th token of `node`: `xxh3_64("{node}#{t}")`. See the module doc.
pub fn node_token(node: &NodeId, t: u32) -> Token {
    let mut text = String::with_capacity(node.as_str().len() + 11);
    node_token_into(&mut text, node, t)
}

fn node_token_into(text: &mut String, node: &NodeId, t: u32) -> Token {
    text.clear();
    // Invariant: writing to a String cannot fail.
    write!(text, "{node}#{t}").expect("write to String");
    Token(xxh3_64(text.as_bytes()))
}

/// One storage node in a ring membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The node's id; its tokens derive from it.
    pub id: NodeId,
    /// The node's weight in virtual nodes; it owns `virtual_nodes * TOKENS_PER_VIRTUAL_NODE`
    /// tokens.
    pub virtual_nodes: u32,
    /// Inactive members (down for maintenance, draining, not yet joined) stay in the membership,
    /// so their ranges can be computed for data movement, but own no tokens: keys they would hold
    /// fall to the next active node clockwise, for reads and writes alike.
    pub active: bool,
}

impl Member {
    /// An active member with `virtual_nodes` virtual nodes.
    pub fn new(id: impl Into<NodeId>, virtual_nodes: u32) -> Self {
        Self { id: id.into(), virtual_nodes, active: true }
    }
}

/// A membership that cannot form a ring.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The same node id appears twice in one membership.
    #[error("node {id} appears twice in the membership")]
    DuplicateMember { id: NodeId },
    /// More members than [`MAX_MEMBERS`].
    #[error("membership has {count} members, limit {limit}")]
    TooManyMembers { count: usize, limit: usize },
    /// A member asks for more than [`MAX_VIRTUAL_NODES`].
    #[error("node {id} has {virtual_nodes} virtual nodes, limit {limit}")]
    TooManyVirtualNodes { id: NodeId, virtual_nodes: u32, limit: u32 },
    /// A change names a node that is not a member.
    #[error("node {id} is not a member")]
    UnknownMember { id: NodeId },
    /// A change would not move the epoch forward, so cores could not tell the rings apart.
    #[error("epoch {proposed} is not newer than current epoch {current}")]
    StaleEpoch { current: u64, proposed: u64 },
}

/// An arc of the ring: the tokens `t` with `start_exclusive < t <= end_inclusive`, wrapping past
/// `u64::MAX`. `start_exclusive == end_inclusive` means the whole ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TokenRange {
    /// The token just before the range.
    pub start_exclusive: Token,
    /// The last token in the range.
    pub end_inclusive: Token,
}

impl TokenRange {
    /// True when `token` lies in the range.
    pub fn contains(&self, token: Token) -> bool {
        let (start, end) = (self.start_exclusive, self.end_inclusive);
        match start.cmp(&end) {
            Ordering::Less => start < token && token <= end,
            Ordering::Greater => token > start || token <= end,
            Ordering::Equal => true,
        }
    }

    /// True for the range that covers the whole ring.
    pub fn is_full(&self) -> bool {
        self.start_exclusive == self.end_inclusive
    }
}

/// An immutable snapshot of ring membership and the token table built from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ring {
    /// Ring-membership generation, set by whoever changes membership; newer rings have larger
    /// epochs.
    epoch: u64,
    /// All members, sorted by id, so that the input order never changes placement.
    members: Vec<Member>,
    /// Tokens of active members, ascending; ties ordered by member index (that is, by id).
    /// Kept apart from `owners` so the binary search touches only the tokens.
    tokens: Vec<Token>,
    /// `owners[i]` is the index in `members` of the node owning `tokens[i]`.
    owners: Vec<u32>,
    /// Active members that own at least one token: the most distinct nodes a walk can find.
    eligible: usize,
}

impl Ring {
    /// Builds the ring of `members` at `epoch`.
    pub fn new(epoch: u64, mut members: Vec<Member>) -> Result<Self, RingError> {
        if members.len() > MAX_MEMBERS {
            return Err(RingError::TooManyMembers { count: members.len(), limit: MAX_MEMBERS });
        }
        members.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        if let Some(pair) = members.windows(2).find(|pair| pair[0].id == pair[1].id) {
            return Err(RingError::DuplicateMember { id: pair[0].id.clone() });
        }
        if let Some(m) = members.iter().find(|m| m.virtual_nodes > MAX_VIRTUAL_NODES) {
            return Err(RingError::TooManyVirtualNodes {
                id: m.id.clone(),
                virtual_nodes: m.virtual_nodes,
                limit: MAX_VIRTUAL_NODES,
            });
        }
        let mut points = Vec::new();
        let mut text = String::new();
        for (index, member) in members.iter().enumerate() {
            let index = index as u32; // Invariant: at most MAX_MEMBERS members.
            for t in 0..member.virtual_nodes * TOKENS_PER_VIRTUAL_NODE {
                points.push((node_token_into(&mut text, &member.id, t), index));
            }
        }
        Ok(Self::assemble(epoch, members, points))
    }

    /// Builds the ring from members sorted by id and their `(token, member index)` points,
    /// dropping points of inactive members.
    fn assemble(epoch: u64, members: Vec<Member>, mut points: Vec<(Token, u32)>) -> Self {
        points.retain(|&(_, index)| members[index as usize].active);
        points.sort_unstable();
        let mut has_tokens = vec![false; members.len()];
        for &(_, index) in &points {
            has_tokens[index as usize] = true;
        }
        let eligible = has_tokens.iter().filter(|&&has| has).count();
        let (tokens, owners) = points.into_iter().unzip();
        Self { epoch, members, tokens, owners, eligible }
    }

    /// The ring-membership generation this snapshot belongs to.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// All members, active or not, sorted by id.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The member with this id.
    pub fn member(&self, id: &NodeId) -> Option<&Member> {
        let index = self.members.binary_search_by(|m| m.id.cmp(id)).ok()?;
        Some(&self.members[index])
    }

    /// Tokens on the ring, counting active members only.
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// A new ring at `epoch` with `member` added, or replacing the member with the same id (to
    /// change its virtual nodes or mark it active or inactive).
    pub fn with_member(&self, epoch: u64, member: Member) -> Result<Self, RingError> {
        self.check_epoch(epoch)?;
        let mut members: Vec<Member> =
            self.members.iter().filter(|m| m.id != member.id).cloned().collect();
        members.push(member);
        Self::new(epoch, members)
    }

    /// A new ring at `epoch` without the member `id`.
    pub fn without_member(&self, epoch: u64, id: &NodeId) -> Result<Self, RingError> {
        self.check_epoch(epoch)?;
        if self.member(id).is_none() {
            return Err(RingError::UnknownMember { id: id.clone() });
        }
        let members = self.members.iter().filter(|m| &m.id != id).cloned().collect();
        Self::new(epoch, members)
    }

    fn check_epoch(&self, proposed: u64) -> Result<(), RingError> {
        if proposed <= self.epoch {
            return Err(RingError::StaleEpoch { current: self.epoch, proposed });
        }
        Ok(())
    }

    /// The first `n` distinct active nodes clockwise from `token`, primary owner first. Fewer
    /// when the ring has fewer active nodes. A binary search, then a walk that usually stops
    /// after little more than `n` tokens; never allocates.
    ///
    /// # Panics
    ///
    /// When `n > MAX_PREFERENCE_LIST`: the replication factor is validated at config load.
    pub fn preference_list(&self, token: Token, n: usize) -> PreferenceList<'_> {
        assert!(n <= MAX_PREFERENCE_LIST, "preference list of {n} > {MAX_PREFERENCE_LIST}");
        let mut list = PreferenceList { ring: self, members: [0; MAX_PREFERENCE_LIST], len: 0 };
        let want = n.min(self.eligible);
        if want == 0 {
            return list;
        }
        let start = self.tokens.partition_point(|&t| t < token);
        let (before, from) = self.owners.split_at(start);
        for &owner in from.iter().chain(before) {
            if !list.members[..list.len].contains(&owner) {
                list.members[list.len] = owner;
                list.len += 1;
                if list.len == want {
                    break;
                }
            }
        }
        list
    }

    /// The primary owner of `token`: the first node of its preference list.
    pub fn primary(&self, token: Token) -> Option<&NodeId> {
        self.preference_list(token, 1).first()
    }

    /// Every arc of the ring with its primary owner, sorted by end token; adjacent arcs of the
    /// same owner are merged. Empty when no member is active. The arcs cover the ring exactly
    /// once, and `range.contains(t)` agrees with [`Ring::primary`] for every token.
    pub fn ranges(&self) -> Vec<(TokenRange, &NodeId)> {
        // One point per distinct token: a key equal to a shared token goes to the first owner.
        let mut points: Vec<(Token, u32)> = Vec::new();
        for (&token, &owner) in self.tokens.iter().zip(&self.owners) {
            if points.last().is_none_or(|&(last, _)| last != token) {
                points.push((token, owner));
            }
        }
        let count = points.len();
        let prev = |i: usize| (i + count - 1) % count;
        let id = |owner: u32| &self.members[owner as usize].id;
        // Start the walk where the owner changes, so that no run straddles the starting point.
        let Some(first) = (0..count).find(|&i| points[i].1 != points[prev(i)].1) else {
            return match points.first() {
                Some(&(token, owner)) => {
                    vec![(TokenRange { start_exclusive: token, end_inclusive: token }, id(owner))]
                }
                None => Vec::new(),
            };
        };
        let mut ranges = Vec::new();
        let mut start = points[prev(first)].0;
        for step in 0..count {
            let i = (first + step) % count;
            let next = (i + 1) % count;
            if points[next].1 != points[i].1 {
                let range = TokenRange { start_exclusive: start, end_inclusive: points[i].0 };
                ranges.push((range, id(points[i].1)));
                start = points[i].0;
            }
        }
        ranges.sort_unstable_by_key(|(range, _)| range.end_inclusive);
        ranges
    }

    /// The arcs for which `node` is the primary owner, sorted by end token.
    pub fn owner_ranges(&self, node: &NodeId) -> Vec<TokenRange> {
        self.ranges().into_iter().filter(|(_, owner)| *owner == node).map(|(r, _)| r).collect()
    }
}

/// The nodes for one token, primary first, as returned by [`Ring::preference_list`]. Holds
/// member indices on the stack and borrows names from the ring.
#[derive(Clone, Copy)]
pub struct PreferenceList<'a> {
    ring: &'a Ring,
    members: [u32; MAX_PREFERENCE_LIST],
    len: usize,
}

impl<'a> PreferenceList<'a> {
    /// How many nodes the list holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the ring had no active node.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `i`-th node, primary first.
    pub fn get(&self, i: usize) -> Option<&'a NodeId> {
        let ring = self.ring;
        self.members[..self.len].get(i).map(|&m| &ring.members[m as usize].id)
    }

    /// The primary owner.
    pub fn first(&self) -> Option<&'a NodeId> {
        self.get(0)
    }

    /// True when `node` is in the list.
    pub fn contains(&self, node: &NodeId) -> bool {
        self.iter().any(|n| n == node)
    }

    /// The nodes, primary first.
    pub fn iter(&self) -> PreferenceIter<'a> {
        PreferenceIter { list: *self, next: 0 }
    }

    /// The nodes as owned ids, for a request that outlives the ring snapshot.
    pub fn to_vec(&self) -> Vec<NodeId> {
        self.iter().cloned().collect()
    }
}

impl fmt::Debug for PreferenceList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for PreferenceList<'a> {
    type Item = &'a NodeId;
    type IntoIter = PreferenceIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over a [`PreferenceList`], primary first.
#[derive(Clone, Debug)]
pub struct PreferenceIter<'a> {
    list: PreferenceList<'a>,
    next: usize,
}

impl<'a> Iterator for PreferenceIter<'a> {
    type Item = &'a NodeId;

    fn next(&mut self) -> Option<Self::Item> {
        let node = self.list.get(self.next)?;
        self.next += 1;
        Some(node)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.list.len - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for PreferenceIter<'_> {}

/// `(tenant, key, token)` cases whose tokens are fixed forever: storage nodes lay out keys by
/// them, so a change is a breaking on-disk change. The values come from the reference C xxh3
/// (through Python's `xxhash`).
#[cfg(test)]
#[rustfmt::skip]
pub(crate) const PINNED_TOKENS: &[(&str, &str, u64)] = &[
    ("t",        "key-0",           0x13e3ee1045e65832),
    ("tenant-1", "",                0x302a8412954dafd9),
    ("",         "",                0x48b2c92616fc193d),
    ("acme",     "user/42/profile", 0x587d9b49c791866b),
];

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;

    const KEYS: usize = 1_000_000;

    /// Tokens of the keys `key-{i}` of tenant `t`, computed once for every test that needs them.
    fn key_tokens() -> &'static [Token] {
        static TOKENS: OnceLock<Vec<Token>> = OnceLock::new();
        TOKENS.get_or_init(|| (0..KEYS).map(|i| key_token("t", &format!("key-{i}"))).collect())
    }

    fn nodes(count: usize) -> Vec<Member> {
        (0..count).map(|i| Member::new(format!("node-{i}"), DEFAULT_VIRTUAL_NODES)).collect()
    }

    fn ids(list: PreferenceList<'_>) -> Vec<&str> {
        list.iter().map(NodeId::as_str).collect()
    }

    /// A ring with hand-placed tokens: `(member id, active, tokens)`.
    fn hand_ring(spec: &[(&str, bool, &[u64])]) -> Ring {
        let mut members: Vec<Member> = spec
            .iter()
            .map(|(id, active, _)| Member {
                id: NodeId::from(*id),
                virtual_nodes: 1,
                active: *active,
            })
            .collect();
        members.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        let mut points = Vec::new();
        for (id, _, tokens) in spec {
            let index = members.iter().position(|m| m.id.as_str() == *id).unwrap() as u32;
            points.extend(tokens.iter().map(|&t| (Token(t), index)));
        }
        Ring::assemble(1, members, points)
    }

    #[test]
    fn key_token_is_pinned() {
        for (tenant, key, want) in PINNED_TOKENS {
            assert_eq!(key_token(tenant, key), Token(*want), "{tenant:?}/{key:?}");
        }
        // Node tokens decide ownership: a change here moves most keys between nodes.
        let node = NodeId::from("node-0");
        assert_eq!(node_token(&node, 0), Token(0x83a47bc94be7b766));
        assert_eq!(node_token(&node, 1199), Token(0xe13fafd5635c0675));
    }

    #[test]
    fn key_token_encoding_is_length_prefixed() {
        assert_ne!(key_token("ab", "c"), key_token("a", "bc"));
        assert_ne!(key_token("", "ab"), key_token("ab", ""));
        let mut encoded = 2u32.to_le_bytes().to_vec();
        encoded.extend_from_slice(b"abc");
        assert_eq!(key_token("ab", "c"), Token(xxh3_64(&encoded)));
    }

    #[test]
    fn key_token_stack_and_streaming_paths_agree() {
        let sizes = [SHORT_KEY_BUFFER_LEN, SHORT_KEY_BUFFER_LEN + 1, KEY_BUFFER_LEN];
        for total in sizes.into_iter().chain([KEY_BUFFER_LEN + 1, 4 * KEY_BUFFER_LEN]) {
            let tenant = "tenant-x";
            let key = "k".repeat(total - 4 - tenant.len());
            let mut encoded = (tenant.len() as u32).to_le_bytes().to_vec();
            encoded.extend_from_slice(tenant.as_bytes());
            encoded.extend_from_slice(key.as_bytes());
            assert_eq!(key_token(tenant, &key), Token(xxh3_64(&encoded)), "{total} bytes");
        }
    }

    #[test]
    fn preference_list_walks_clockwise_from_token() {
        // a at 10 and 40, b at 20, c at 30, d at 25 but inactive.
        let ring = hand_ring(&[
            ("a", true, &[10, 40]),
            ("b", true, &[20]),
            ("c", true, &[30]),
            ("d", false, &[25]),
        ]);
        #[rustfmt::skip]
        let cases: &[(u64, usize, &[&str])] = &[
            (0,        3, &["a", "b", "c"]),
            (10,       3, &["a", "b", "c"]),
            (11,       3, &["b", "c", "a"]),
            (21,       3, &["c", "a", "b"]), // d's token at 25 is skipped
            (35,       3, &["a", "b", "c"]), // a at 40, then wraps; a at 10 is not repeated
            (41,       2, &["a", "b"]),      // past the last token: wraps to 10
            (u64::MAX, 1, &["a"]),
            (15,       0, &[]),
            (15,       5, &["b", "c", "a"]), // only three active nodes
        ];
        for (token, n, want) in cases {
            assert_eq!(ids(ring.preference_list(Token(*token), *n)), *want, "token {token} n {n}");
        }
    }

    #[test]
    fn preference_list_has_distinct_active_nodes() {
        let mut members = nodes(5);
        members[2].active = false;
        let ring = Ring::new(1, members).unwrap();
        for token in key_tokens().iter().take(10_000) {
            let list = ring.preference_list(*token, 3);
            let mut seen = ids(list);
            assert!(!seen.contains(&"node-2"));
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), 3);
            assert_eq!(list.first(), ring.primary(*token));
        }
    }

    #[test]
    fn preference_list_is_short_when_few_nodes_are_active() {
        #[rustfmt::skip]
        let cases: &[(usize, usize, usize, usize)] = &[
            // nodes, inactive, n, want
            (0,       0,        3, 0),
            (1,       0,        3, 1),
            (2,       0,        3, 2),
            (3,       1,        3, 2),
            (3,       3,        3, 0),
            (5,       0,        3, 3),
            (5,       0,        8, 5),
        ];
        for &(count, inactive, n, want) in cases {
            let mut members = nodes(count);
            for member in members.iter_mut().take(inactive) {
                member.active = false;
            }
            let ring = Ring::new(1, members).unwrap();
            for token in key_tokens().iter().take(100) {
                assert_eq!(ring.preference_list(*token, n).len(), want, "{count} nodes n {n}");
            }
        }
    }

    #[test]
    fn members_without_tokens_are_not_waited_for() {
        let mut members = nodes(2);
        members.push(Member::new("empty", 0));
        let ring = Ring::new(1, members).unwrap();
        assert_eq!(ring.preference_list(Token(7), 3).len(), 2);
    }

    #[test]
    fn placement_ignores_member_order() {
        let forward = Ring::new(1, nodes(6)).unwrap();
        let mut reversed = nodes(6);
        reversed.reverse();
        let reversed = Ring::new(1, reversed).unwrap();
        assert_eq!(forward, reversed);
        for token in key_tokens().iter().take(1_000) {
            assert_eq!(
                ids(forward.preference_list(*token, 3)),
                ids(reversed.preference_list(*token, 3))
            );
        }
    }

    #[test]
    fn primary_load_is_within_ten_percent_of_mean() {
        let ring = Ring::new(1, nodes(10)).unwrap();
        let mut load = vec![0usize; ring.members().len()];
        for token in key_tokens() {
            let owner = ring.preference_list(*token, 1).members[0];
            load[owner as usize] += 1;
        }
        let mean = KEYS / load.len();
        let busiest = *load.iter().max().unwrap();
        assert!(busiest * 10 <= mean * 11, "busiest {busiest} keys, mean {mean}: {load:?}");
    }

    #[test]
    fn adding_a_node_moves_its_share_and_only_to_it() {
        let before = Ring::new(1, nodes(10)).unwrap();
        let new = NodeId::from("node-10");
        let after = before.with_member(2, Member::new(new.clone(), DEFAULT_VIRTUAL_NODES)).unwrap();
        let mut moved = 0usize;
        for token in key_tokens() {
            let (old_owner, new_owner) = (before.primary(*token), after.primary(*token));
            if old_owner != new_owner {
                assert_eq!(new_owner, Some(&new), "token {token} moved between old nodes");
                moved += 1;
            }
        }
        let fraction = moved as f64 / KEYS as f64;
        assert!((0.07..0.12).contains(&fraction), "moved {fraction:.4} of keys");
    }

    #[test]
    fn ranges_agree_with_primary() {
        let mut members = nodes(4);
        members[1].active = false;
        let ring = Ring::new(1, members).unwrap();
        let ranges = ring.ranges();
        let mut probes: Vec<Token> = key_tokens().iter().take(2_000).copied().collect();
        for &t in &ring.tokens {
            probes.extend([Token(t.0.wrapping_sub(1)), t, Token(t.0.wrapping_add(1))]);
        }
        probes.extend([Token(0), Token(u64::MAX)]);
        for token in probes {
            let holders: Vec<&NodeId> =
                ranges.iter().filter(|(r, _)| r.contains(token)).map(|(_, n)| *n).collect();
            assert_eq!(holders, vec![ring.primary(token).unwrap()], "token {token}");
        }
        assert!(ring.owner_ranges(&NodeId::from("node-1")).is_empty());
        let owned: usize = ring.members().iter().map(|m| ring.owner_ranges(&m.id).len()).sum();
        assert_eq!(owned, ranges.len());
    }

    #[test]
    fn ranges_of_small_rings() {
        let one = hand_ring(&[("a", true, &[10, 40])]);
        let full = TokenRange { start_exclusive: Token(10), end_inclusive: Token(10) };
        assert_eq!(one.ranges(), vec![(full, &NodeId::from("a"))]);
        assert!(full.is_full() && full.contains(Token(3)));
        assert!(hand_ring(&[("a", false, &[10])]).ranges().is_empty());
        // b shares a's token 20 and loses the tie by id, so it owns only (20, 30].
        let tied = hand_ring(&[("a", true, &[20]), ("b", true, &[20, 30])]);
        let range = |s, e| TokenRange { start_exclusive: Token(s), end_inclusive: Token(e) };
        let (a, b) = (NodeId::from("a"), NodeId::from("b"));
        assert_eq!(tied.ranges(), vec![(range(30, 20), &a), (range(20, 30), &b)]);
    }

    #[test]
    fn membership_errors() {
        let ring = Ring::new(5, nodes(2)).unwrap();
        let node0 = NodeId::from("node-0");
        #[rustfmt::skip]
        let cases: Vec<(Result<Ring, RingError>, RingError)> = vec![
            (Ring::new(1, [nodes(2), nodes(1)].concat()),
             RingError::DuplicateMember { id: node0.clone() }),
            (Ring::new(1, vec![Member::new("x", MAX_VIRTUAL_NODES + 1)]),
             RingError::TooManyVirtualNodes { id: "x".into(), virtual_nodes: 1025, limit: 1024 }),
            (Ring::new(1, nodes(MAX_MEMBERS + 1)),
             RingError::TooManyMembers { count: MAX_MEMBERS + 1, limit: MAX_MEMBERS }),
            (ring.with_member(5, Member::new("x", 1)),
             RingError::StaleEpoch { current: 5, proposed: 5 }),
            (ring.without_member(6, &NodeId::from("x")),
             RingError::UnknownMember { id: "x".into() }),
        ];
        for (got, want) in cases {
            assert_eq!(got, Err(want));
        }
    }

    #[test]
    fn membership_changes_build_new_snapshots() {
        let ring = Ring::new(1, nodes(3)).unwrap();
        let node0 = NodeId::from("node-0");
        let down = ring.with_member(2, Member { active: false, ..Member::new("node-0", 150) });
        let down = down.unwrap();
        assert_eq!((ring.epoch(), down.epoch()), (1, 2));
        assert!(ring.member(&node0).unwrap().active);
        assert!(!down.member(&node0).unwrap().active);
        assert_eq!(down.token_count(), 2 * 150 * TOKENS_PER_VIRTUAL_NODE as usize);
        let removed = down.without_member(3, &node0).unwrap();
        assert_eq!(removed.members().len(), 2);
        assert_eq!(removed.tokens, down.tokens);
    }
}
