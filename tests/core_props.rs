//! Property tests of the version winner rule over whole histories.
//!
//! `core::version::newest` is applied by storage nodes to writes in whatever order they arrive
//! and by coordinators to replies in whatever order they arrive. If folding it over the same set
//! of versions could end in different versions for different orders, replicas would diverge
//! for good. These tests generate histories of writes and check that every order ends the same.
//!
//! That holds only when timestamps respect causality: a write's `timestamp_us` must exceed those
//! of the versions it descends from and of its writer's previous write (a hybrid logical clock),
//! which is how [`history`] stamps them. Without it, order matters. With `a = {x:1} @30`,
//! `b = {y:1} @20` and `c = {x:1, z:1} @10` (`c` read `a`, but its coordinator's clock is
//! behind), applying a, b, c keeps `a`'s value and a, c, b keeps `b`'s, both under the clock
//! `{x:1, y:1, z:1}`; since `newest` keeps the stored version on equal clocks, those two replicas
//! never converge. The write path must stamp timestamps accordingly.

use bytes::Bytes;
use proptest::prelude::*;

use pairdb::core::vclock::VClock;
use pairdb::core::version::{newest, Version};

/// Actors (coordinator cores) that write in a generated history.
const ACTORS: usize = 3;
/// Longest generated history; the `seen` bitmask below has one bit per earlier write.
const MAX_WRITES: usize = 8;

/// One write of a generated history.
#[derive(Clone, Debug)]
struct Step {
    /// Index of the writing actor.
    writer: usize,
    /// Bit `j` set: this write read write `j` (when `j` is earlier) and descends from it.
    seen: u8,
    /// How far the write's timestamp is past everything it descends from.
    tick_us: i64,
    value: u8,
    tombstone: bool,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = (0..ACTORS, any::<u8>(), 1..4i64, 0..3u8, any::<bool>()).prop_map(
        |(writer, seen, tick_us, value, tombstone)| Step {
            writer,
            seen,
            tick_us,
            value,
            tombstone,
        },
    );
    proptest::collection::vec(step, 1..=MAX_WRITES)
}

/// Turns steps into versions the way coordinators write them: the clock is the merge of what the
/// write read, incremented by the writer past any counter it used before; the timestamp is past
/// both the versions read and the writer's own previous write (a hybrid logical clock).
fn history(steps: &[Step]) -> Vec<Version> {
    let mut versions: Vec<Version> = Vec::with_capacity(steps.len());
    let mut last_counter = [0u64; ACTORS];
    let mut last_timestamp_us = [0i64; ACTORS];
    for (i, step) in steps.iter().enumerate() {
        let actor = format!("coord-{}/0", step.writer);
        let mut clock = VClock::new();
        let mut timestamp_us = last_timestamp_us[step.writer];
        for (j, read) in versions.iter().enumerate().take(i) {
            if step.seen & (1 << j) != 0 {
                clock.merge(&read.clock);
                timestamp_us = timestamp_us.max(read.timestamp_us);
            }
        }
        last_counter[step.writer] = clock.increment(&actor, last_counter[step.writer]);
        timestamp_us += step.tick_us;
        last_timestamp_us[step.writer] = timestamp_us;
        versions.push(Version {
            value: if step.tombstone { Bytes::new() } else { Bytes::from(vec![step.value]) },
            clock,
            timestamp_us,
            writer: actor,
            tombstone: step.tombstone,
        });
    }
    versions
}

fn fold(versions: &[Version], order: &[usize]) -> Version {
    let (first, rest) = order.split_first().expect("histories have at least one write");
    rest.iter().fold(versions[*first].clone(), |acc, &i| newest(&acc, &versions[i]))
}

/// A history and an order to apply it in.
fn history_and_order() -> impl Strategy<Value = (Vec<Version>, Vec<usize>)> {
    steps().prop_flat_map(|steps| {
        let versions = history(&steps);
        let order = Just((0..versions.len()).collect::<Vec<_>>()).prop_shuffle();
        (Just(versions), order)
    })
}

proptest! {
    #[test]
    fn newest_is_independent_of_arrival_order((versions, order) in history_and_order()) {
        let in_write_order: Vec<usize> = (0..versions.len()).collect();
        let expected = fold(&versions, &in_write_order);
        prop_assert_eq!(fold(&versions, &order), expected.clone());

        // And the result is the winner by (timestamp, writer, ...) under the merge of all clocks.
        let winner = versions.iter().max_by(|a, b| a.winner_order(b)).unwrap();
        let mut clock = VClock::new();
        for v in &versions {
            clock.merge(&v.clock);
        }
        prop_assert_eq!(expected, Version { clock, ..winner.clone() });
    }
}
