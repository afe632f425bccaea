//! The vmm process: flags, logger, metrics, API or config file, and the event loop.

use crate::cli::Cli;
use crate::config::VmConfigFile;
use crate::controller::{Controller, SerialSink};
use crate::device_manager::Subscriber;
use crate::sync::lock;
use crate::vstate::exit::ExitNotifier;
use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::terminal::Terminal;
use vmm_sys_util::timerfd::TimerFd;

/// Watches the exit eventfd.
struct ExitWatch(ExitNotifier);

impl MutEventSubscriber for ExitWatch {
    fn process(&mut self, _e: Events, _ops: &mut EventOps) {
        let _ = self.0.event().read();
    }
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(self.0.event(), EventSet::IN)) {
            tracing::error!("cannot watch the exit eventfd: {e:?}");
        }
    }
}

/// Writes a metrics line every period.
struct MetricsTimer(TimerFd);

impl MutEventSubscriber for MetricsTimer {
    fn process(&mut self, _e: Events, _ops: &mut EventOps) {
        let _ = self.0.wait();
        crate::metrics::flush();
    }
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.0, EventSet::IN)) {
            tracing::error!("cannot watch the metrics timer: {e:?}");
        }
    }
}

fn fail(msg: &str) -> i32 {
    tracing::error!("{msg}");
    eprintln!("vmm: {msg}");
    1
}

/// Runs the vmm; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    let level = match crate::logger::parse_level(&cli.level) {
        Ok(l) => l,
        Err(e) => return fail(&e.to_string()),
    };
    if let Some(n) = cli.serial_out_limit {
        crate::output_limit::SERIAL.set_limit(n);
    }
    if let Some(n) = cli.log_limit {
        crate::output_limit::LOG.set_limit(n);
    }
    if let Err(e) = crate::logger::init(level, cli.log_path.as_deref()) {
        return fail(&e.to_string());
    }
    if let Some(p) = &cli.metrics_path {
        if let Err(e) = crate::metrics::init(p) {
            return fail(&e.to_string());
        }
    }
    if let Err(e) = crate::seccomp::configure(cli.no_seccomp, cli.seccomp_filter.as_deref()) {
        return fail(&e.to_string());
    }
    let exit = match ExitNotifier::new() {
        Ok(e) => e,
        Err(e) => return fail(&format!("cannot create eventfd: {e}")),
    };
    let serial = cli
        .serial_out
        .clone()
        .map(SerialSink::Path)
        .unwrap_or_default();
    let read_stdin = !cli.no_serial_input;
    let controller = Arc::new(Mutex::new(Controller::new(
        cli.id.clone(),
        serial,
        exit.clone(),
        read_stdin,
    )));
    let mut em = match EventManager::<Subscriber>::new() {
        Ok(em) => em,
        Err(e) => return fail(&format!("cannot create the event loop: {e:?}")),
    };
    em.add_subscriber(Arc::new(Mutex::new(ExitWatch(exit.clone()))));
    match crate::signals::SignalWatch::new(exit.clone()) {
        Ok(w) => {
            em.add_subscriber(Arc::new(Mutex::new(w)));
        }
        Err(e) => tracing::warn!("termination signals not handled: {e}"),
    }
    match TimerFd::new().and_then(|mut t| {
        let p = Duration::from_secs(cli.metrics_interval.max(1));
        t.reset(p, Some(p)).map(|_| t)
    }) {
        Ok(t) => {
            em.add_subscriber(Arc::new(Mutex::new(MetricsTimer(t))));
        }
        Err(e) => tracing::warn!("no periodic metrics: {e}"),
    }

    if let Some(path) = &cli.config_file {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => return fail(&format!("cannot read config file {}: {e}", path.display())),
        };
        let config = match VmConfigFile::parse(&text) {
            Ok(c) => c,
            Err(e) => return fail(&e.to_string()),
        };
        if let Err(e) = lock(&controller).apply_config_file(config) {
            return fail(&e.to_string());
        }
    }
    let api_sock = (!cli.no_api).then(|| cli.api_sock.clone());
    if let Some(p) = &api_sock {
        match crate::api::start(p, controller.clone(), cli.http_api_max_payload_size) {
            Ok(h) => {
                em.add_subscriber(Arc::new(Mutex::new(h)));
                tracing::info!("API listening on {}", p.display());
            }
            Err(e) => return fail(&format!("cannot listen on {}: {e}", p.display())),
        }
    }
    if cli.config_file.is_some() {
        let started = lock(&controller).start();
        if let Err(e) = started {
            cleanup(api_sock.as_deref(), false);
            return fail(&e.to_string());
        }
    }
    let raw = read_stdin
        && std::io::IsTerminal::is_terminal(&std::io::stdin())
        && std::io::stdin().lock().set_raw_mode().is_ok();
    let code = event_loop(&mut em, &controller, &exit);
    lock(&controller).shutdown();
    cleanup(api_sock.as_deref(), raw);
    code
}

fn event_loop(
    em: &mut EventManager<Subscriber>,
    controller: &Arc<Mutex<Controller>>,
    exit: &ExitNotifier,
) -> i32 {
    loop {
        let subs = lock(controller).take_subscribers();
        for s in subs {
            em.add_subscriber(s);
        }
        if exit.requested() {
            return exit.code();
        }
        if let Err(e) = em.run() {
            return fail(&format!("event loop failed: {e:?}"));
        }
    }
}

fn cleanup(api_sock: Option<&std::path::Path>, restore_tty: bool) {
    crate::metrics::flush();
    if restore_tty {
        let _ = std::io::stdin().lock().set_canon_mode();
    }
    if let Some(p) = api_sock {
        let _ = std::fs::remove_file(p);
    }
}
