//! `pairdb kv`: write, read and delete keys.

use std::{
    ffi::OsString,
    io::{self, IsTerminal as _},
    path::PathBuf,
};

use clap::{Args, Subcommand, ValueEnum};
use pairdb::proto::coordinator as api;

use super::{
    call,
    input::{os_bytes, parse_clock, read_value},
    output::{
        base64, clock_json, clock_text, consistency_name, print_json, print_out, replicas,
        write_or_pipe_closed, Json,
    },
    Connection, Failure,
};

#[derive(Args)]
pub struct KvArgs {
    #[command(flatten)]
    connection: Connection,
    /// The tenant the key belongs to.
    #[arg(long, global = true, default_value = "default")]
    tenant: String,
    /// How many replicas must answer before the coordinator does.
    #[arg(long, global = true, value_enum, default_value_t = Consistency::Quorum)]
    consistency: Consistency,
    /// Also print the key, replica count and vector clock of `get` (on stderr).
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    op: KvOp,
}

#[derive(Subcommand)]
enum KvOp {
    /// Store VALUE (or the bytes of --value-file) under KEY.
    Put {
        /// The key (UTF-8).
        key: String,
        /// The value, as given (bytes, not necessarily UTF-8).
        #[arg(required_unless_present = "value_file", conflicts_with = "value_file")]
        value: Option<OsString>,
        /// Read the value from this file instead; `-` reads stdin.
        #[arg(long)]
        value_file: Option<PathBuf>,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Print the value of KEY on stdout (raw bytes) and its vector clock on stderr.
    Get {
        /// The key (UTF-8).
        key: String,
    },
    /// Delete KEY (writes a tombstone).
    Delete {
        /// The key (UTF-8).
        key: String,
        #[command(flatten)]
        write: WriteArgs,
    },
}

/// Options shared by the two writes, `put` and `delete`.
#[derive(Args)]
struct WriteArgs {
    /// Makes a retry of this request apply once; a retry reports itself as a duplicate.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// The version this write supersedes, as printed by `get`: ACTOR=COUNTER,ACTOR=COUNTER.
    #[arg(long, value_parser = parse_clock)]
    vector_clock: Option<api::VectorClock>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Consistency {
    One,
    Quorum,
    All,
}

impl From<Consistency> for api::Consistency {
    fn from(c: Consistency) -> Self {
        match c {
            Consistency::One => api::Consistency::One,
            Consistency::Quorum => api::Consistency::Quorum,
            Consistency::All => api::Consistency::All,
        }
    }
}

pub(super) fn run_kv(args: KvArgs) -> Result<(), Failure> {
    let conn = &args.connection;
    let consistency = api::Consistency::from(args.consistency) as i32;
    match args.op {
        KvOp::Put { key, value, value_file, write } => {
            let value = match (value, value_file) {
                (Some(v), _) => os_bytes(v),
                (None, Some(path)) => read_value(&path)?,
                // VALUE is required unless --value-file is present: clap rejected neither.
                (None, None) => unreachable!("clap requires VALUE or --value-file"),
            };
            let req = api::WriteKeyValueRequest {
                tenant_id: args.tenant,
                key,
                value: value.into(),
                consistency,
                idempotency_key: write.idempotency_key.unwrap_or_default(),
                vector_clock: write.vector_clock,
            };
            let resp: api::WriteKeyValueResponse = call(conn, "WriteKeyValue", req)?;
            if conn.json {
                return print_json(&Json::obj([
                    ("key", Json::str(&resp.key)),
                    ("idempotency_key", Json::str(&resp.idempotency_key)),
                    ("vector_clock", clock_json(resp.vector_clock.as_ref())),
                    ("replica_count", Json::Int(resp.replica_count.into())),
                    ("consistency", Json::str(consistency_name(resp.consistency))),
                    ("is_duplicate", Json::Bool(resp.is_duplicate)),
                ]));
            }
            print_out(&format!(
                "ok ({}{}, idempotency key {}, clock {})\n",
                if resp.is_duplicate { "duplicate of an earlier request, " } else { "" },
                replicas(resp.replica_count),
                resp.idempotency_key,
                clock_text(resp.vector_clock.as_ref()),
            ))
        }
        KvOp::Get { key } => {
            let req = api::ReadKeyValueRequest { tenant_id: args.tenant, key, consistency };
            let resp: api::ReadKeyValueResponse = call(conn, "ReadKeyValue", req)?;
            if conn.json {
                let text = std::str::from_utf8(&resp.value).map(Json::str).unwrap_or(Json::Null);
                return print_json(&Json::obj([
                    ("key", Json::str(&resp.key)),
                    ("value", text),
                    ("value_base64", Json::Str(base64(&resp.value))),
                    ("vector_clock", clock_json(resp.vector_clock.as_ref())),
                    ("replica_count", Json::Int(resp.replica_count.into())),
                ]));
            }
            let mut stdout = io::stdout().lock();
            write_or_pipe_closed(&mut stdout, &resp.value)?;
            // Raw bytes exactly when redirected; a terminal also gets the missing newline.
            if io::stdout().is_terminal() && !resp.value.ends_with(b"\n") {
                write_or_pipe_closed(&mut stdout, b"\n")?;
            }
            drop(stdout);
            let clock = clock_text(resp.vector_clock.as_ref());
            if args.verbose {
                eprintln!("key {:?}, {}, clock {clock}", resp.key, replicas(resp.replica_count));
            } else {
                eprintln!("clock {clock}");
            }
            Ok(())
        }
        KvOp::Delete { key, write } => {
            let req = api::DeleteKeyValueRequest {
                tenant_id: args.tenant,
                key,
                consistency,
                idempotency_key: write.idempotency_key.unwrap_or_default(),
                vector_clock: write.vector_clock,
            };
            let resp: api::DeleteKeyValueResponse = call(conn, "DeleteKeyValue", req)?;
            if conn.json {
                return print_json(&Json::obj([
                    ("key", Json::str(&resp.key)),
                    ("idempotency_key", Json::str(&resp.idempotency_key)),
                    ("vector_clock", clock_json(resp.vector_clock.as_ref())),
                    ("replica_count", Json::Int(resp.replica_count.into())),
                    ("is_duplicate", Json::Bool(resp.is_duplicate)),
                ]));
            }
            print_out(&format!(
                "deleted ({}{}, idempotency key {}, clock {})\n",
                if resp.is_duplicate { "duplicate of an earlier request, " } else { "" },
                replicas(resp.replica_count),
                resp.idempotency_key,
                clock_text(resp.vector_clock.as_ref()),
            ))
        }
    }
}
