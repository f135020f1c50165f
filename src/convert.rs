//! Conversions between the core's [`Version`] / [`VClock`] and their protobuf forms in
//! `proto::storage` and `proto::coordinator`.
//!
//! Direction matters. Core to proto cannot fail. Proto to core is input from a client or a peer,
//! so it is checked: a negative counter or an empty actor id is a typed [`ConvertError`], never a
//! silent clamp, because accepting it would let one bad request corrupt every replica's clock.
//! Zero counters and duplicate actors are not errors: [`VClock::from_entries`] already drops the
//! first and keeps the largest of the second, which is what the clock means.
//!
//! Core counters are `u64` and the wire's are `i64`; a counter above `i64::MAX` (only reachable by
//! 2^63 writes from one actor) is sent as `i64::MAX`.

use crate::core::vclock::VClock;
use crate::core::version::Version;
use crate::proto::{coordinator, storage};
use crate::rpc::{Code, Status};

/// A failed operation of a storage `Batch` on the wire: its status, `pairdb-error-code` included,
/// so that the coordinator sees the node's error as the node named it.
pub fn operation_error(status: &Status) -> storage::OperationError {
    storage::OperationError {
        code: status.code.0,
        message: status.to_string(),
        error_code: status.error_code.as_deref().unwrap_or_default().to_owned(),
    }
}

/// The status of a failed `Batch` operation, as [`operation_error`] sent it.
pub fn operation_status(e: storage::OperationError) -> Status {
    let mut status = Status::new(Code(e.code), e.message);
    if !e.error_code.is_empty() {
        status.error_code = Some(e.error_code.into());
    }
    status
}

/// A protobuf clock or version that does not describe a valid core value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// A clock entry has a counter below zero.
    #[error("vector clock entry for {actor:?} has negative counter {counter}")]
    NegativeCounter {
        /// The entry's actor id.
        actor: String,
        /// The counter as received.
        counter: i64,
    },
    /// A clock entry has an empty actor id.
    #[error("vector clock entry has an empty actor id")]
    EmptyActor,
}

impl TryFrom<&coordinator::VectorClock> for VClock {
    type Error = ConvertError;

    fn try_from(clock: &coordinator::VectorClock) -> Result<Self, Self::Error> {
        clock_from_pairs(
            clock.entries.iter().map(|e| (e.coordinator_node_id.as_str(), e.logical_timestamp)),
        )
    }
}

impl From<&VClock> for coordinator::VectorClock {
    fn from(clock: &VClock) -> Self {
        let entries = clock
            .entries()
            .iter()
            .map(|(actor, counter)| coordinator::VectorClockEntry {
                coordinator_node_id: actor.clone(),
                logical_timestamp: counter_to_wire(*counter),
            })
            .collect();
        Self { entries }
    }
}

impl TryFrom<&storage::VectorClock> for VClock {
    type Error = ConvertError;

    fn try_from(clock: &storage::VectorClock) -> Result<Self, Self::Error> {
        clock_from_pairs(
            clock.entries.iter().map(|e| (e.coordinator_node_id.as_str(), e.logical_timestamp)),
        )
    }
}

impl From<&VClock> for storage::VectorClock {
    fn from(clock: &VClock) -> Self {
        let entries = clock
            .entries()
            .iter()
            .map(|(actor, counter)| storage::VectorClockEntry {
                coordinator_node_id: actor.clone(),
                logical_timestamp: counter_to_wire(*counter),
            })
            .collect();
        Self { entries }
    }
}

impl TryFrom<&storage::Version> for Version {
    type Error = ConvertError;

    /// A missing `vector_clock` is read as the empty clock; whether an empty clock is acceptable
    /// is for the receiver (the storage engine rejects it) to decide.
    fn try_from(v: &storage::Version) -> Result<Self, Self::Error> {
        let clock = match &v.vector_clock {
            Some(c) => VClock::try_from(c)?,
            None => VClock::new(),
        };
        Ok(Self {
            value: v.value.clone(),
            clock,
            timestamp_us: v.timestamp,
            writer: v.writer.clone(),
            tombstone: v.tombstone,
        })
    }
}

