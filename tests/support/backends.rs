//! Where the backing-service tests find PostgreSQL and Redis, and a private PostgreSQL schema per
//! test.
//!
//! A server is used when its variable is set (`PAIRDB_TEST_POSTGRES_URL`,
//! `PAIRDB_TEST_REDIS_URL`) or under CI (`CI=true`, at the addresses CI and this project's
//! machines run them). Otherwise the test prints that it was skipped and why. Under CI a server
//! that does not answer fails the test: CI must not pass by skipping.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

/// PostgreSQL as CI runs it.
pub const CI_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Redis as CI runs it.
pub const CI_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// True under CI.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn configured(test: &str, var: &str, ci_default: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if ci() => Some(ci_default.to_owned()),
        _ => {
            eprintln!("skipped {test}: set {var} (e.g. {ci_default}) or CI=true to run it");
            None
        }
    }
}

/// The PostgreSQL URL to test against, or `None` after printing why the test is skipped.
pub fn postgres_url(test: &str) -> Option<String> {
    configured(test, "PAIRDB_TEST_POSTGRES_URL", CI_POSTGRES_URL)
}

/// The Redis URL to test against, or `None` after printing why the test is skipped. Panics when
/// it is configured but does not answer.
pub fn redis_url(test: &str) -> Option<String> {
    let url = configured(test, "PAIRDB_TEST_REDIS_URL", CI_REDIS_URL)?;
    let client = redis::Client::open(url.as_str()).expect("a valid redis url");
    let mut conn = client
        .get_connection_with_timeout(std::time::Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("redis at {url} is configured for these tests but: {e}"));
    let _: String = redis::cmd("PING").query(&mut conn).expect("redis PING");
    Some(url)
}

/// A name no other test (in this or another process) uses: `{prefix}_{pid}_{n}_{nanos}`.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A schema private to one test, dropped with this value. `url` reaches it through
/// `search_path`, so a store opened on it creates and finds its tables there.
pub struct PgSchema {
    admin_url: String,
    /// The schema's name.
    pub schema: String,
    /// `admin_url` with the schema as search path.
    pub url: String,
}

impl PgSchema {
    /// Creates a fresh schema; panics when the server does not answer (it was configured).
    pub fn create(admin_url: &str) -> PgSchema {
        let mut client =
            postgres::Client::connect(admin_url, postgres::NoTls).unwrap_or_else(|e| {
                panic!("postgres at {admin_url} is configured for these tests but: {e}")
            });
        let schema = unique("pairdb_test");
        client.batch_execute(&format!("CREATE SCHEMA {schema}")).expect("create test schema");
        let sep = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{sep}options=-csearch_path%3D{schema}");
        PgSchema { admin_url: admin_url.to_owned(), schema, url }
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.admin_url, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        }
    }
}
