//! Authentication and authorization decisions, with no I/O: the bearer token format, parsing
//! of the `authorization` metadata, secret hashing, roles and [`allowed`], the one table of who
//! may do what. The coordinator's `coordinator::auth` applies them to calls.
//!
//! A token is `pdb_<id>_<secret>`: `id` is 16 hex digits (64 random bits), shown in listings,
//! audit lines and used to revoke; `secret` is 32 hex digits (128 random bits), shown once when
//! the token is created and stored only as its SHA-256 ([`hash_secret`]). The bootstrap admin
//! token (`auth.bootstrap_token_file`) is any string of at least [`MIN_BOOTSTRAP_LEN`]
//! characters; it is never stored.

use std::fmt;

use rand::Rng;
use sha2::{Digest, Sha256};

/// Prefix of every token made by [`generate`].
pub const TOKEN_PREFIX: &str = "pdb_";
/// Hex digits of a token id (64 bits).
pub const ID_HEX: usize = 16;
/// Hex digits of a token secret (128 bits).
pub const SECRET_HEX: usize = 32;
/// The shortest bootstrap admin token accepted.
pub const MIN_BOOTSTRAP_LEN: usize = 32;
/// The id the bootstrap admin token has in audit lines.
pub const BOOTSTRAP_ID: &str = "bootstrap";

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything: every tenant's keys, tenants, nodes, migrations, tokens.
    Admin,
    /// Reads, writes and deletes of its own tenant's keys; reading its tenant's settings.
    TenantRw,
    /// Reads of its own tenant's keys; reading its tenant's settings.
    TenantRo,
}

