//! `PAIRDB_*` environment variables that override configuration keys.
//!
//! The rule, the same for every key of every role: `PAIRDB_` + the key's path upper-cased, with
//! `_` between nesting levels. `port` is `PAIRDB_PORT`, `replica_timeout_ms` is
//! `PAIRDB_REPLICA_TIMEOUT_MS`, `admin.port` is `PAIRDB_ADMIN_PORT`, `log.format` is
//! `PAIRDB_LOG_FORMAT`. A value is read as YAML, so numbers, booleans and lists work
//! (`PAIRDB_STORAGE_NODES='[{node_id: s1, host: 10.0.0.5, port: 50061}]'`); keys whose type is
//! text take the value verbatim (`PAIRDB_NODE_ID=007` stays "007"). Overrides apply after the
//! file and before command-line flags.
//!
//! `_` both separates levels and appears inside key names, so a variable name alone is
//! ambiguous (`ADMIN_PORT` could be `admin_port` or `admin.port`). It is resolved against the
//! config type itself: the type is walked once with a probing deserializer that records every
//! key path serde asks for, and a variable matches the path whose joined name equals it. No key
//! list to keep in sync, and any key added later gets its variable for free.
//!
//! Variables that match no key are left alone, with a warning unless the process reads them
//! elsewhere (`PAIRDB_LOG`, the client's `PAIRDB_ADDR`, `PAIRDB_TOKEN` and `PAIRDB_TLS_CA`, `pairdb probe`'s `PAIRDB_PROBE_URL`, tests'
//! `PAIRDB_TEST_*`).

use std::cell::RefCell;

use serde::{
    de::{self, value::StrDeserializer, DeserializeOwned, IntoDeserializer, Visitor},
    forward_to_deserialize_any,
};
use serde_yaml::{Mapping, Value};

/// The prefix of every override variable.
pub const PREFIX: &str = "PAIRDB_";

/// Variables read by other parts of the process, never reported as unknown.
const NOT_CONFIG: &[&str] =
    &["PAIRDB_LOG", "PAIRDB_ADDR", "PAIRDB_PROBE_URL", "PAIRDB_TOKEN", "PAIRDB_TLS_CA"];

/// How a key's value is read from a variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// A nested section (a YAML mapping).
    Section,
    /// Text: the variable's value verbatim.
    Text,
    /// Anything else: the variable's value parsed as YAML.
    Other,
}

/// Every key path of `T` (sections and their keys), in declaration order.
pub fn key_paths<T: DeserializeOwned>() -> Vec<(Vec<&'static str>, KeyKind)> {
    let found = RefCell::new(Vec::new());
    // A type the probe cannot walk (say, an internally tagged enum) stops the walk there; the
    // keys found so far still get their variables. A unit test checks the shipped types walk
    // to the end.
    let _ = T::deserialize(Probe { path: Vec::new(), found: &found });
    found.into_inner()
}

/// What applying the variables did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Variables that set a key, in the order applied.
    pub used: Vec<String>,
    /// `PAIRDB_*` variables that match no key of this role.
    pub unknown: Vec<String>,
}

