//! The driver between a request's machine (`core::write::WriteRequest`,
//! `core::read::ReadRequest`) and the network: feed it replies and its one timer, stop at its
//! outcome ([`drive`]) or once every replica settled ([`settle`]). The timer is re-armed from
//! `poll_timeout` for each wait; nothing else here decides anything.

use std::{
    future::{poll_fn, Future},
    pin::pin,
    task::Poll,
    time::Instant,
};

use futures_util::{Stream, StreamExt};

use crate::{
    coordinator::{link::OpReply, metrics::ReplicaTimings},
    core::{ids::NodeId, read::ReadRequest, version::Version, write::WriteRequest},
    error::PairError,
    proto::storage::batch_result::Result as BatchOutcome,
    rpc::Status,
};

/// What happens to a request while it waits.
pub(crate) enum Event {
    Reply(NodeId, OpReply),
    Timeout(Instant),
}

/// A request machine as the driver sees it.
pub(crate) trait Pump {
    type Outcome;
    fn handle(&mut self, event: Event);
    fn poll_outcome(&mut self) -> Option<Self::Outcome>;
    fn poll_timeout(&self) -> Option<Instant>;
}

pub(crate) struct WritePump {
    pub(crate) write: WriteRequest,
    pub(crate) timings: ReplicaTimings,
}

impl Pump for WritePump {
    type Outcome = Result<crate::core::quorum::WriteOutcome, PairError>;
    fn handle(&mut self, event: Event) {
        match event {
            Event::Reply(node, Ok(_)) => {
                self.write.handle_ack(&node);
                self.timings.reply(node, true);
            }
            Event::Reply(node, Err(status)) => {
                self.write.handle_failure(&node, reason(&status));
                self.timings.reply(node, false);
            }
            Event::Timeout(now) => self.write.handle_timeout(now),
        }
    }
    fn poll_outcome(&mut self) -> Option<Self::Outcome> {
        self.write.poll_outcome()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.write.poll_timeout()
    }
}

pub(crate) struct ReadPump {
    pub(crate) read: ReadRequest,
    pub(crate) timings: ReplicaTimings,
}

impl Pump for ReadPump {
    type Outcome = Result<crate::core::quorum::ReadOutcome<Version>, PairError>;
    fn handle(&mut self, event: Event) {
        match event {
            Event::Reply(node, Ok(BatchOutcome::Read(r))) => {
                match r.version.as_ref().filter(|_| r.found).map(Version::try_from) {
                    None => self.read.handle_reply(&node, None),
                    Some(Ok(v)) => self.read.handle_reply(&node, Some(v)),
                    Some(Err(e)) => {
                        self.read.handle_failure(&node, format!("undecodable version: {e}"))
                    }
                }
                self.timings.reply(node, true);
            }
            Event::Reply(node, Ok(_)) => {
                self.read.handle_failure(&node, "unexpected reply to a read");
                self.timings.reply(node, false);
            }
            Event::Reply(node, Err(status)) => {
                self.read.handle_failure(&node, reason(&status));
                self.timings.reply(node, false);
            }
            Event::Timeout(now) => self.read.handle_timeout(now),
        }
    }
    fn poll_outcome(&mut self) -> Option<Self::Outcome> {
        self.read.poll_outcome()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.read.poll_timeout()
    }
}

/// A storage node's failure, short, for a quorum error's account of what was tried.
fn reason(status: &Status) -> String {
    match &status.error_code {
        Some(code) => format!("{code}: {}", status.message),
        None => format!("{}: {}", status.code.name(), status.message),
    }
}

/// Pumps `machine` with `replies` and its one timer until it yields its outcome. The timer is
/// re-armed only when `poll_timeout` changes.
pub(crate) async fn drive<P, S>(machine: &mut P, replies: &mut S) -> P::Outcome
where
    P: Pump,
    S: Stream<Item = (NodeId, OpReply)> + Unpin,
{
    loop {
        if let Some(outcome) = machine.poll_outcome() {
            return outcome;
        }
        // Unsettled until the outcome, so there is a timer; a machine without one has decided.
        let at = machine.poll_timeout().unwrap_or_else(Instant::now);
        next_event(machine, replies, at).await;
    }
}

/// Pumps `machine` until every replica has answered or timed out.
pub(crate) async fn settle<P, S>(machine: &mut P, replies: &mut S)
where
    P: Pump,
    S: Stream<Item = (NodeId, OpReply)> + Unpin,
{
    while let Some(at) = machine.poll_timeout() {
        next_event(machine, replies, at).await;
    }
}

/// Waits for the next reply or for `at`, and feeds it to `machine`.
async fn next_event<P, S>(machine: &mut P, replies: &mut S, at: Instant)
where
    P: Pump,
    S: Stream<Item = (NodeId, OpReply)> + Unpin,
{
    let mut timer = pin!(glommio::timer::sleep(at.saturating_duration_since(Instant::now())));
    let event = poll_fn(|cx| {
        if let Poll::Ready(item) = replies.poll_next_unpin(cx) {
            return Poll::Ready(match item {
                Some((node, reply)) => Event::Reply(node, reply),
                // Every reply is in: only the deadline is left.
                None => Event::Timeout(Instant::now().max(at)),
            });
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Event::Timeout(Instant::now().max(at)));
        }
        Poll::Pending
    })
    .await;
    machine.handle(event);
}
