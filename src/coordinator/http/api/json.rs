//! The JSON pieces the handlers share: vector clocks, consistency levels, idempotency keys and
//! base64 as protobuf JSON writes and accepts them, and the checks and parsing of a request's
//! body and query string.

use std::collections::HashMap;

use base64::{
    alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    Engine as _,
};
use serde::{de::DeserializeOwned, Deserialize};
use serde_json::{json, Value};

use super::Request;
use crate::{error::PairError, proto::coordinator as api};

/// A vector clock in the proto's JSON shape: `{"entries": [{"coordinator_node_id": "coord-1/0",
/// "logical_timestamp": "1733..."}]}` (the counter a string, as protobuf JSON writes an int64; a
/// number is accepted).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JsonClock {
    #[serde(default)]
    entries: Vec<JsonClockEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonClockEntry {
    #[serde(default)]
    coordinator_node_id: String,
    #[serde(default)]
    logical_timestamp: Option<Int64>,
}

/// An int64 as protobuf JSON allows it: a number or a decimal string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Int64 {
    Number(i64),
    Text(String),
}

impl JsonClock {
    pub(super) fn into_proto(self) -> Result<api::VectorClock, PairError> {
        let entries = self
            .entries
            .into_iter()
            .map(|e| {
                let logical_timestamp = match e.logical_timestamp {
                    None => 0,
                    Some(Int64::Number(n)) => n,
                    Some(Int64::Text(s)) => s.trim().parse().map_err(|_| {
                        PairError::invalid(format!(
                            "invalid vector_clock: logical_timestamp {s:?} is not an int64"
                        ))
                    })?,
                };
                Ok(api::VectorClockEntry {
                    coordinator_node_id: e.coordinator_node_id,
                    logical_timestamp,
                })
            })
            .collect::<Result<_, PairError>>()?;
        Ok(api::VectorClock { entries })
    }
}

/// A tenant's limits as protobuf JSON writes them: uint64 as decimal strings; every field is
/// optional on input (absent: 0, the coordinator's default).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct JsonLimits {
    #[serde(default)]
    requests_per_second: Option<Uint64>,
    #[serde(default)]
    bytes_per_second: Option<Uint64>,
    #[serde(default)]
    max_key_bytes: Option<Uint64>,
    #[serde(default)]
    max_value_bytes: Option<Uint64>,
}

/// A uint64 as protobuf JSON allows it: a number or a decimal string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Uint64 {
    Number(u64),
    Text(String),
}

impl JsonLimits {
    pub(super) fn into_proto(self) -> Result<api::TenantLimits, PairError> {
        let field = |name: &str, v: Option<Uint64>| -> Result<u64, PairError> {
            match v {
                None => Ok(0),
                Some(Uint64::Number(n)) => Ok(n),
                Some(Uint64::Text(s)) => s.trim().parse().map_err(|_| {
                    PairError::invalid(format!("invalid limits: {name} {s:?} is not a uint64"))
                }),
            }
        };
        Ok(api::TenantLimits {
            requests_per_second: field("requests_per_second", self.requests_per_second)?,
            bytes_per_second: field("bytes_per_second", self.bytes_per_second)?,
            max_key_bytes: field("max_key_bytes", self.max_key_bytes)?,
            max_value_bytes: field("max_value_bytes", self.max_value_bytes)?,
        })
    }
}

/// Limits as JSON (uint64 as strings); absent limits are all zeros.
pub(super) fn limits_json(limits: Option<&api::TenantLimits>) -> Value {
    let l = limits.cloned().unwrap_or_default();
    serde_json::json!({
        "requests_per_second": l.requests_per_second.to_string(),
        "bytes_per_second": l.bytes_per_second.to_string(),
        "max_key_bytes": l.max_key_bytes.to_string(),
        "max_value_bytes": l.max_value_bytes.to_string(),
    })
}

