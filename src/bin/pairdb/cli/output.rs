//! Rendering replies: text for people, hand-written JSON for scripts (`--json`).

use std::{
    fmt::{self, Write as _},
    io,
};

use pairdb::proto::coordinator as api;

use super::Failure;

pub(super) fn print_out(text: &str) -> Result<(), Failure> {
    write_or_pipe_closed(&mut io::stdout().lock(), text.as_bytes())
}

pub(super) fn print_json(value: &Json) -> Result<(), Failure> {
    print_out(&format!("{value}\n"))
}

/// Writes `bytes`; a reader that went away (`pairdb kv get k | head -c 10`) is not an error.
pub(super) fn write_or_pipe_closed(out: &mut impl io::Write, bytes: &[u8]) -> Result<(), Failure> {
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(Failure::Local(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

/// What a command that started a migration prints about it: the id on a line of its own and how
/// to follow it; nothing when no migration was started (empty id).
pub(super) fn migration_lines(migration_id: &str) -> String {
    if migration_id.is_empty() {
        return String::new();
    }
    format!("migration: {migration_id}\n{}\n", watch_hint(migration_id))
}

/// The line that tells how to follow a migration.
pub(super) fn watch_hint(migration_id: &str) -> String {
    format!("watch it: pairdb migration status {migration_id} --watch")
}

pub(super) fn replicas(n: i32) -> String {
    if n == 1 {
        "1 replica".into()
    } else {
        format!("{n} replicas")
    }
}

/// `ACTOR=COUNTER,...`, which `--vector-clock` accepts back.
pub(super) fn clock_text(clock: Option<&api::VectorClock>) -> String {
    let entries = clock.map(|c| c.entries.as_slice()).unwrap_or_default();
    if entries.is_empty() {
        return "(empty)".into();
    }
    let parts: Vec<String> = entries
        .iter()
        .map(|e| format!("{}={}", e.coordinator_node_id, e.logical_timestamp))
        .collect();
    parts.join(",")
}

/// A clock as a JSON object from actor to counter.
pub(super) fn clock_json(clock: Option<&api::VectorClock>) -> Json {
    let entries = clock.map(|c| c.entries.as_slice()).unwrap_or_default();
    Json::Obj(
        entries
            .iter()
            .map(|e| (e.coordinator_node_id.clone(), Json::Int(e.logical_timestamp)))
            .collect(),
    )
}

pub(super) fn consistency_name(c: i32) -> &'static str {
    match api::Consistency::try_from(c) {
        Ok(api::Consistency::One) => "ONE",
        Ok(api::Consistency::All) => "ALL",
        // Unspecified means QUORUM on the wire.
        Ok(api::Consistency::Quorum | api::Consistency::Unspecified) => "QUORUM",
        Err(_) => "UNKNOWN",
    }
}

/// Unix seconds as RFC 3339 UTC; `-` for 0 (never set).
pub(super) fn unix_time(secs: i64) -> String {
    if secs == 0 {
        return "-".into();
    }
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days: proleptic Gregorian date of a day count from 1970-01-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Standard base64 with padding, for values that are not UTF-8 in `--json` output.
pub(super) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Just enough JSON for the replies: objects keep their field order.
pub(super) enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub(super) fn str(s: &str) -> Json {
        Json::Str(s.to_owned())
    }

    pub(super) fn obj<const N: usize>(fields: [(&str, Json); N]) -> Json {
        Json::Obj(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::Null => f.write_str("null"),
            Json::Bool(b) => write!(f, "{b}"),
            Json::Int(n) => write!(f, "{n}"),
            // JSON has no NaN or infinity.
            Json::Float(x) if !x.is_finite() => f.write_str("null"),
            Json::Float(x) => write!(f, "{x}"),
            Json::Str(s) => write_json_string(f, s),
            Json::Arr(items) => {
                f.write_char('[')?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_char(']')
            }
            Json::Obj(fields) => {
                f.write_char('{')?;
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write_json_string(f, key)?;
                    write!(f, ":{value}")?;
                }
                f.write_char('}')
            }
        }
    }
}

fn write_json_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if u32::from(c) < 0x20 => write!(f, "\\u{:04x}", u32::from(c))?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_rendering() {
        let value = Json::obj([
            ("s", Json::str("a\"b\\c\n\u{1}é")),
            ("n", Json::Int(-3)),
            ("x", Json::Float(f64::NAN)),
            ("a", Json::Arr(vec![Json::Bool(true), Json::Null, Json::Float(12.5)])),
        ]);
        let want = r#"{"s":"a\"b\\c\n\u0001é","n":-3,"x":null,"a":[true,null,12.5]}"#;
        assert_eq!(value.to_string(), want);
    }

    #[test]
    fn base64_matches_rfc4648() {
        let cases =
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg==")];
        for (input, want) in cases {
            assert_eq!(base64(input.as_bytes()), want, "{input}");
        }
    }

    #[test]
    fn migration_lines_name_the_id_and_the_watch_command() {
        assert_eq!(
            migration_lines("mig-7"),
            "migration: mig-7\nwatch it: pairdb migration status mig-7 --watch\n"
        );
        assert_eq!(migration_lines(""), "");
    }

    #[test]
    fn unix_times() {
        assert_eq!(unix_time(0), "-");
        assert_eq!(unix_time(1), "1970-01-01T00:00:01Z");
        assert_eq!(unix_time(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(unix_time(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
