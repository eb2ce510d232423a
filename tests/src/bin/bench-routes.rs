//! Benchmark (not a test): install 10,000 routes into a fresh namespace with felix-lite and, in
//! the same run, with `ip -batch` of the same routes into another fresh namespace; print both
//! times and the ratio. Then change one route among the 10,000 and print the time until the
//! kernel has acknowledged it.
//!
//! Goals (issue 3): felix-lite ≤ 1.2 × `ip -batch`; a single change < 10 ms.
//! Run: `cargo run --release -p twill-lab --bin bench-routes` as root (`BENCH_RUNS`, default 3).

use felix_lite::{Change, Config, Hop, Programmer, Route};
use ipnet::IpNet;
use std::time::{Duration, Instant};
use twill_lab::{Link, Netns, NsRuntime, TempDir};

const TOTAL: usize = 10_000;

/// A namespace with a veth to a gateway namespace (10.9.0.2 and .3 on the far side).
fn fresh() -> (Netns, Netns, String, u32) {
    let ns = Netns::new("bn");
    let gw = Netns::new("bg");
    let (ifname, _) = Link::connect(&ns, &["10.9.0.1/24"], &gw, &["10.9.0.2/24", "10.9.0.3/24"]);
    let ifindex = ns
        .exec(&["cat", &format!("/sys/class/net/{ifname}/ifindex")])
        .trim()
        .parse()
        .expect("ifindex");
    (ns, gw, ifname, ifindex)
}

/// 10,000 /24s in 172.16.0.0/12 … (172.16.0.0 – 172.55.15.0).
fn prefixes() -> Vec<IpNet> {
    (0..TOTAL)
        .map(|i| {
            format!("172.{}.{}.0/24", 16 + i / 256, i % 256)
                .parse()
                .unwrap()
        })
        .collect()
}

fn count_ours(ns: &Netns) -> usize {
    ns.exec(&["ip", "route", "show", "proto", "77"])
        .lines()
        .count()
}

struct Run {
    felix: Duration,
    batch: Duration,
    single: Vec<Duration>,
}

fn one_run() -> Run {
    // felix-lite.
    let (ns, _gw, _, ifindex) = fresh();
    let rt = NsRuntime::new(&ns);
    let p = rt
        .run(Programmer::start(Config::default()))
        .expect("programmer");
    let routes: Vec<Route> = prefixes()
        .into_iter()
        .map(|p| Route::new(p, [Hop::direct("10.9.0.2".parse().unwrap(), ifindex)]))
        .collect();
    let pp = p.clone();
    let felix = rt.run(async move {
        let t = Instant::now();
        let r = pp.replace_all(routes).await.expect("replace_all");
        assert_eq!(r.applied, TOTAL, "{:?}", r.failed.first());
        t.elapsed()
    });
    assert_eq!(count_ours(&ns), TOTAL);

    // One route among the 10,000 changes gateway, back and forth, 50 times.
    let pp = p.clone();
    let single = rt.run(async move {
        let prefix: IpNet = "172.30.7.0/24".parse().unwrap();
        let mut out = Vec::new();
        for i in 0..50 {
            let gw = if i % 2 == 0 { "10.9.0.3" } else { "10.9.0.2" };
            let r = Route::new(prefix, [Hop::direct(gw.parse().unwrap(), ifindex)]);
            let t = Instant::now();
            let rep = pp.update(vec![Change::Set(r)]).await.expect("update");
            out.push(t.elapsed());
            assert_eq!(rep.applied, 1);
        }
        out
    });
    let shown = ns.exec(&["ip", "route", "show", "172.30.7.0/24"]);
    assert!(shown.contains("via 10.9.0.2"), "{shown}");
    rt.run(async move { p.shutdown().await });
    drop(rt);

    // ip -batch of the same routes.
    let (ns2, _gw2, ifname2, _) = fresh();
    let dir = TempDir::new("bb");
    let file = dir.join("routes");
    let body: String = prefixes()
        .iter()
        .map(|p| format!("route add {p} via 10.9.0.2 dev {ifname2} proto 77\n"))
        .collect();
    std::fs::write(&file, body).expect("batch file");
    let t = Instant::now();
    let st = std::process::Command::new("ip")
        .args(["-n", &ns2.name, "-batch"])
        .arg(&file)
        .status()
        .expect("ip -batch");
    let batch = t.elapsed();
    assert!(st.success());
    assert_eq!(count_ours(&ns2), TOTAL);
    Run {
        felix,
        batch,
        single,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    println!("install {TOTAL} routes into a fresh namespace, {runs} runs\n");
    println!(
        "{:>4} {:>14} {:>14} {:>7} {:>16}",
        "run", "felix-lite ms", "ip -batch ms", "ratio", "1 change p50 ms"
    );
    let mut all = Vec::new();
    for i in 0..runs {
        let r = one_run();
        println!(
            "{:>4} {:>14.1} {:>14.1} {:>7.2} {:>16.3}",
            i + 1,
            ms(r.felix),
            ms(r.batch),
            r.felix.as_secs_f64() / r.batch.as_secs_f64(),
            ms(median(r.single.clone()))
        );
        all.push(r);
    }
    let felix = median(all.iter().map(|r| r.felix).collect());
    let batch = median(all.iter().map(|r| r.batch).collect());
    let singles: Vec<Duration> = all.iter().flat_map(|r| r.single.clone()).collect();
    let worst = *singles.iter().max().unwrap();
    let ratio = felix.as_secs_f64() / batch.as_secs_f64();
    println!(
        "\nmedian: felix-lite {:.1} ms, ip -batch {:.1} ms, ratio {:.2} (goal ≤ 1.20: {})",
        ms(felix),
        ms(batch),
        ratio,
        if ratio <= 1.2 { "met" } else { "NOT met" }
    );
    let single = median(singles);
    println!(
        "one change among {TOTAL}: median {:.3} ms, worst {:.3} ms (goal < 10 ms: {})",
        ms(single),
        ms(worst),
        if single < Duration::from_millis(10) {
            "met"
        } else {
            "NOT met"
        }
    );
}
