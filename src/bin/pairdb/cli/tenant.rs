//! `pairdb tenant`: create tenants, show them and change their replication factor.

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

#[derive(Subcommand)]
enum TenantOp {
    /// Create tenant ID.
    Create {
        id: String,
        /// Copies of each key, 1 to 10 (the coordinator's default, 3, when omitted).
        #[arg(long, allow_negative_numbers = true)]
        replication_factor: Option<i32>,
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
        TenantOp::Create { id, replication_factor } => {
            let req = api::CreateTenantRequest {
                tenant_id: id,
                replication_factor: replication_factor.unwrap_or(0),
            };
            let resp: api::CreateTenantResponse = call(conn, "CreateTenant", req)?;
            if conn.json {
                return print_json(&Json::obj([
                    ("tenant_id", Json::str(&resp.tenant_id)),
                    ("replication_factor", Json::Int(resp.replication_factor.into())),
                    ("created_at", Json::Int(resp.created_at)),
                ]));
            }
            print_out(&format!(
                "created tenant {} (replication factor {})\n",
                resp.tenant_id, resp.replication_factor
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
                ]));
            }
            print_out(&format!(
                "tenant {}\n  replication factor: {}\n  created at:         {}\n  \
                 updated at:         {}\n",
                resp.tenant_id,
                resp.replication_factor,
                unix_time(resp.created_at),
                unix_time(resp.updated_at),
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
