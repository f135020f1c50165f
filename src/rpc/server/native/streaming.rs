//! Streaming calls on the native layer: the state a streaming handler shares with its
//! connection task (messages in, replies out, cancellation), and the handler's side of it.

use std::{
    cell::RefCell,
    collections::VecDeque,
    future::poll_fn,
    rc::Rc,
    task::{Poll, Waker},
    time::Duration,
};

use bytes::Bytes;

use crate::rpc::status::Status;

/// Reply messages a streaming handler may have waiting for its connection (a client that does
/// not read its replies makes `send_message` fail beyond this).
const MAX_OUTBOX: usize = 256;

/// The state a streaming handler shares with its connection task.
#[derive(Default)]
pub(crate) struct StreamShared {
    pub(super) inbox: VecDeque<Result<Bytes, Status>>,
    pub(super) ended: bool,
    pub(super) cancelled: bool,
    pub(super) finished: bool,
    pub(super) headers_sent: bool,
    pub(super) reader: Option<Waker>,
    pub(super) outbox: VecDeque<Outgoing>,
}

pub(super) enum Outgoing {
    Message(Bytes),
    Finish(Status),
}

impl StreamShared {
    pub(super) fn deliver(&mut self, item: Result<Bytes, Status>) {
        self.inbox.push_back(item);
        self.wake_reader();
    }

    pub(super) fn wake_reader(&mut self) {
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }
}

/// A streaming handler's side of its call.
pub(crate) struct StreamHandle {
    shared: Rc<RefCell<StreamShared>>,
    conn_waker: Rc<RefCell<Option<Waker>>>,
}

impl StreamHandle {
    pub(super) fn new(
        shared: Rc<RefCell<StreamShared>>,
        conn_waker: Rc<RefCell<Option<Waker>>>,
    ) -> StreamHandle {
        StreamHandle { shared, conn_waker }
    }

    fn wake_conn(&self) {
        if let Some(w) = self.conn_waker.borrow().as_ref() {
            w.wake_by_ref();
        }
    }

    pub(crate) async fn next_message(&mut self) -> Result<Option<Bytes>, Status> {
        poll_fn(|cx| {
            let mut s = self.shared.borrow_mut();
            if let Some(item) = s.inbox.pop_front() {
                return Poll::Ready(item.map(Some));
            }
            if s.cancelled {
                return Poll::Ready(Err(Status::cancelled("client reset the stream")));
            }
            if s.ended {
                return Poll::Ready(Ok(None));
            }
            s.reader = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    pub(crate) fn send(&mut self, framed: Bytes) -> Result<(), Status> {
        {
            let mut s = self.shared.borrow_mut();
            if s.cancelled {
                return Err(Status::cancelled("client went away"));
            }
            if s.outbox.len() >= MAX_OUTBOX {
                return Err(Status::resource_exhausted(
                    "the client is not reading this stream's replies",
                ));
            }
            s.outbox.push_back(Outgoing::Message(framed));
        }
        self.wake_conn();
        Ok(())
    }

    pub(crate) async fn wait_cancelled_or(&mut self, period: Duration) -> bool {
        let cancelled = poll_fn(|cx| {
            let mut s = self.shared.borrow_mut();
            if s.cancelled {
                return Poll::Ready(true);
            }
            s.reader = Some(cx.waker().clone());
            Poll::Pending
        });
        futures_lite::future::or(cancelled, async {
            glommio::timer::sleep(period).await;
            false
        })
        .await
    }

    pub(crate) fn finish(self, status: Status) {
        self.shared.borrow_mut().outbox.push_back(Outgoing::Finish(status));
        self.wake_conn();
    }
}
