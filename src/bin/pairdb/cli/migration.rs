//! `pairdb migration`: show, follow, list and cancel migrations.
//!
//! The text rendering lives in small pure functions (`progress_bar`, `count_rate`, `mb_rate`,
//! `duration_text`, `watch_line`, `status_text`, `migration_table`) that take the clock as an
//! argument, so their output is tested here without a server.

use std::{
    fmt::Write as _,
    io::{self, IsTerminal as _},
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use clap::{Args, Subcommand};
use pairdb::proto::coordinator as api;

use super::{
    call,
    output::{print_json, print_out, unix_time, watch_hint, Json},
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
    Status {
        id: String,
        /// Poll until the migration is COMPLETED, FAILED or CANCELLED; exits 0 only when it
        /// completed. Draws a progress bar on a terminal, prints a line per change otherwise and
        /// one JSON object per poll with `--json`.
        #[arg(long)]
        watch: bool,
        /// Milliseconds between polls with `--watch`.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        interval_ms: u64,
    },
    /// List the most recent migrations, newest first.
    List {
        /// Most migrations to show (the coordinator's default, 20, when omitted).
        #[arg(long)]
        limit: Option<i32>,
    },
    /// Cancel migration ID and return the cluster to the placement it had before. Refused once
    /// reads and writes have moved to the new placement (stage USE_NEW or later).
    Cancel { id: String },
}

pub(super) fn run_migration(args: MigrationArgs) -> Result<(), Failure> {
    let conn = &args.connection;
    match args.op {
        MigrationOp::Status { id, watch: false, .. } => {
            let resp = get_status(conn, &id)?;
            if conn.json {
                return print_json(&status_json(&resp));
            }
            print_out(&status_text(&resp, now_unix(), &local_time))
        }
        MigrationOp::Status { id, watch: true, interval_ms } => {
            watch(conn, &id, Duration::from_millis(interval_ms))
        }
        MigrationOp::List { limit } => {
            let req = api::ListMigrationsRequest { limit: limit.unwrap_or(0) };
            let resp: api::ListMigrationsResponse = call(conn, "ListMigrations", req)?;
            if conn.json {
                let items = resp.migrations.iter().map(status_json).collect();
                return print_json(&Json::obj([("migrations", Json::Arr(items))]));
            }
            print_out(&migration_table(&resp.migrations))
        }
        MigrationOp::Cancel { id } => {
            let req = api::CancelMigrationRequest { migration_id: id };
            let resp: api::CancelMigrationResponse = call(conn, "CancelMigration", req)?;
            if conn.json {
                return print_json(&Json::obj([
                    ("migration_id", Json::str(&resp.migration_id)),
                    ("status", Json::str(&resp.status)),
                    ("stage", Json::str(&resp.stage)),
                    ("message", Json::str(&resp.message)),
                ]));
            }
            print_out(&cancel_text(&resp))
        }
    }
}

fn get_status(conn: &Connection, id: &str) -> Result<api::GetMigrationStatusResponse, Failure> {
    let req = api::GetMigrationStatusRequest { migration_id: id.to_owned() };
    call(conn, "GetMigrationStatus", req)
}

/// Polls until the migration reaches a terminal status; the exit code says which one.
fn watch(conn: &Connection, id: &str, interval: Duration) -> Result<(), Failure> {
    let tty = !conn.json && io::stdout().is_terminal();
    let mut last_change: Option<ChangeKey> = None;
    let mut drawn = false;
    loop {
        let resp = match get_status(conn, id) {
            Ok(resp) => resp,
            Err(failure) => {
                if drawn {
                    // Keep the last bar; the error goes on a line of its own.
                    print_out("\n")?;
                }
                return Err(failure);
            }
        };
        let now = now_unix();
        let terminal = is_terminal_status(&resp.status);
        if conn.json {
            print_json(&status_json(&resp))?;
        } else if tty {
            let width = terminal_width().unwrap_or(80).saturating_sub(1).max(20);
            let line = truncate_chars(&watch_line(&resp, now), width);
            // `\x1b[K` clears what a longer previous line left to the right.
            print_out(&format!("\r{line}\x1b[K"))?;
            drawn = true;
        } else {
            let key = ChangeKey::of(&resp);
            if last_change.as_ref() != Some(&key) {
                print_out(&format!("{}  {}\n", unix_time(now), watch_line(&resp, now)))?;
                last_change = Some(key);
            }
        }
        if terminal {
            if drawn {
                print_out("\n")?;
            }
            return watch_outcome(&resp, conn.json);
        }
        thread::sleep(interval);
    }
}

/// What a watch that saw `resp` (terminal) ends with.
fn watch_outcome(resp: &api::GetMigrationStatusResponse, json: bool) -> Result<(), Failure> {
    let id = &resp.migration_id;
    match resp.status.as_str() {
        "COMPLETED" => {
            if json {
                return Ok(());
            }
            let took = if resp.started_at > 0 && resp.completed_at >= resp.started_at {
                format!(" in {}", duration_text(resp.completed_at - resp.started_at))
            } else {
                String::new()
            };
            print_out(&format!("migration {id} completed{took}\n"))
        }
        "CANCELLED" => Err(Failure::Outcome(with_detail(
            format!("migration {id} was cancelled; the cluster is back on its previous placement"),
            &resp.error_message,
        ))),
        _ => Err(Failure::Outcome(with_detail(
            format!("migration {id} failed"),
            if resp.error_message.is_empty() { "no error message" } else { &resp.error_message },
        ))),
    }
}

fn with_detail(text: String, detail: &str) -> String {
    if detail.is_empty() {
        text
    } else {
        format!("{text}: {detail}")
    }
}

/// The fields whose change is worth a line when the output is not a terminal (the ETA and the
/// rates move on every poll and are not).
#[derive(PartialEq)]
struct ChangeKey {
    status: String,
    stage: String,
    keys_migrated: i64,
    segments_done: i64,
    blocked_on: String,
}

impl ChangeKey {
    fn of(resp: &api::GetMigrationStatusResponse) -> ChangeKey {
        ChangeKey {
            status: resp.status.clone(),
            stage: resp.stage.clone(),
            keys_migrated: resp.progress.unwrap_or_default().keys_migrated,
            segments_done: resp.segments_done,
            blocked_on: resp.blocked_on.clone(),
        }
    }
}

pub(super) fn is_terminal_status(status: &str) -> bool {
    matches!(status, "COMPLETED" | "FAILED" | "CANCELLED")
}

// ------------------------------------------------------------------------------------------------
// Rendering.
// ------------------------------------------------------------------------------------------------

/// Width of the `[###...]` bar, brackets excluded.
const BAR_WIDTH: usize = 20;

fn status_json(resp: &api::GetMigrationStatusResponse) -> Json {
    let progress = resp.progress.unwrap_or_default();
    Json::obj([
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
        ("stage", Json::str(&resp.stage)),
        ("bytes_migrated", Json::Int(resp.bytes_migrated)),
        ("bytes_per_second", Json::Float(resp.bytes_per_second)),
        ("keys_per_second", Json::Float(resp.keys_per_second)),
        ("estimated_completion_at", Json::Int(resp.estimated_completion_at)),
        ("blocked_on", Json::str(&resp.blocked_on)),
        ("segments_done", Json::Int(resp.segments_done)),
        ("segments_total", Json::Int(resp.segments_total)),
    ])
}

/// The `migration status` block. `local` renders unix seconds as local time.
fn status_text(
    resp: &api::GetMigrationStatusResponse,
    now: i64,
    local: &dyn Fn(i64) -> String,
) -> String {
    let progress = resp.progress.unwrap_or_default();
    let mut out = format!(
        "migration {}\n  type:      {}\n  node:      {}\n  status:    {}\n  stage:     {}\n  \
         progress:  {}/{} keys ({:.1}%), {}\n",
        resp.migration_id,
        resp.migration_type,
        or_dash(&resp.node_id),
        resp.status,
        or_dash(&resp.stage),
        progress.keys_migrated,
        progress.total_keys,
        progress.percentage,
        mb_amount(resp.bytes_migrated),
    );
    if resp.segments_total > 0 {
        let _ = writeln!(out, "  segments:  {}/{}", resp.segments_done, resp.segments_total);
    }
    if !is_terminal_status(&resp.status) {
        let _ = writeln!(
            out,
            "  rate:      {} keys/s, {}",
            count_rate(resp.keys_per_second),
            mb_rate(resp.bytes_per_second)
        );
        let eta = match resp.estimated_completion_at {
            0 => "unknown".to_owned(),
            at => format!("{} ({})", local(at), eta_text(at, now)),
        };
        let _ = writeln!(out, "  eta:       {eta}");
    }
    if !resp.blocked_on.is_empty() {
        let _ = writeln!(out, "  blocked:   {}", resp.blocked_on);
    }
    let _ = writeln!(out, "  started:   {}", unix_time(resp.started_at));
    let _ = writeln!(out, "  completed: {}", unix_time(resp.completed_at));
    if !resp.error_message.is_empty() {
        let _ = writeln!(out, "  error:     {}", resp.error_message);
    }
    out
}

/// One line of `--watch`:
/// `[###########.........]  57%  STREAMING  12.3k keys/s  1.2 MB/s  ETA 0m41s`.
fn watch_line(resp: &api::GetMigrationStatusResponse, now: i64) -> String {
    let percentage = if resp.status == "COMPLETED" {
        100.0
    } else {
        resp.progress.unwrap_or_default().percentage
    };
    let stage = if resp.stage.is_empty() { &resp.status } else { &resp.stage };
    let mut line =
        format!("{} {:>3.0}%  {stage}", progress_bar(percentage, BAR_WIDTH), clamp(percentage));
    if is_terminal_status(&resp.status) {
        if resp.status != stage.as_str() {
            let _ = write!(line, "  {}", resp.status);
        }
    } else {
        let _ = write!(
            line,
            "  {} keys/s {}",
            count_rate(resp.keys_per_second),
            mb_rate(resp.bytes_per_second)
        );
        if resp.segments_total > 0 {
            let _ = write!(line, "  seg {}/{}", resp.segments_done, resp.segments_total);
        }
        match resp.estimated_completion_at {
            0 => line.push_str("  ETA --"),
            at => {
                let _ = write!(line, "  ETA {}", duration_text(at - now));
            }
        }
    }
    if !resp.blocked_on.is_empty() {
        let _ = write!(line, "  blocked: {}", resp.blocked_on);
    }
    line
}

/// The `migration list` table.
fn migration_table(migrations: &[api::GetMigrationStatusResponse]) -> String {
    const HEADER: [&str; 8] =
        ["ID", "TYPE", "NODE", "STATUS", "STAGE", "PROGRESS", "STARTED", "COMPLETED"];
    let rows: Vec<[String; 8]> = migrations
        .iter()
        .map(|m| {
            [
                m.migration_id.clone(),
                m.migration_type.clone(),
                or_dash(&m.node_id).to_owned(),
                m.status.clone(),
                or_dash(&m.stage).to_owned(),
                format!("{:.1}%", m.progress.unwrap_or_default().percentage),
                unix_time(m.started_at),
                unix_time(m.completed_at),
            ]
        })
        .collect();
    let mut widths = HEADER.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            // The percentage aligns right, text left.
            let _ =
                if i == 5 { write!(text, "{cell:>w$}  ") } else { write!(text, "{cell:<w$}  ") };
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&HEADER);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    if migrations.is_empty() {
        out.push_str("(no migrations)\n");
    }
    out
}

