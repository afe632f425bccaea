//! The Firecracker-compatible API: HTTP on a Unix socket, served by an API thread; requests
//! run on the event-loop thread, which owns the controller.
//!
//! A request crosses the threads in five steps:
//! 1. the API thread ([`start`], seccomp filter `api`) reads it ([`http::serve`]);
//! 2. [`routes::parse`] turns method, path and body into an [`ApiRequest`] (a
//!    [`routes::RouteError`] is answered 400 here, without waking the event loop);
//! 3. the request and a reply channel go over an mpsc channel, and an eventfd wakes the
//!    event loop;
//! 4. on the event-loop thread (seccomp filter `vmm` once the VM runs), [`ApiHandler`] runs
//!    [`execute`] against the [`Controller`];
//! 5. the [`Response`] goes back over the reply channel and the API thread writes it.
//!
//! Errors stay typed ([`ControllerError`], [`routes::RouteError`]) until [`bad_request`]
//! turns them into `400 {"fault_message": "..."}`: the only place that does.

pub mod http;
pub mod routes;

use crate::controller::{Controller, ControllerError};
use crate::metrics::METRICS;
use crate::sync::lock;
use event_manager::{EventOps, Events, MutEventSubscriber};
use http::Response;
use routes::ApiRequest;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

type Job = (ApiRequest, Sender<Response>);

/// The answer to a refused request: 400 with the error's message as `fault_message`.
pub fn bad_request(e: &dyn std::error::Error) -> Response {
    Response::fault(400, &e.to_string())
}

/// Runs one request against the controller.
pub fn execute(c: &mut Controller, req: ApiRequest) -> Response {
    let r: Result<(), ControllerError> = match req {
        ApiRequest::GetInfo => return Response::json(&c.info()),
        ApiRequest::GetVersion => {
            return Response::json(&serde_json::json!({
                "firecracker_version": env!("CARGO_PKG_VERSION")
            }))
        }
        ApiRequest::GetMachineConfig => return Response::json(c.machine_config()),
        ApiRequest::GetVmConfig => return Response::json(&c.vm_config()),
        ApiRequest::PutMachineConfig(m) => c.put_machine_config(m),
        ApiRequest::PatchMachineConfig(m) => c.patch_machine_config(m),
        ApiRequest::PutBootSource(b) => c.put_boot_source(b),
        ApiRequest::PutLogger(l) => c.put_logger(l),
        ApiRequest::PutMetrics(m) => c.put_metrics(m),
        ApiRequest::Action(a) => c.action(a.action_type),
        ApiRequest::PutSerial(s) => c.put_serial(s),
        ApiRequest::PutDrive(id, d) => c.put_drive(&id, d),
        ApiRequest::PatchDrive(id, u) => c.patch_drive(&id, u),
        ApiRequest::PutNet(id, n) => c.put_net(&id, n),
        ApiRequest::PatchNet(id, u) => c.patch_net(&id, u),
        ApiRequest::PutVsock(v) => c.put_vsock(v),
        ApiRequest::PutEntropy(e) => c.put_entropy(e),
    };
    match r {
        Ok(()) => Response::no_content(),
        Err(e) => bad_request(&e),
    }
}

/// Event-loop side of the API: executes jobs the API thread queued.
pub struct ApiHandler {
    rx: Receiver<Job>,
    evt: EventFd,
    controller: Arc<Mutex<Controller>>,
}

impl MutEventSubscriber for ApiHandler {
    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.evt.read();
        while let Ok((req, reply)) = self.rx.try_recv() {
            let resp = execute(&mut lock(&self.controller), req);
            let _ = reply.send(resp);
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.evt, EventSet::IN)) {
            tracing::error!("cannot watch the API eventfd: {e:?}");
        }
    }
}

/// Binds `path` and starts the API thread (request bodies up to `max_payload` bytes);
/// returns the event-loop handler.
pub fn start(
    path: &Path,
    controller: Arc<Mutex<Controller>>,
    max_payload: usize,
) -> std::io::Result<ApiHandler> {
    let listener = UnixListener::bind(path)?;
    let evt = EventFd::new(libc::EFD_NONBLOCK)?;
    let wake = evt.try_clone()?;
    let (tx, rx) = channel::<Job>();
    std::thread::Builder::new()
        .name("api".into())
        .stack_size(256 << 10)
        .spawn(move || {
            if let Err(e) = crate::seccomp::apply(crate::seccomp::ThreadKind::Api) {
                tracing::error!("API thread: {e}");
                return;
            }
            http::serve(listener, max_payload, |method, path, body| {
                METRICS.api_requests.fetch_add(1, Ordering::Relaxed);
                let resp = match routes::parse(method, path, body) {
                    Ok(req) => dispatch(&tx, &wake, req),
                    Err(e) => bad_request(&e),
                };
                if resp.status >= 400 {
                    METRICS.api_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        "API {method} {path}: {}",
                        resp.body.as_deref().unwrap_or("")
                    );
                }
                resp
            })
        })?;
    Ok(ApiHandler {
        rx,
        evt,
        controller,
    })
}

fn dispatch(tx: &Sender<Job>, wake: &EventFd, req: ApiRequest) -> Response {
    let (rtx, rrx) = channel();
    if tx.send((req, rtx)).is_err() || wake.write(1).is_err() {
        return Response::fault(500, "the vmm event loop is gone");
    }
    rrx.recv()
        .unwrap_or_else(|_| Response::fault(500, "the vmm event loop dropped the request"))
}
