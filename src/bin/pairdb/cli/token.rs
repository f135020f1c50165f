//! `pairdb token`: create, list and revoke bearer tokens (an admin token is needed: `--token` or
//! `PAIRDB_TOKEN`). The token made by `create` is printed once and never again.

use clap::{Args, Subcommand};
use pairdb::proto::coordinator as api;

use super::{
    call,
    output::{print_json, print_out, Json},
    Connection, Failure,
};

#[derive(Args)]
pub struct TokenArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    op: TokenOp,
}

#[derive(Subcommand)]
enum TokenOp {
    /// Create a token and print it (shown this once: store it now).
    Create {
        /// The tenant of a tenant-rw or tenant-ro token; omit for admin.
        #[arg(long, default_value = "")]
        tenant: String,
        /// admin, tenant-rw (its tenant's keys) or tenant-ro (reads of its tenant's keys).
        #[arg(long)]
        role: String,
    },
    /// List tokens (never their secrets).
    List {
        /// Only this tenant's tokens.
        #[arg(long, default_value = "")]
        tenant: String,
    },
    /// Revoke token ID: every coordinator refuses it within about a second.
    Revoke { id: String },
}

fn info_json(t: &api::TokenInfo) -> Json {
    Json::obj([
        ("token_id", Json::str(&t.token_id)),
        ("tenant_id", Json::str(&t.tenant_id)),
        ("role", Json::str(&t.role)),
        ("created_at_us", Json::Int(t.created_at_us)),
        ("revoked_at_us", Json::Int(t.revoked_at_us)),
    ])
}

fn info_line(t: &api::TokenInfo) -> String {
    format!(
        "{}  {:<9}  tenant={}  created={}  {}\n",
        t.token_id,
        t.role,
        if t.tenant_id.is_empty() { "-" } else { &t.tenant_id },
        super::output::unix_time(t.created_at_us / 1_000_000),
        if t.revoked_at_us == 0 {
            "valid".to_owned()
        } else {
            format!("revoked={}", super::output::unix_time(t.revoked_at_us / 1_000_000))
        }
    )
}

pub(super) fn run_token(args: TokenArgs) -> Result<(), Failure> {
    let conn = &args.connection;
    match args.op {
        TokenOp::Create { tenant, role } => {
            let req = api::CreateTokenRequest { tenant_id: tenant, role };
            let resp: api::CreateTokenResponse = call(conn, "CreateToken", req)?;
            let info = resp.info.unwrap_or_default();
            if conn.json {
                return print_json(&Json::obj([
                    ("token", Json::str(&resp.token)),
                    ("info", info_json(&info)),
                ]));
            }
            print_out(&format!(
                "{}\ncreated token {} ({}{}); the line above is the token, shown this once\n",
                resp.token,
                info.token_id,
                info.role,
                if info.tenant_id.is_empty() {
                    String::new()
                } else {
                    format!(", tenant {}", info.tenant_id)
                },
            ))
        }
        TokenOp::List { tenant } => {
            let req = api::ListTokensRequest { tenant_id: tenant };
            let resp: api::ListTokensResponse = call(conn, "ListTokens", req)?;
            if conn.json {
                return print_json(&Json::Arr(resp.tokens.iter().map(info_json).collect()));
            }
            let text: String = resp.tokens.iter().map(info_line).collect();
            print_out(if text.is_empty() { "no tokens\n" } else { &text })
        }
        TokenOp::Revoke { id } => {
            let req = api::RevokeTokenRequest { token_id: id };
            let resp: api::RevokeTokenResponse = call(conn, "RevokeToken", req)?;
            let info = resp.info.unwrap_or_default();
            if conn.json {
                return print_json(&info_json(&info));
            }
            print_out(&format!("revoked token {}\n", info.token_id))
        }
    }
}
