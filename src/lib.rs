//! PairDB: a Dynamo-style, multi-tenant key-value store.

pub mod proto;
