//! `pairdb tenant`: create tenants, show them and change their replication factor and limits.

use clap::{Args, Subcommand};
use pairdb::proto::coordinator as api;

use super::{
    call,
    output::{migration_lines, print_json, print_out, unix_time, Json},
    Connection, Failure,
};

#[derive(Args)]
pub struct TenantArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    op: TenantOp,
}

/// A tenant's limits; each omitted or 0 means the coordinator's default (`limits:` in its
/// configuration).
#[derive(Args)]
struct LimitArgs {
    /// Key-value requests per second, per coordinator.
    #[arg(long, default_value_t = 0)]
    requests_per_second: u64,
    /// Key and value bytes per second, per coordinator.
    #[arg(long, default_value_t = 0)]
    bytes_per_second: u64,
    /// Longest key, bytes (at most the coordinator's max_key_bytes).
    #[arg(long, default_value_t = 0)]
    max_key_bytes: u64,
    /// Longest value, bytes (at most the coordinator's max_value_bytes).
    #[arg(long, default_value_t = 0)]
    max_value_bytes: u64,
}

impl LimitArgs {
    fn proto(&self) -> api::TenantLimits {
        api::TenantLimits {
            requests_per_second: self.requests_per_second,
            bytes_per_second: self.bytes_per_second,
            max_key_bytes: self.max_key_bytes,
            max_value_bytes: self.max_value_bytes,
        }
    }
}

#[derive(Subcommand)]
enum TenantOp {
    /// Create tenant ID.
    Create {
        id: String,
        /// Copies of each key, 1 to 10 (the coordinator's default, 3, when omitted).
        #[arg(long, allow_negative_numbers = true)]
        replication_factor: Option<i32>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Set tenant ID's limits (all four: an omitted one goes back to the default).
    SetLimits {
        id: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Show tenant ID.
    Get { id: String },
    /// Change tenant ID's replication factor to N.
    SetRf {
        id: String,
        #[arg(allow_negative_numbers = true)]
        n: i32,
    },
}

pub(super) fn run_tenant(args: TenantArgs) -> Result<(), Failure> {
    let conn = &args.connection;
    match args.op {
        TenantOp::Create { id, replication_factor, limits } => {
            let limited = limits.proto() != api::TenantLimits::default();
            let req = api::CreateTenantRequest {
                tenant_id: id,
                replication_factor: replication_factor.unwrap_or(0),
                limits: Some(limits.proto()),
            };
            let resp: api::CreateTenantResponse = call(conn, "CreateTenant", req)?;
            if conn.json {
                return print_json(&Json::obj([
                    ("tenant_id", Json::str(&resp.tenant_id)),
                    ("replication_factor", Json::Int(resp.replication_factor.into())),
                    ("created_at", Json::Int(resp.created_at)),
                    ("limits", limits_json(resp.limits.as_ref())),
                    ("effective_limits", limits_json(resp.effective_limits.as_ref())),
                ]));
            }
            // The limits only when some were asked for: the usual answer stays one line.
            let lines = if limited {
                limits_lines(resp.limits.as_ref(), resp.effective_limits.as_ref())
            } else {
                String::new()
            };
            print_out(&format!(
                "created tenant {} (replication factor {})\n{lines}",
                resp.tenant_id, resp.replication_factor,
            ))
        }
        TenantOp::SetLimits { id, limits } => {
            let req =
                api::UpdateTenantLimitsRequest { tenant_id: id, limits: Some(limits.proto()) };
            let resp: api::UpdateTenantLimitsResponse = call(conn, "UpdateTenantLimits", req)?;
            if conn.json {
                return print_json(&Json::obj([
                    ("tenant_id", Json::str(&resp.tenant_id)),
                    ("limits", limits_json(resp.limits.as_ref())),
                    ("effective_limits", limits_json(resp.effective_limits.as_ref())),
                    ("updated_at", Json::Int(resp.updated_at)),
                ]));
            }
            print_out(&format!(
                "tenant {}: limits set\n{}",
                resp.tenant_id,
                limits_lines(resp.limits.as_ref(), resp.effective_limits.as_ref())
            ))
        }
        TenantOp::Get { id } => {
            let req = api::GetTenantRequest { tenant_id: id };
            let resp: api::GetTenantResponse = call(conn, "GetTenant", req)?;
            if conn.json {
                return print_json(&Json::obj([
                    ("tenant_id", Json::str(&resp.tenant_id)),
                    ("replication_factor", Json::Int(resp.replication_factor.into())),
                    ("created_at", Json::Int(resp.created_at)),
                    ("updated_at", Json::Int(resp.updated_at)),
                    ("limits", limits_json(resp.limits.as_ref())),
                    ("effective_limits", limits_json(resp.effective_limits.as_ref())),
                ]));
            }
            print_out(&format!(
                "tenant {}\n  replication factor: {}\n  created at:         {}\n  \
                 updated at:         {}\n{}",
                resp.tenant_id,
                resp.replication_factor,
                unix_time(resp.created_at),
                unix_time(resp.updated_at),
                limits_lines(resp.limits.as_ref(), resp.effective_limits.as_ref())
            ))
        }
        TenantOp::SetRf { id, n } => {
            let req =
                api::UpdateReplicationFactorRequest { tenant_id: id, new_replication_factor: n };
            let resp: api::UpdateReplicationFactorResponse =
                call(conn, "UpdateReplicationFactor", req)?;
            if conn.json {
                return print_json(&Json::obj([
                    ("tenant_id", Json::str(&resp.tenant_id)),
                    ("old_replication_factor", Json::Int(resp.old_replication_factor.into())),
                    ("new_replication_factor", Json::Int(resp.new_replication_factor.into())),
                    ("migration_id", Json::str(&resp.migration_id)),
                    ("updated_at", Json::Int(resp.updated_at)),
                ]));
            }
            print_out(&format!(
                "tenant {}: replication factor {} -> {}\n{}",
                resp.tenant_id,
                resp.old_replication_factor,
                resp.new_replication_factor,
                migration_lines(&resp.migration_id)
            ))
        }
    }
}

/// Limits as JSON numbers (a missing message is all zeros).
fn limits_json(l: Option<&api::TenantLimits>) -> Json {
    let l = l.cloned().unwrap_or_default();
    let n = |v: u64| Json::Int(i64::try_from(v).unwrap_or(i64::MAX));
    Json::obj([
        ("requests_per_second", n(l.requests_per_second)),
        ("bytes_per_second", n(l.bytes_per_second)),
        ("max_key_bytes", n(l.max_key_bytes)),
        ("max_value_bytes", n(l.max_value_bytes)),
    ])
}

/// One line per limit: the value in force, and whether it is the tenant's own or the default.
fn limits_lines(own: Option<&api::TenantLimits>, effective: Option<&api::TenantLimits>) -> String {
    let (own, eff) = (own.cloned().unwrap_or_default(), effective.cloned().unwrap_or_default());
    let line = |name: &str, own: u64, eff: u64| {
        let value = if eff == 0 { "unlimited".to_owned() } else { eff.to_string() };
        let origin = if own == 0 { " (default)" } else { "" };
        format!("  {name:<20}{value}{origin}\n")
    };
    [
        line("requests/s:", own.requests_per_second, eff.requests_per_second),
        line("bytes/s:", own.bytes_per_second, eff.bytes_per_second),
        line("max key bytes:", own.max_key_bytes, eff.max_key_bytes),
        line("max value bytes:", own.max_value_bytes, eff.max_value_bytes),
    ]
    .concat()
}