fn cancel_text(resp: &api::CancelMigrationResponse) -> String {
    let mut out = format!(
        "migration {}: status {}, stage {}\n",
        resp.migration_id,
        resp.status,
        or_dash(&resp.stage)
    );
    if !resp.message.is_empty() {
        let _ = writeln!(out, "{}", resp.message);
    }
    if !is_terminal_status(&resp.status) {
        let _ = writeln!(out, "{}", watch_hint(&resp.migration_id));
    }
    out
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

fn clamp(percentage: f64) -> f64 {
    if percentage.is_nan() {
        0.0
    } else {
        percentage.clamp(0.0, 100.0)
    }
}

/// `[#####.....]` with `width` cells; a cell fills only once its whole share is done, so the bar
/// is full only at 100%.
fn progress_bar(percentage: f64, width: usize) -> String {
    let filled = ((clamp(percentage) / 100.0 * width as f64).floor() as usize).min(width);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

/// A per-second count for people: `950`, `12.3k`, `4.5M`.
fn count_rate(per_second: f64) -> String {
    let n = if per_second.is_finite() { per_second.max(0.0) } else { 0.0 };
    if n < 999.5 {
        format!("{n:.0}")
    } else if n < 999_950.0 {
        format!("{:.1}k", n / 1e3)
    } else if n < 999_950_000.0 {
        format!("{:.1}M", n / 1e6)
    } else {
        format!("{:.1}G", n / 1e9)
    }
}

/// Bytes per second in MB/s (10^6 bytes), one decimal.
fn mb_rate(bytes_per_second: f64) -> String {
    let n = if bytes_per_second.is_finite() { bytes_per_second.max(0.0) } else { 0.0 };
    format!("{:.1} MB/s", n / 1e6)
}

/// Bytes in MB (10^6 bytes), one decimal.
fn mb_amount(bytes: i64) -> String {
    format!("{:.1} MB", bytes.max(0) as f64 / 1e6)
}

/// `0m41s`, `1m23s`, `2h05m09s`, `3d04h10m`; negative durations count as 0.
fn duration_text(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m, s) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    if d > 0 {
        format!("{d}d{h:02}h{m:02}m")
    } else if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else {
        format!("{m}m{s:02}s")
    }
}

/// `in 1m23s` for a time ahead of `now`, `overdue by 0m05s` for one behind it.
fn eta_text(at: i64, now: i64) -> String {
    if at >= now {
        format!("in {}", duration_text(at - now))
    } else {
        format!("overdue by {}", duration_text(now - at))
    }
}

fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((end, _)) => s[..end].to_owned(),
        None => s.to_owned(),
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Unix seconds as local wall-clock time with its UTC offset: `2026-12-04 22:49:13 +01:00`.
fn local_time(secs: i64) -> String {
    local_time_with_offset(secs, utc_offset(secs))
}

fn local_time_with_offset(secs: i64, offset: i64) -> String {
    // unix_time renders `YYYY-MM-DDTHH:MM:SSZ` for UTC; shift it by the offset and relabel.
    let utc = unix_time(secs + offset);
    let wall = utc.strip_suffix('Z').unwrap_or(&utc).replacen('T', " ", 1);
    let sign = if offset < 0 { '-' } else { '+' };
    let abs = offset.abs();
    format!("{wall} {sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60)
}

/// The local time zone's offset from UTC at `secs`, in seconds (0 when unknown).
fn utc_offset(secs: i64) -> i64 {
    // time_t is 64 bits on every target glommio runs on.
    let t: libc::time_t = secs;
    // SAFETY: `tm` is plain old data that localtime_r fills in; both pointers are valid for the
    // call and localtime_r keeps neither.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let filled = unsafe { libc::localtime_r(&t, &mut tm) };
    if filled.is_null() {
        0
    } else {
        tm.tm_gmtoff
    }
}

/// Columns of the terminal on stdout, when it is one.
fn terminal_width() -> Option<usize> {
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which is valid for the call.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running() -> api::GetMigrationStatusResponse {
        api::GetMigrationStatusResponse {
            migration_id: "mig-7".into(),
            migration_type: "NODE_ADDITION".into(),
            node_id: "storage-4".into(),
            status: "IN_PROGRESS".into(),
            progress: Some(api::MigrationProgress {
                keys_migrated: 5_700,
                total_keys: 10_000,
                percentage: 57.0,
            }),
            started_at: 1_700_000_000,
            completed_at: 0,
            error_message: String::new(),
            stage: "STREAMING".into(),
            bytes_migrated: 12_345_678,
            bytes_per_second: 1_234_567.0,
            keys_per_second: 12_345.0,
            estimated_completion_at: 1_700_000_141,
            blocked_on: String::new(),
            segments_done: 3,
            segments_total: 8,
        }
    }

    #[test]
    fn progress_bars() {
        assert_eq!(progress_bar(0.0, 10), "[..........]");
        assert_eq!(progress_bar(57.0, 16), "[#########.......]");
        assert_eq!(progress_bar(99.9, 10), "[#########.]");
        assert_eq!(progress_bar(100.0, 10), "[##########]");
        assert_eq!(progress_bar(250.0, 4), "[####]");
        assert_eq!(progress_bar(-3.0, 4), "[....]");
        assert_eq!(progress_bar(f64::NAN, 4), "[....]");
    }

    #[test]
    fn rates() {
        assert_eq!(count_rate(0.0), "0");
        assert_eq!(count_rate(950.4), "950");
        assert_eq!(count_rate(999.6), "1.0k");
        assert_eq!(count_rate(12_345.0), "12.3k");
        assert_eq!(count_rate(4_500_000.0), "4.5M");
        assert_eq!(count_rate(2e9), "2.0G");
        assert_eq!(count_rate(f64::NAN), "0");
        assert_eq!(mb_rate(1_234_567.0), "1.2 MB/s");
        assert_eq!(mb_rate(0.0), "0.0 MB/s");
        assert_eq!(mb_rate(-5.0), "0.0 MB/s");
        assert_eq!(mb_amount(12_345_678), "12.3 MB");
    }

    #[test]
    fn durations_and_etas() {
        assert_eq!(duration_text(0), "0m00s");
        assert_eq!(duration_text(41), "0m41s");
        assert_eq!(duration_text(83), "1m23s");
        assert_eq!(duration_text(7509), "2h05m09s");
        assert_eq!(duration_text(3 * 86_400 + 4 * 3600 + 10 * 60 + 7), "3d04h10m");
        assert_eq!(duration_text(-5), "0m00s");
        assert_eq!(eta_text(1_083, 1_000), "in 1m23s");
        assert_eq!(eta_text(1_000, 1_000), "in 0m00s");
        assert_eq!(eta_text(995, 1_000), "overdue by 0m05s");
    }

    #[test]
    fn local_times() {
        assert_eq!(local_time_with_offset(1_700_000_000, 0), "2023-11-14 22:13:20 +00:00");
        assert_eq!(local_time_with_offset(1_700_000_000, 3600), "2023-11-14 23:13:20 +01:00");
        assert_eq!(local_time_with_offset(1_700_000_000, -16_200), "2023-11-14 17:43:20 -04:30");
    }

    #[test]
    fn watch_lines() {
        let resp = running();
        assert_eq!(
            watch_line(&resp, 1_700_000_100),
            "[###########.........]  57%  STREAMING  12.3k keys/s 1.2 MB/s  seg 3/8  ETA 0m41s"
        );

        let blocked = api::GetMigrationStatusResponse {
            stage: "READ_NEW".into(),
            estimated_completion_at: 0,
            segments_total: 0,
            blocked_on: "barrier: waiting for coordinator c2 to apply READ_NEW".into(),
            ..running()
        };
        assert_eq!(
            watch_line(&blocked, 1_700_000_100),
            "[###########.........]  57%  READ_NEW  12.3k keys/s 1.2 MB/s  ETA --  \
             blocked: barrier: waiting for coordinator c2 to apply READ_NEW"
        );

        let done = api::GetMigrationStatusResponse {
            status: "COMPLETED".into(),
            stage: "COMPLETED".into(),
            ..running()
        };
        assert_eq!(watch_line(&done, 0), "[####################] 100%  COMPLETED");

        let failed = api::GetMigrationStatusResponse { status: "FAILED".into(), ..running() };
        assert_eq!(watch_line(&failed, 0), "[###########.........]  57%  STREAMING  FAILED");
    }

    #[test]
    fn status_block() {
        let local = |secs: i64| format!("local({secs})");
        let want = "migration mig-7\n  type:      NODE_ADDITION\n  node:      storage-4\n  \
                    status:    IN_PROGRESS\n  stage:     STREAMING\n  \
                    progress:  5700/10000 keys (57.0%), 12.3 MB\n  segments:  3/8\n  \
                    rate:      12.3k keys/s, 1.2 MB/s\n  \
                    eta:       local(1700000141) (in 0m41s)\n  \
                    started:   2023-11-14T22:13:20Z\n  completed: -\n";
        assert_eq!(status_text(&running(), 1_700_000_100, &local), want);

        let failed = api::GetMigrationStatusResponse {
            status: "FAILED".into(),
            completed_at: 1_700_000_060,
            error_message: "storage-4 unreachable".into(),
            blocked_on: "throttled: 4 MiB/s cap".into(),
            segments_total: 0,
            ..running()
        };
        let want = "migration mig-7\n  type:      NODE_ADDITION\n  node:      storage-4\n  \
                    status:    FAILED\n  stage:     STREAMING\n  \
                    progress:  5700/10000 keys (57.0%), 12.3 MB\n  \
                    blocked:   throttled: 4 MiB/s cap\n  \
                    started:   2023-11-14T22:13:20Z\n  completed: 2023-11-14T22:14:20Z\n  \
                    error:     storage-4 unreachable\n";
        assert_eq!(status_text(&failed, 1_700_000_100, &local), want);
    }

    #[test]
    fn status_json_has_the_new_fields() {
        let json = status_json(&running()).to_string();
        assert!(json.starts_with(r#"{"migration_id":"mig-7","migration_type":"NODE_ADDITION","#));
        assert!(json.ends_with(
            r#""stage":"STREAMING","bytes_migrated":12345678,"bytes_per_second":1234567,"keys_per_second":12345,"estimated_completion_at":1700000141,"blocked_on":"","segments_done":3,"segments_total":8}"#
        ), "{json}");
    }

    #[test]
    fn table() {
        let done = api::GetMigrationStatusResponse {
            migration_id: "mig-6".into(),
            migration_type: "REPLICATION_CHANGE".into(),
            node_id: String::new(),
            status: "COMPLETED".into(),
            stage: "COMPLETED".into(),
            progress: Some(api::MigrationProgress { percentage: 100.0, ..Default::default() }),
            completed_at: 1_700_000_050,
            ..running()
        };
        let want = "\
ID     TYPE                NODE       STATUS       STAGE      PROGRESS  STARTED               COMPLETED
mig-7  NODE_ADDITION       storage-4  IN_PROGRESS  STREAMING     57.0%  2023-11-14T22:13:20Z  -
mig-6  REPLICATION_CHANGE  -          COMPLETED    COMPLETED    100.0%  2023-11-14T22:13:20Z  2023-11-14T22:14:10Z
";
        assert_eq!(migration_table(&[running(), done]), want);
        assert_eq!(
            migration_table(&[]),
            "ID  TYPE  NODE  STATUS  STAGE  PROGRESS  STARTED  COMPLETED\n(no migrations)\n"
        );
    }

    #[test]
    fn cancel_and_hint() {
        let reverting = api::CancelMigrationResponse {
            migration_id: "mig-7".into(),
            status: "IN_PROGRESS".into(),
            stage: "REVERTING".into(),
            message: "reverting to the previous placement".into(),
        };
        assert_eq!(
            cancel_text(&reverting),
            "migration mig-7: status IN_PROGRESS, stage REVERTING\n\
             reverting to the previous placement\n\
             watch it: pairdb migration status mig-7 --watch\n"
        );
        let cancelled = api::CancelMigrationResponse {
            status: "CANCELLED".into(),
            stage: "CANCELLED".into(),
            message: String::new(),
            ..reverting
        };
        assert_eq!(cancel_text(&cancelled), "migration mig-7: status CANCELLED, stage CANCELLED\n");
    }

    #[test]
    fn truncation() {
        assert_eq!(truncate_chars("héllo", 3), "hél");
        assert_eq!(truncate_chars("abc", 10), "abc");
    }
}
