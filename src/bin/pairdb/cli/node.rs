//! `pairdb node`: add, remove and list storage nodes.

use std::fmt::Write as _;

use clap::{Args, Subcommand};
use pairdb::proto::coordinator as api;

use super::{
    call,
    output::{migration_lines, print_json, print_out, Json},
    Connection, Failure,
};

#[derive(Args)]
pub struct NodeArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    op: NodeOp,
}

#[derive(Subcommand)]
enum NodeOp {
    /// Add storage node ID at HOST:PORT to the ring.
    Add {
        id: String,
        #[arg(long)]
        host: String,
        #[arg(long)]
        port: u16,
        /// Ring positions the node owns (the coordinator's default, 150, when omitted).
        #[arg(long)]
        virtual_nodes: Option<i32>,
    },
    /// Remove storage node ID from the ring.
    Remove {
        id: String,
        /// Remove it even if it still holds keys (their copies on it are lost).
        #[arg(long)]
        force: bool,
    },
    /// List the storage nodes with their state, key count and disk usage.
    List,
}

pub(super) fn run_node(args: NodeArgs) -> Result<(), Failure> {
    let conn = &args.connection;
    match args.op {
        NodeOp::Add { id, host, port, virtual_nodes } => {
            let req = api::AddStorageNodeRequest {
                node_id: id,
                host,
                port: port.into(),
                virtual_nodes: virtual_nodes.unwrap_or(0),
            };
            let resp: api::AddStorageNodeResponse = call(conn, "AddStorageNode", req)?;
            print_node_change("added", &resp.node_id, &resp.migration_id, &resp.message, conn)
        }
        NodeOp::Remove { id, force } => {
            let req = api::RemoveStorageNodeRequest { node_id: id, force };
            let resp: api::RemoveStorageNodeResponse = call(conn, "RemoveStorageNode", req)?;
            print_node_change("removed", &resp.node_id, &resp.migration_id, &resp.message, conn)
        }
        NodeOp::List => {
            let resp: api::ListStorageNodesResponse =
                call(conn, "ListStorageNodes", api::ListStorageNodesRequest {})?;
            if conn.json {
                let nodes = resp.nodes.iter().map(|n| {
                    Json::obj([
                        ("node_id", Json::str(&n.node_id)),
                        ("host", Json::str(&n.host)),
                        ("port", Json::Int(n.port.into())),
                        ("status", Json::str(&n.status)),
                        ("virtual_nodes", Json::Int(n.virtual_nodes.into())),
                        ("keys_count", Json::Int(n.keys_count)),
                        ("disk_usage_percent", Json::Float(n.disk_usage_percent)),
                    ])
                });
                return print_json(&Json::obj([("nodes", Json::Arr(nodes.collect()))]));
            }
            print_out(&node_table(&resp.nodes))
        }
    }
}

fn print_node_change(
    verb: &str,
    node_id: &str,
    migration_id: &str,
    message: &str,
    conn: &Connection,
) -> Result<(), Failure> {
    if conn.json {
        return print_json(&Json::obj([
            ("node_id", Json::str(node_id)),
            ("migration_id", Json::str(migration_id)),
            ("message", Json::str(message)),
        ]));
    }
    print_out(&node_change_text(verb, node_id, migration_id, message))
}

/// `added node storage-4: MESSAGE`, then the migration id and how to follow it.
fn node_change_text(verb: &str, node_id: &str, migration_id: &str, message: &str) -> String {
    let mut out = format!("{verb} node {node_id}");
    if !message.is_empty() {
        let _ = write!(out, ": {message}");
    }
    out.push('\n');
    out.push_str(&migration_lines(migration_id));
    out
}

/// The `node list` table. Stats the coordinator could not fetch (-1 on the wire) show as `?`.
fn node_table(nodes: &[api::StorageNodeInfo]) -> String {
    let header = ["NODE", "ADDRESS", "STATUS", "VNODES", "KEYS", "DISK"];
    let rows: Vec<[String; 6]> = nodes
        .iter()
        .map(|n| {
            [
                n.node_id.clone(),
                format!("{}:{}", n.host, n.port),
                n.status.clone(),
                n.virtual_nodes.to_string(),
                if n.keys_count < 0 { "?".into() } else { n.keys_count.to_string() },
                if n.disk_usage_percent < 0.0 {
                    "?".into()
                } else {
                    format!("{:.1}%", n.disk_usage_percent)
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            // Text columns align left, numbers right.
            let _ = if i < 3 { write!(text, "{cell:<w$}  ") } else { write!(text, "{cell:>w$}  ") };
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_change_names_the_migration() {
        assert_eq!(
            node_change_text("added", "storage-4", "mig-7", "rebalancing 150 ranges"),
            "added node storage-4: rebalancing 150 ranges\n\
             migration: mig-7\n\
             watch it: pairdb migration status mig-7 --watch\n"
        );
        assert_eq!(node_change_text("removed", "storage-2", "", ""), "removed node storage-2\n");
    }
}
