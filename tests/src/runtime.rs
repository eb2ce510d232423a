//! A tokio runtime whose threads live in a network namespace, for driving felix-lite and the
//! fabric (they open netlink sockets in whatever namespace the polling thread is in).

use crate::netns::{enter, Netns};
use std::future::Future;

pub struct NsRuntime {
    rt: Option<tokio::runtime::Runtime>,
}

impl NsRuntime {
    pub fn new(ns: &Netns) -> NsRuntime {
        let path = ns.path();
        // Worker threads are spawned while building and inherit the builder thread's namespace.
        let rt = std::thread::spawn(move || {
            enter(&path).expect("setns");
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .max_blocking_threads(1)
                .enable_all()
                .build()
                .expect("runtime")
        })
        .join()
        .expect("runtime thread");
        NsRuntime { rt: Some(rt) }
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
