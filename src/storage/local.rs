//! Storage nodes served by this process, reachable from the same core without the network.
//!
//! When a coordinator and a storage node live in one process (`pairdb dev`), a coordinator core
//! would otherwise send each `Batch` to the node over loopback TCP and HTTP/2 and have the same
//! core, or its neighbour, read it back: per operation, a send and a receive system call on each
//! side, HPACK and protobuf both ways and at least one executor wake-up per hop. At light load,
//! where every batch carries one operation, that was most of an operation's CPU time
//! (docs/PERFORMANCE.md, "Local replicas"). Cassandra and ScyllaDB make the same shortcut for a
//! replica that is the coordinator itself: the operation runs locally and only remote replicas
//! cross the network.
//!
//! Each core's storage server registers its service here while it serves
//! ([`StorageNode::serve_core`](crate::storage::node::StorageNode::serve_core)); a coordinator
//! link on the same core looks the node's address up before each `Batch` and, when found, calls
//! the service directly with the request as it is, never encoded. What stays the same: the
//! service's own validation and limits, its per-core RPC metrics (`pairdb_rpc_*` count the call
//! under the Batch method), the link's per-replica deadline, failure handling and hints. What the
//! local path skips: the node's bearer check (`cluster_secret`) and TLS, which guard a network
//! boundary that this call does not cross. Every other RPC (health checks, scans, migration)
//! still goes over the network, so a node that stops serving is seen the usual way.

use std::{cell::RefCell, net::SocketAddr, rc::Rc, sync::Arc, time::Instant};

use crate::{
    proto::storage::{BatchRequest, BatchResponse},
    rpc::{metrics::RpcMetrics, Status},
    storage::service::{StorageService, BATCH_PATH},
};

struct LocalNode {
    addr: SocketAddr,
    service: Arc<StorageService>,
    metrics: Rc<RpcMetrics>,
}

thread_local! {
    /// This core's storage nodes; a handful at most, so a list.
    static NODES: RefCell<Vec<LocalNode>> = const { RefCell::new(Vec::new()) };
}

/// Keeps a node reachable on this core until dropped.
pub struct Registration {
    addr: SocketAddr,
}

impl Drop for Registration {
    fn drop(&mut self) {
        NODES.with(|n| n.borrow_mut().retain(|node| node.addr != self.addr));
    }
}

/// Makes the node serving on `addr` reachable from this core's coordinator links until the
/// returned guard drops.
pub fn register(
    addr: SocketAddr,
    service: Arc<StorageService>,
    metrics: Rc<RpcMetrics>,
) -> Registration {
    NODES.with(|n| {
        let mut nodes = n.borrow_mut();
        nodes.retain(|node| node.addr != addr);
        nodes.push(LocalNode { addr, service, metrics });
    });
    Registration { addr }
}

/// A node on `addr` that this core serves, if any.
pub fn lookup(addr: SocketAddr) -> Option<LocalBatcher> {
    NODES.with(|n| {
        n.borrow().iter().find(|node| node.addr == addr).map(|node| LocalBatcher {
            service: node.service.clone(),
            metrics: node.metrics.clone(),
        })
    })
}

/// A handle for one local call.
pub struct LocalBatcher {
    service: Arc<StorageService>,
    metrics: Rc<RpcMetrics>,
}

impl LocalBatcher {
    /// Runs `req` on the node, counted in the node's RPC metrics as a `Batch` call.
    pub async fn batch(self, req: BatchRequest) -> Result<BatchResponse, Status> {
        let in_flight = self.metrics.start();
        let started: Instant = in_flight.started();
        let result = self.service.clone().batch(req).await;
        let code = match &result {
            Ok(_) => crate::rpc::Code::OK,
            Err(status) => status.code,
        };
        self.metrics.finish(BATCH_PATH, code, started.elapsed());
        drop(in_flight);
        result
    }
}
