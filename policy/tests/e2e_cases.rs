//! The upstream e2e cases checked without a kernel: for every probe of every step, each of
//! the 72 pod pairs' expected verdict against the model's own semantics (`eval`, what
//! `twill policy explain` says) and against the compiled rules of the source's and the
//! destination's nodes walked by `simulate`. The lab test confirms the same matrices with
//! real connections.

use cluster::workloads::{build, Objects, Protocol};
use policy::cases::{all_pods, load, State};
use policy::eval::{evaluate, End};
use policy::simulate::{passes, Packet};
use policy::{compile, Family};
use std::collections::BTreeMap;
use std::net::IpAddr;

const NODES: [&str; 4] = ["a1", "a2", "b1", "b2"];

/// Pods spread over four nodes, so pairs meet on one node and across nodes.
fn placement() -> BTreeMap<String, (String, IpAddr)> {
    all_pods()
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let n = i % NODES.len();
            let ip: IpAddr = format!("10.244.{}.{}", n + 1, 10 + i).parse().unwrap();
            (p, (NODES[n].to_string(), ip))
        })
        .collect()
}

#[test]
fn compiled_rules_and_the_model_give_every_upstream_matrix() {
    let place = placement();
    let ip = |p: &str| place[p].1;
    let node = |p: &str| place[p].0.clone();
    let cases = load();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut wrong = Vec::new();
    let mut checked = 0;
    for case in &cases {
        let mut st = State::default();
        for (si, step) in case.steps.iter().enumerate() {
            st.step(step, &ip);
            let (ns, pods, pols) = (st.namespaces(), st.pods(&ip, &node), st.policies());
            let built = build(
                &Objects {
                    namespaces: &ns,
                    pods: &pods,
                    policies: &pols,
                },
                None,
            );
            assert!(
                built.problems.is_empty(),
                "{}: {:?}",
                case.name,
                built.problems
            );
            let w = built.workloads;
            let rules: BTreeMap<&str, _> = NODES
                .iter()
                .map(|n| (*n, compile(&w, n, Family::V4)))
                .collect();
            for probe in &step.probes {
                let protocol = Protocol::parse(Some(&probe.protocol)).unwrap();
                for ((from, to), want) in probe.expected() {
                    let (fns, fname) = from.split_once('/').unwrap();
                    let (tns, tname) = to.split_once('/').unwrap();
                    let src = w.pod(fns, fname).unwrap();
                    let dst = w.pod(tns, tname).unwrap();
                    let verdict = evaluate(
                        &w,
                        End::Pod(src, ip(&from)),
                        End::Pod(dst, ip(&to)),
                        protocol,
                        probe.port,
                    );
                    let pkt = Packet {
                        src: ip(&from),
                        dst: ip(&to),
                        protocol,
                        port: probe.port,
                    };
                    let (sn, dn) = (node(&from), node(&to));
                    let sim = passes(&rules[sn.as_str()], &pkt)
                        && (sn == dn || passes(&rules[dn.as_str()], &pkt));
                    checked += 1;
                    if verdict.allowed() != want || sim != want {
                        wrong.push(format!(
                            "{} [{}] step {si} {}/{} {from} → {to}: expected {want}, model {} ({verdict:?}), rules {sim}",
                            case.name, case.context, probe.port, probe.protocol, verdict.allowed()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {checked} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(checked > 3000, "only {checked} pairs checked");
}