/// Sets the keys named by `vars` in `doc` (the file's YAML; `Null` for no file).
pub fn apply<T: DeserializeOwned>(
    doc: &mut Value,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Applied {
    let paths = key_paths::<T>();
    let mut applied = Applied::default();
    let mut vars: Vec<(String, String)> =
        vars.into_iter().filter(|(name, _)| name.starts_with(PREFIX)).collect();
    // Sections before their keys (`PAIRDB_ADMIN` then `PAIRDB_ADMIN_PORT`), so the more
    // specific variable wins whatever order the environment lists them in.
    vars.sort_by_key(|(name, _)| name.len());
    for (name, raw) in vars {
        if NOT_CONFIG.contains(&name.as_str()) || name.starts_with("PAIRDB_TEST_") {
            // Read elsewhere; `PAIRDB_LOG` would otherwise name the whole `log` section.
            continue;
        }
        let wanted = name[PREFIX.len()..].to_ascii_lowercase();
        let Some((path, kind)) = paths.iter().find(|(p, _)| p.join("_") == wanted) else {
            applied.unknown.push(name);
            continue;
        };
        let value = match kind {
            KeyKind::Text => Value::String(raw),
            _ if raw.is_empty() => Value::String(raw),
            // Unparsable YAML is passed on as text: deserializing then names the key.
            _ => serde_yaml::from_str(&raw).unwrap_or(Value::String(raw)),
        };
        set(doc, path, value);
        applied.used.push(name);
    }
    applied
}

/// Sets `path` in `doc` to `value`, creating (or replacing non-mapping values with) mappings on
/// the way.
fn set(doc: &mut Value, path: &[&'static str], value: Value) {
    let mut node = doc;
    for key in path {
        if !node.is_mapping() {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = node else { unreachable!("made a mapping just above") };
        node = map.entry(Value::String((*key).to_owned())).or_insert(Value::Null);
    }
    *node = value;
}

// ------------------------------------------------------------------------------------------------
// The probe: a deserializer that answers every request with a minimal value and records the
// struct fields it is asked for.
// ------------------------------------------------------------------------------------------------

type Found = RefCell<Vec<(Vec<&'static str>, KeyKind)>>;

struct Probe<'a> {
    path: Vec<&'static str>,
    found: &'a Found,
}

impl Probe<'_> {
    fn record(&self, kind: KeyKind) {
        if !self.path.is_empty() {
            self.found.borrow_mut().push((self.path.clone(), kind));
        }
    }
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.record(KeyKind::Other);
        visitor.visit_u64(0)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.record(KeyKind::Other);
        visitor.visit_bool(false)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.record(KeyKind::Other);
        visitor.visit_f64(0.0)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.record(KeyKind::Other);
        visitor.visit_f64(0.0)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.record(KeyKind::Text);
        visitor.visit_str("")
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.record(KeyKind::Text);
        visitor.visit_string(String::new())
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.record(KeyKind::Text);
        visitor.visit_char('a')
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.record(KeyKind::Other);
        visitor.visit_bytes(&[])
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.record(KeyKind::Other);
        visitor.visit_byte_buf(Vec::new())
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        // The inner type decides the kind; `None` never asks, so take the common case.
        self.record(KeyKind::Other);
        visitor.visit_none()
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.record(KeyKind::Other);
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.record(KeyKind::Other);
        visitor.visit_seq(de::value::SeqDeserializer::new(std::iter::empty::<u8>()))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.record(KeyKind::Other);
        visitor.visit_map(de::value::MapDeserializer::new(std::iter::empty::<(u8, u8)>()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.record(KeyKind::Section);
        visitor.visit_map(Fields { path: self.path, fields, next: 0, found: self.found })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        // Unit variants are written as their names: text.
        self.record(KeyKind::Text);
        let first = variants.first().copied().unwrap_or("");
        visitor.visit_enum(Variant {
            name: first,
            probe: Probe { path: self.path, found: self.found },
        })
    }

    forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 identifier ignored_any
    }
}

/// A struct's fields, each one probed in turn.
struct Fields<'a> {
    path: Vec<&'static str>,
    fields: &'static [&'static str],
    next: usize,
    found: &'a Found,
}

impl<'de> de::MapAccess<'de> for Fields<'_> {
    type Error = de::value::Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let Some(field) = self.fields.get(self.next) else { return Ok(None) };
        let key: StrDeserializer<'_, Self::Error> = field.into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let field = self.fields[self.next];
        self.next += 1;
        let mut path = self.path.clone();
        path.push(field);
        seed.deserialize(Probe { path, found: self.found })
    }
}

/// An enum probed as its first variant, whatever its shape.
struct Variant<'a> {
    name: &'static str,
    probe: Probe<'a>,
}

impl<'de, 'a> de::EnumAccess<'de> for Variant<'a> {
    type Error = de::value::Error;
    type Variant = Probe<'a>;

    fn variant_seed<S: de::DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), Self::Error> {
        let name: StrDeserializer<'_, Self::Error> = self.name.into_deserializer();
        Ok((seed.deserialize(name)?, self.probe))
    }
}