pub(super) fn clock_json(clock: Option<&api::VectorClock>) -> Value {
    let entries: Vec<Value> = clock
        .map(|c| {
            c.entries
                .iter()
                .map(|e| {
                    json!({
                        "coordinator_node_id": e.coordinator_node_id,
                        "logical_timestamp": e.logical_timestamp.to_string(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({ "entries": entries })
}

/// `ONE`, `QUORUM`, `ALL` (any case; absent or empty: the default, QUORUM).
pub(super) fn consistency(name: Option<&str>) -> Result<i32, PairError> {
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return Ok(api::Consistency::Unspecified as i32);
    };
    api::Consistency::from_str_name(&name.to_ascii_uppercase()).map(|c| c as i32).ok_or_else(|| {
        PairError::invalid(format!("consistency {name:?} is not ONE, QUORUM or ALL"))
    })
}

pub(super) fn consistency_name(value: i32) -> String {
    api::Consistency::try_from(value)
        .map(|c| c.as_str_name().to_owned())
        .unwrap_or_else(|_| value.to_string())
}

/// The idempotency key from the `Idempotency-Key` header or the body's field; both must agree.
pub(super) fn idempotency_key(
    header: Option<&str>,
    field: Option<String>,
) -> Result<String, PairError> {
    match (header, field) {
        (Some(h), Some(f)) if h != f => Err(PairError::invalid(
            "the Idempotency-Key header and the idempotency_key field differ",
        )),
        (Some(h), _) => Ok(h.to_owned()),
        (None, Some(f)) => Ok(f),
        (None, None) => Ok(String::new()),
    }
}

/// Base64 as protobuf JSON accepts it: standard or URL-safe alphabet, padded or not.
pub(super) fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    GeneralPurpose::new(&alphabet::STANDARD, config)
        .decode(text)
        .or_else(|e| GeneralPurpose::new(&alphabet::URL_SAFE, config).decode(text).map_err(|_| e))
}

/// The JSON body as `T`; unknown fields are refused, as protobuf JSON parsers do.
pub(super) fn body<T: DeserializeOwned>(req: &Request<'_>) -> Result<T, PairError> {
    if req.body.is_empty() {
        return Err(PairError::invalid("this route takes a JSON body"));
    }
    serde_json::from_slice(req.body)
        .map_err(|e| PairError::invalid(format!("malformed JSON body: {e}")))
}

pub(super) fn no_body(req: &Request<'_>) -> Result<(), PairError> {
    if req.body.is_empty() {
        Ok(())
    } else {
        Err(PairError::invalid(format!("{} {} takes no body", req.method, req.path)))
    }
}

pub(super) fn no_query(req: &Request<'_>) -> Result<(), PairError> {
    if req.query.is_empty() {
        Ok(())
    } else {
        Err(PairError::invalid(format!("{} {} takes no query parameters", req.method, req.path)))
    }
}

/// The query's parameters (form-urlencoded); unknown or repeated ones are refused.
pub(super) fn query(q: &str, allowed: &[&str]) -> Result<HashMap<String, String>, PairError> {
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            return Err(PairError::invalid(format!(
                "unknown query parameter {k:?}; this route takes {}",
                allowed.join(", ")
            )));
        }
        if out.insert(k.clone().into_owned(), v.into_owned()).is_some() {
            return Err(PairError::invalid(format!("query parameter {k:?} is repeated")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_parse_what_protobuf_json_allows() {
        assert_eq!(decode_base64("aGk=").unwrap(), b"hi");
        assert_eq!(decode_base64("aGk").unwrap(), b"hi");
        assert_eq!(decode_base64("-_8").unwrap(), [0xfb, 0xff]);
        assert!(decode_base64("not base64!").is_err());
        assert_eq!(consistency(Some("all")).unwrap(), api::Consistency::All as i32);
        assert_eq!(consistency(None).unwrap(), 0);
        assert!(consistency(Some("MOST")).is_err());
        let clock: JsonClock = serde_json::from_str(
            r#"{"entries":[{"coordinator_node_id":"c/0","logical_timestamp":"12"},
                {"coordinator_node_id":"c/1","logical_timestamp":7}]}"#,
        )
        .unwrap();
        let proto = clock.into_proto().unwrap();
        assert_eq!(proto.entries[0].logical_timestamp, 12);
        assert_eq!(proto.entries[1].logical_timestamp, 7);
        assert_eq!(clock_json(Some(&proto))["entries"][1]["logical_timestamp"], "7");
        assert!(query("a=1&a=2", &["a"]).is_err());
        assert!(query("b=1", &["a"]).is_err());
        assert_eq!(query("a=x%20y+z", &["a"]).unwrap()["a"], "x y z");
        assert!(idempotency_key(Some("a"), Some("b".into())).is_err());
    }
}
