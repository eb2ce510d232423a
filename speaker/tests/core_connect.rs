//! What a speaker says when it cannot reach a peer, and how it treats connections from
//! addresses that are no peer's: sans-IO, the log captured.

use speaker::core::{Core, Input, Output};
use speaker::{PeerConfig, SpeakerConfig};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The log lines written while `f` runs.
fn logged(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let w = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(sub, f);
    let out = buf.0.lock().unwrap().clone();
    String::from_utf8(out).unwrap()
}

fn dial(c: &mut Core, out: &[Output]) -> Option<speaker::core::ConnId> {
    let _ = c;
    out.iter().find_map(|o| match o {
        Output::Connect { conn, .. } => Some(*conn),
        _ => None,
    })
}

#[test]
fn a_peer_that_cannot_be_reached_says_why_once() {
    let mut c = Core::new(SpeakerConfig::new(64512, "10.0.0.1".parse().unwrap())).unwrap();
    let t0 = Instant::now();
    let mut out = c.handle(
        Input::AddPeer(PeerConfig::new("10.0.0.2".parse().unwrap(), 64512)),
        t0,
    );
    let log = logged(|| {
        // Three attempts, each failing the same way, as the retry timer brings them.
        for i in 0..3 {
            let now = t0 + Duration::from_secs(10 * i);
            let conn = match dial(&mut c, &out) {
                Some(conn) => conn,
                None => {
                    let timer = out.iter().find_map(|o| match o {
                        Output::SetTimer {
                            peer,
                            key,
                            after: Some(_),
                        } => Some((*peer, *key)),
                        _ => None,
                    });
                    let (peer, key) = timer.expect("a retry timer is armed");
                    out = c.handle(Input::Timer { peer, key }, now);
                    dial(&mut c, &out).expect("the retry dials")
                }
            };
            out = c.handle(
                Input::ConnectFailed {
                    conn,
                    error: "No route to host (os error 113)".into(),
                },
                now,
            );
        }
    });
    let s = c.snapshot(t0 + Duration::from_secs(30));
    assert_eq!(
        s[0].last_error.as_deref(),
        Some("connect: No route to host (os error 113)"),
        "twill status shows why"
    );
    assert_eq!(
        log.matches("cannot connect").count(),
        1,
        "said once while it stays the same:\n{log}"
    );
    assert!(log.contains("No route to host"), "{log}");
}

#[test]
fn connections_from_unknown_addresses_are_counted_and_logged_once_a_minute() {
    let mut c = Core::new(SpeakerConfig::new(64512, "10.0.0.1".parse().unwrap())).unwrap();
    let t0 = Instant::now();
    let log = logged(|| {
        for i in 0..200u32 {
            let conn = c.alloc_conn();
            let out = c.handle(
                Input::Incoming {
                    conn,
                    remote: format!("10.9.0.{}:40000", i % 250 + 1).parse().unwrap(),
                    local: "10.0.0.1:179".parse().unwrap(),
                },
                t0 + Duration::from_millis(u64::from(i) * 100),
            );
            assert!(out
                .iter()
                .any(|o| matches!(o, Output::Close { conn: x } if *x == conn)));
        }
    });
    assert_eq!(c.refused_connections(), 200);
    // 200 connections over 20 s: the first one logged, the rest counted.
    assert_eq!(log.matches("not a configured peer").count(), 1, "{log}");
    // A minute later the next one is logged, with the count since.
    let log = logged(|| {
        let conn = c.alloc_conn();
        c.handle(
            Input::Incoming {
                conn,
                remote: "10.9.1.1:40000".parse().unwrap(),
                local: "10.0.0.1:179".parse().unwrap(),
            },
            t0 + Duration::from_secs(90),
        );
    });
    assert!(log.contains("refused=200"), "{log}");
    assert_eq!(c.refused_connections(), 201);
}