impl Role {
    /// The name in the API, the CLI and the stores: `admin`, `tenant-rw`, `tenant-ro`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::TenantRw => "tenant-rw",
            Role::TenantRo => "tenant-ro",
        }
    }

    /// Parses [`Role::as_str`]'s output.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "tenant-rw" => Some(Role::TenantRw),
            "tenant-ro" => Some(Role::TenantRo),
            _ => None,
        }
    }

    /// Whether a token of this role belongs to one tenant (and must name it).
    pub fn has_tenant(self) -> bool {
        !matches!(self, Role::Admin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a call does, for [`allowed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Reads a key of the target tenant.
    Read,
    /// Writes or deletes a key of the target tenant.
    Write,
    /// Reads the target tenant's settings (`GetTenant`).
    TenantRead,
    /// Anything else: tenants created or changed, storage nodes, migrations, tokens.
    Admin,
}

/// Why [`allowed`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// The action needs an admin token.
    AdminOnly,
    /// The token belongs to another tenant.
    OtherTenant,
    /// The token is read-only.
    ReadOnly,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Denied::AdminOnly => "this call needs an admin token",
            Denied::OtherTenant => "this token belongs to another tenant",
            Denied::ReadOnly => "this token is read-only",
        })
    }
}

/// Whether a token of `role`, belonging to `token_tenant` (empty for admin), may do `action` on
/// `target_tenant` (empty for actions that concern no tenant).
pub fn allowed(
    role: Role,
    token_tenant: &str,
    action: Action,
    target_tenant: &str,
) -> Result<(), Denied> {
    match (role, action) {
        (Role::Admin, _) => Ok(()),
        (_, Action::Admin) => Err(Denied::AdminOnly),
        // A tenant token with no tenant is never stored; refuse it rather than match "".
        _ if token_tenant.is_empty() || token_tenant != target_tenant => Err(Denied::OtherTenant),
        (Role::TenantRo, Action::Write) => Err(Denied::ReadOnly),
        (Role::TenantRw | Role::TenantRo, Action::Read | Action::Write | Action::TenantRead) => {
            Ok(())
        }
    }
}

/// Why an `authorization` value is not a usable credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Not `Bearer <token>`.
    NotBearer,
    /// `Bearer` with nothing after it, or bytes that are not text.
    Empty,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Malformed::NotBearer => "authorization is not \"Bearer <token>\"",
            Malformed::Empty => "authorization carries no token",
        })
    }
}

/// The token of an `authorization` value `Bearer <token>` (scheme case-insensitive, surrounding
/// spaces ignored).
pub fn parse_bearer(header: &[u8]) -> Result<&str, Malformed> {
    let text = std::str::from_utf8(header).map_err(|_| Malformed::Empty)?.trim();
    let (scheme, rest) = text.split_once(' ').ok_or(Malformed::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Malformed::NotBearer);
    }
    let token = rest.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(Malformed::Empty);
    }
    Ok(token)
}

/// The `(id, secret)` of a token in the `pdb_<id>_<secret>` format, `None` otherwise.
pub fn split_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, ID_HEX) && hex(secret, SECRET_HEX)).then_some((id, secret))
}

/// A newly made token: its id, and the full token to show once.
#[derive(Clone, PartialEq, Eq)]
pub struct Generated {
    /// The id (16 hex digits).
    pub id: String,
    /// `pdb_<id>_<secret>`.
    pub token: String,
    /// [`hash_secret`] of the secret: what is stored.
    pub secret_hash: String,
}

impl fmt::Debug for Generated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token.
        f.debug_struct("Generated").field("id", &self.id).finish_non_exhaustive()
    }
}

/// Makes a token from `rng` (use a cryptographic one: `rand::rng()`).
pub fn generate(rng: &mut impl Rng) -> Generated {
    let id = hex(&rng.random::<u64>().to_be_bytes());
    let secret = hex(&rng.random::<u128>().to_be_bytes());
    Generated {
        token: format!("{TOKEN_PREFIX}{id}_{secret}"),
        secret_hash: hash_secret(&secret),
        id,
    }
}

/// SHA-256 of `secret`, in lowercase hex: what the stores keep.
pub fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Whether `a == b`, in a time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Whether `presented` is the bootstrap token whose [`hash_secret`] is `bootstrap_hash`.
pub fn is_bootstrap(presented: &str, bootstrap_hash: &str) -> bool {
    constant_time_eq(hash_secret(presented).as_bytes(), bootstrap_hash.as_bytes())
}

/// Whether `s` may be the bootstrap admin token: at least [`MIN_BOOTSTRAP_LEN`] characters,
/// printable ASCII without spaces (it travels in a header).
pub fn valid_bootstrap(s: &str) -> bool {
    s.len() >= MIN_BOOTSTRAP_LEN && s.bytes().all(|b| b.is_ascii_graphic())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: [Role; 3] = [Role::Admin, Role::TenantRw, Role::TenantRo];
    const ACTIONS: [Action; 4] = [Action::Read, Action::Write, Action::TenantRead, Action::Admin];

    #[test]
    fn the_permission_table_exhaustively() {
        for role in ROLES {
            let own = if role.has_tenant() { "a" } else { "" };
            for action in ACTIONS {
                for target in ["a", "b", ""] {
                    let got = allowed(role, own, action, target);
                    let want = match (role, action) {
                        (Role::Admin, _) => Ok(()),
                        (_, Action::Admin) => Err(Denied::AdminOnly),
                        _ if target != "a" => Err(Denied::OtherTenant),
                        (Role::TenantRo, Action::Write) => Err(Denied::ReadOnly),
                        _ => Ok(()),
                    };
                    assert_eq!(got, want, "{role} of {own:?} doing {action:?} on {target:?}");
                }
            }
        }
    }

    #[test]
    fn a_tenant_token_without_a_tenant_gets_nothing() {
        for role in [Role::TenantRw, Role::TenantRo] {
            for action in ACTIONS {
                assert!(allowed(role, "", action, "").is_err());
                assert!(allowed(role, "", action, "a").is_err());
            }
        }
    }

    #[test]
    fn roles_round_trip() {
        for role in ROLES {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("Admin"), None);
        assert_eq!(Role::parse(""), None);
        assert!(!Role::Admin.has_tenant());
        assert!(Role::TenantRo.has_tenant());
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(parse_bearer(b"Bearer abc"), Ok("abc"));
        assert_eq!(parse_bearer(b"bearer  abc "), Ok("abc"));
        assert_eq!(parse_bearer(b"BEARER abc"), Ok("abc"));
        assert_eq!(parse_bearer(b"Basic abc"), Err(Malformed::NotBearer));
        assert_eq!(parse_bearer(b"abc"), Err(Malformed::NotBearer));
        assert_eq!(parse_bearer(b"Bearer "), Err(Malformed::NotBearer));
        assert_eq!(parse_bearer(b"Bearer  "), Err(Malformed::NotBearer));
        assert_eq!(parse_bearer(b"Bearer a b"), Err(Malformed::Empty));
        assert_eq!(parse_bearer(b"Bearer \xff"), Err(Malformed::Empty));
        assert_eq!(parse_bearer(b""), Err(Malformed::NotBearer));
    }

    #[test]
    fn generated_tokens_split_and_hash() {
        let mut rng = rand::rng();
        let g = generate(&mut rng);
        let (id, secret) = split_token(&g.token).expect("own format");
        assert_eq!(id, g.id);
        assert_eq!(id.len(), ID_HEX);
        assert_eq!(secret.len(), SECRET_HEX);
        assert_eq!(hash_secret(secret), g.secret_hash);
        assert_eq!(g.secret_hash.len(), 64);
        assert!(!format!("{g:?}").contains(secret), "Debug never shows the secret");
        let other = generate(&mut rng);
        assert_ne!(g.id, other.id);
        assert_ne!(g.token, other.token);
    }

    #[test]
    fn split_rejects_other_shapes() {
        let id = "0123456789abcdef";
        let secret = "0123456789abcdef0123456789ABCDEF";
        assert_eq!(split_token(&format!("pdb_{id}_{secret}")), Some((id, secret)));
        assert_eq!(split_token(&format!("pdx_{id}_{secret}")), None);
        assert_eq!(split_token(&format!("pdb_{id}{secret}")), None);
        assert_eq!(split_token(&format!("pdb_{id}_{secret}0")), None);
        assert_eq!(split_token(&format!("pdb_{id}0_{secret}")), None);
        assert_eq!(split_token(&format!("pdb_{id}_{}g", &secret[1..])), None);
        assert_eq!(split_token("pdb__"), None);
    }

    #[test]
    fn sha256_is_the_standard_one() {
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn bootstrap_tokens() {
        let t = "x".repeat(MIN_BOOTSTRAP_LEN);
        assert!(valid_bootstrap(&t));
        assert!(!valid_bootstrap(&t[1..]));
        assert!(!valid_bootstrap(&format!("{t} ")));
        let h = hash_secret(&t);
        assert!(is_bootstrap(&t, &h));
        assert!(!is_bootstrap(&format!("{t}y"), &h));
    }
}
