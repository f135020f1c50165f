//! `pairdb migration`: show the state of a migration.

use std::fmt::Write as _;

use clap::{Args, Subcommand};
use pairdb::proto::coordinator as api;

use super::{
    call,
    output::{print_json, print_out, unix_time, Json},
    Connection, Failure,
};

#[derive(Args)]
pub struct MigrationArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    op: MigrationOp,
}

#[derive(Subcommand)]
enum MigrationOp {
    /// Show migration ID (as returned by `tenant set-rf`, `node add` and `node remove`).
    Status { id: String },
}

pub(super) fn run_migration(args: MigrationArgs) -> Result<(), Failure> {
    let conn = &args.connection;
    let MigrationOp::Status { id } = args.op;
    let req = api::GetMigrationStatusRequest { migration_id: id };
    let resp: api::GetMigrationStatusResponse = call(conn, "GetMigrationStatus", req)?;
    let progress = resp.progress.unwrap_or_default();
    if conn.json {
        return print_json(&Json::obj([
            ("migration_id", Json::str(&resp.migration_id)),
            ("migration_type", Json::str(&resp.migration_type)),
            ("node_id", Json::str(&resp.node_id)),
            ("status", Json::str(&resp.status)),
            (
                "progress",
                Json::obj([
                    ("keys_migrated", Json::Int(progress.keys_migrated)),
                    ("total_keys", Json::Int(progress.total_keys)),
                    ("percentage", Json::Float(progress.percentage)),
                ]),
            ),
            ("started_at", Json::Int(resp.started_at)),
            ("completed_at", Json::Int(resp.completed_at)),
            ("error_message", Json::str(&resp.error_message)),
        ]));
    }
    let mut out = format!(
        "migration {}\n  type:      {}\n  node:      {}\n  status:    {}\n  \
         progress:  {}/{} keys ({:.1}%)\n  started:   {}\n  completed: {}\n",
        resp.migration_id,
        resp.migration_type,
        resp.node_id,
        resp.status,
        progress.keys_migrated,
        progress.total_keys,
        progress.percentage,
        unix_time(resp.started_at),
        unix_time(resp.completed_at),
    );
    if !resp.error_message.is_empty() {
        let _ = writeln!(out, "  error:     {}", resp.error_message);
    }
    print_out(&out)
}