impl From<&Version> for storage::Version {
    fn from(v: &Version) -> Self {
        Self {
            value: v.value.clone(),
            vector_clock: Some(storage::VectorClock::from(&v.clock)),
            timestamp: v.timestamp_us,
            writer: v.writer.clone(),
            tombstone: v.tombstone,
        }
    }
}

fn clock_from_pairs<'a, I>(pairs: I) -> Result<VClock, ConvertError>
where
    I: Iterator<Item = (&'a str, i64)>,
{
    let mut entries = Vec::with_capacity(pairs.size_hint().0);
    for (actor, counter) in pairs {
        if actor.is_empty() {
            return Err(ConvertError::EmptyActor);
        }
        let Ok(c) = u64::try_from(counter) else {
            return Err(ConvertError::NegativeCounter { actor: actor.to_owned(), counter });
        };
        entries.push((actor.to_owned(), c));
    }
    Ok(VClock::from_entries(entries))
}

fn counter_to_wire(counter: u64) -> i64 {
    i64::try_from(counter).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn batch_operation_errors_keep_their_error_code() {
        let status = Status::from(crate::error::PairError::StorageUnavailable("disk gone".into()));
        let back = operation_status(operation_error(&status));
        assert_eq!(back.code, Code::UNAVAILABLE);
        assert_eq!(back.error_code.as_deref(), Some("STORAGE_UNAVAILABLE"));
        assert!(back.message.contains("disk gone"), "{back}");
        let bare = operation_status(operation_error(&Status::internal("x")));
        assert_eq!(bare.error_code, None);
    }

    fn coord_clock(pairs: &[(&str, i64)]) -> coordinator::VectorClock {
        coordinator::VectorClock {
            entries: pairs
                .iter()
                .map(|(a, c)| coordinator::VectorClockEntry {
                    coordinator_node_id: a.to_string(),
                    logical_timestamp: *c,
                })
                .collect(),
        }
    }

    #[test]
    fn coordinator_clock_round_trips() {
        let clock = VClock::from_entries([("b".to_string(), 2), ("a".to_string(), 7)]);
        let wire = coordinator::VectorClock::from(&clock);
        assert_eq!(VClock::try_from(&wire), Ok(clock));
    }

    fn negative(actor: &str, counter: i64) -> ConvertError {
        ConvertError::NegativeCounter { actor: actor.into(), counter }
    }

    type Case = (&'static [(&'static str, i64)], Result<(), ConvertError>);

    #[test]
    fn coordinator_clock_rejects_bad_entries() {
        #[rustfmt::skip]
        let cases: &[Case] = &[
            (&[("a", 1)],            Ok(())),
            (&[("a", 0)],            Ok(())),
            (&[("a", -1)],           Err(negative("a", -1))),
            (&[("a", 1), ("", 3)],   Err(ConvertError::EmptyActor)),
        ];
        for (pairs, want) in cases {
            let got = VClock::try_from(&coord_clock(pairs)).map(|_| ());
            assert_eq!(&got, want, "{pairs:?}");
        }
    }

    #[test]
    fn storage_version_round_trips() {
        let v = Version {
            value: Bytes::from_static(b"v"),
            clock: VClock::from_entries([("c1/0".to_string(), 3)]),
            timestamp_us: 42,
            writer: "c1/0".into(),
            tombstone: false,
        };
        let wire = storage::Version::from(&v);
        assert_eq!(Version::try_from(&wire), Ok(v));
    }

    #[test]
    fn storage_version_rejects_negative_counter() {
        let wire = storage::Version {
            vector_clock: Some(storage::VectorClock {
                entries: vec![storage::VectorClockEntry {
                    coordinator_node_id: "x".into(),
                    logical_timestamp: -5,
                }],
            }),
            ..Default::default()
        };
        assert!(matches!(Version::try_from(&wire), Err(ConvertError::NegativeCounter { .. })));
    }

    #[test]
    fn huge_counter_saturates_on_the_wire() {
        let clock = VClock::from_entries([("a".to_string(), u64::MAX)]);
        assert_eq!(storage::VectorClock::from(&clock).entries[0].logical_timestamp, i64::MAX);
    }
}
