//! `grpc.health.v1.Health`: the standard health service, so that load balancers, Kubernetes
//! probes and `grpc_health_probe` work without knowing PairDB.
//!
//! One [`HealthState`] per process, shared by all cores (an atomic, read on each check). The empty
//! service name means the whole server; the names of the services this server hosts answer the
//! same status; any other name is NOT_FOUND, as the protocol says.

use std::{
    rc::Rc,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use crate::{
    proto::health::{
        health_check_response::ServingStatus, HealthCheckRequest, HealthCheckResponse,
    },
    rpc::{
        server::{CallContext, Router, StreamingCall},
        status::Status,
    },
};

/// Whether this process serves. Cloned into every core.
///
/// Two inputs: shutdown (`set_serving(false)`, final) and readiness (`set_ready`, maintained by
/// the role: a coordinator is ready while its metadata store answers and enough storage nodes
/// are up for a quorum). SERVING needs both. The same state answers `/health/ready` on the admin
/// port, so the gRPC and HTTP views never disagree.
#[derive(Clone, Debug)]
pub struct HealthState {
    serving: Arc<AtomicBool>,
    ready: Arc<AtomicBool>,
    /// Why the process is not ready, for `/health/ready` (written only when readiness changes).
    reason: Arc<Mutex<String>>,
}

impl Default for HealthState {
    fn default() -> Self {
        Self {
            serving: Arc::new(AtomicBool::new(true)),
            ready: Arc::new(AtomicBool::new(true)),
            reason: Arc::new(Mutex::new(String::new())),
        }
    }
}

impl HealthState {
    /// Marks the server SERVING (true) or NOT_SERVING (false), for every core at once.
    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Release);
    }

    /// Sets readiness; `reason` says why not (ignored when ready).
    pub fn set_ready(&self, ready: bool, reason: &str) {
        if !ready {
            *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = reason.to_owned();
        }
        self.ready.store(ready, Ordering::Release);
    }

    /// True when serving and ready.
    pub fn is_ready(&self) -> bool {
        self.serving.load(Ordering::Acquire) && self.ready.load(Ordering::Acquire)
    }

    /// True once shutdown began.
    pub fn is_shutting_down(&self) -> bool {
        !self.serving.load(Ordering::Acquire)
    }

    /// Why [`HealthState::is_ready`] is false.
    pub fn not_ready_reason(&self) -> String {
        if !self.serving.load(Ordering::Acquire) {
            return "shutting down".into();
        }
        self.reason.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The current status.
    pub fn status(&self) -> ServingStatus {
        if self.is_ready() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        }
    }
}

/// How often a `Watch` stream re-reads the status.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// Adds `Check` and `Watch` for the services already on `router` to it.
pub fn add(router: Router, state: HealthState) -> Router {
    let known: Rc<Vec<String>> = Rc::new(router.services());
    let check_known = known.clone();
    let check_state = state.clone();
    router
        .unary("/grpc.health.v1.Health/Check", move |req: HealthCheckRequest, _ctx: CallContext| {
            let result = status_for(&check_known, &check_state, &req.service);
            async move { result.map(|status| HealthCheckResponse { status: status as i32 }) }
        })
        .streaming("/grpc.health.v1.Health/Watch", move |mut call: StreamingCall| {
            let known = known.clone();
            let state = state.clone();
            async move {
                let req = match call.next_message().await {
                    Ok(Some(bytes)) => match prost::Message::decode(bytes) {
                        Ok(req) => req,
                        Err(e) => {
                            return call.finish(Status::invalid_argument(format!(
                                "bad HealthCheckRequest: {e}"
                            )))
                        }
                    },
                    Ok(None) => {
                        return call.finish(Status::invalid_argument("Watch needs a request"))
                    }
                    Err(status) => return call.finish(status),
                };
                let HealthCheckRequest { service } = req;
                let mut last = None;
                loop {
                    let status = match status_for(&known, &state, &service) {
                        Ok(s) => s,
                        // Watch reports unknown services as SERVICE_UNKNOWN instead of failing.
                        Err(_) => ServingStatus::ServiceUnknown,
                    };
                    if last != Some(status) {
                        if call
                            .send_message(&HealthCheckResponse { status: status as i32 })
                            .is_err()
                        {
                            return;
                        }
                        last = Some(status);
                    }
                    if status == ServingStatus::NotServing && state.is_shutting_down() {
                        // Shutting down: end the stream so that draining connections can close.
                        return call.finish(Status::new(crate::rpc::Code::OK, ""));
                    }
                    if call.wait_cancelled_or(WATCH_INTERVAL).await {
                        return;
                    }
                }
            }
        })
}

fn status_for(
    known: &[String],
    state: &HealthState,
    service: &str,
) -> Result<ServingStatus, Status> {
    if service.is_empty() || known.iter().any(|s| s == service) {
        Ok(state.status())
    } else {
        Err(crate::error::PairError::ServiceNotFound(format!("unknown service {service:?}")).into())
    }
}
