//! A tokio runtime whose threads live in a network namespace, for driving felix-lite and the
//! fabric (they open netlink sockets in whatever namespace the polling thread is in).

use crate::netns::{enter, Netns};
use std::future::Future;

pub struct NsRuntime {
    rt: Option<tokio::runtime::Runtime>,
}

/// A multi-thread runtime whose `workers` threads live in `ns` and carry `name` (what
/// `/proc/self/task/*/comm` shows, for reading their CPU time). Worker threads are spawned
/// while building and inherit the builder thread's namespace.
pub fn runtime_in(ns: &Netns, name: &'static str, workers: usize) -> tokio::runtime::Runtime {
    let path = ns.path();
    std::thread::spawn(move || {
        enter(&path).expect("setns");
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .max_blocking_threads(1)
            .thread_name(name)
            .enable_all()
            .build()
            .expect("runtime")
    })
    .join()
    .expect("runtime thread")
}

impl NsRuntime {
    pub fn new(ns: &Netns) -> NsRuntime {
        NsRuntime {
            rt: Some(runtime_in(ns, "tokio-runtime-worker", 1)),
        }
    }

    /// Run `f` on the namespace's threads and wait for its result.
    pub fn run<F>(&self, f: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let rt = self.rt.as_ref().expect("runtime");
        rt.block_on(rt.spawn(f)).expect("task panicked")
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
        }
    }
}