impl<'de> de::VariantAccess<'de> for Probe<'_> {
    type Error = de::value::Error;

    fn unit_variant(self) -> Result<(), Self::Error> {
        Ok(())
    }

    fn newtype_variant_seed<S: de::DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<S::Value, Self::Error> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_seq(de::value::SeqDeserializer::new(std::iter::empty::<u8>()))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_map(Fields { path: self.path, fields, next: 0, found: self.found })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CoordinatorConfig, StorageConfig};

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    /// Every key path in a shipped YAML file (mappings only; lists are values).
    fn yaml_paths(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<String>) {
        if let Value::Mapping(m) = v {
            for (k, v) in m {
                prefix.push(k.as_str().unwrap_or_default().to_owned());
                out.push(prefix.join("."));
                yaml_paths(v, prefix, out);
                prefix.pop();
            }
        }
    }

    fn assert_every_documented_key_has_a_variable<T: DeserializeOwned>(file: &str) {
        let text = std::fs::read_to_string(file).unwrap();
        let doc: Value = serde_yaml::from_str(&text).unwrap();
        let mut documented = Vec::new();
        yaml_paths(&doc, &mut Vec::new(), &mut documented);
        let known: Vec<String> = key_paths::<T>().into_iter().map(|(p, _)| p.join(".")).collect();
        for key in documented {
            assert!(
                known.contains(&key),
                "{file}: `{key}` has no PAIRDB_ variable; found {known:?}"
            );
        }
    }

    #[test]
    fn the_probe_finds_every_shipped_key() {
        let dir = env!("CARGO_MANIFEST_DIR");
        assert_every_documented_key_has_a_variable::<CoordinatorConfig>(&format!(
            "{dir}/config/coordinator.yaml"
        ));
        assert_every_documented_key_has_a_variable::<StorageConfig>(&format!(
            "{dir}/config/storage.yaml"
        ));
    }

    #[test]
    fn http_api_port_has_its_variable() {
        let mut doc = Value::Null;
        let applied =
            apply::<CoordinatorConfig>(&mut doc, vars(&[("PAIRDB_HTTP_API_PORT", "8080")]));
        assert_eq!(applied.used, ["PAIRDB_HTTP_API_PORT"]);
        let cfg: CoordinatorConfig = serde_yaml::from_value(doc).unwrap();
        assert_eq!(cfg.http_api.port, Some(8080));
    }

    #[test]
    fn nested_keys_kinds_and_precedence() {
        let mut doc: Value = serde_yaml::from_str("port: 1\nadmin: {port: 2}\n").unwrap();
        let applied = apply::<CoordinatorConfig>(
            &mut doc,
            vars(&[
                ("PAIRDB_ADMIN_PORT", "0"),
                ("PAIRDB_REPLICA_TIMEOUT_MS", "250"),
                ("PAIRDB_NODE_ID", "007"),
                ("PAIRDB_ADMIN", "{host: 0.0.0.0, port: 5}"),
                ("PAIRDB_NOPE", "1"),
                ("PAIRDB_LOG", "debug"),
                ("HOME", "/root"),
            ]),
        );
        assert_eq!(applied.unknown, ["PAIRDB_NOPE"]);
        let cfg: CoordinatorConfig = serde_yaml::from_value(doc).unwrap();
        assert_eq!(cfg.port, 1);
        // PAIRDB_ADMIN set the section; the longer PAIRDB_ADMIN_PORT then won for its key.
        assert_eq!((cfg.admin.host.as_str(), cfg.admin.port), ("0.0.0.0", Some(0)));
        assert_eq!(cfg.replica_timeout_ms, 250);
        assert_eq!(cfg.node_id, "007");
    }

    #[test]
    fn auth_keys_and_the_client_token() {
        let mut doc = Value::Null;
        let applied = apply::<CoordinatorConfig>(
            &mut doc,
            vars(&[
                ("PAIRDB_AUTH_MODE", "required"),
                ("PAIRDB_AUTH_BOOTSTRAP_TOKEN", "0123456789abcdef0123456789abcdef"),
                ("PAIRDB_AUTH_BOOTSTRAP_TOKEN_FILE", "/etc/pairdb/admin.token"),
                ("PAIRDB_AUTH_OPEN_HEALTH_AND_REFLECTION", "false"),
                ("PAIRDB_TOKEN", "a client's token, not configuration"),
            ]),
        );
        assert!(applied.unknown.is_empty(), "{:?}", applied.unknown);
        let cfg: CoordinatorConfig = serde_yaml::from_value(doc).unwrap();
        assert_eq!(cfg.auth.mode, crate::config::AuthMode::Required);
        assert_eq!(cfg.auth.bootstrap_token, "0123456789abcdef0123456789abcdef");
        assert_eq!(cfg.auth.bootstrap_token_file, "/etc/pairdb/admin.token");
        assert!(!format!("{cfg:?}").contains("0123456789abcdef0123"), "Debug hides the token");
        assert!(!cfg.auth.open_health_and_reflection);
        assert_eq!(CoordinatorConfig::default().auth.mode, crate::config::AuthMode::Off);
        assert!(CoordinatorConfig::default().auth.open_health_and_reflection);
    }

    #[test]
    fn lists_and_no_file() {
        let mut doc = Value::Null;
        apply::<CoordinatorConfig>(
            &mut doc,
            vars(&[("PAIRDB_STORAGE_NODES", "[{node_id: s1, host: 127.0.0.1, port: 7}]")]),
        );
        let cfg: CoordinatorConfig = serde_yaml::from_value(doc).unwrap();
        assert_eq!(cfg.storage_nodes.len(), 1);
        assert_eq!(cfg.storage_nodes[0].port, 7);
    }

    #[test]
    fn bad_values_name_the_key() {
        let mut doc = Value::Null;
        apply::<StorageConfig>(&mut doc, vars(&[("PAIRDB_GROUP_COMMIT_MS", "soon")]));
        let text = serde_yaml::to_string(&doc).unwrap();
        let err = serde_yaml::from_str::<StorageConfig>(&text).unwrap_err().to_string();
        assert!(err.contains("group_commit_ms"), "{err}");
    }
}
