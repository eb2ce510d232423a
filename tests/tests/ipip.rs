//! IPIP: used where the kernel has the module; reported as ignored, with the reason, where not.

use ipip::{Encap, EncapMode, EncapType, Error};
use libtest_mimic::{Arguments, Completion, Failed, Trial};
use twill_lab::{Dataplane, Netns, Remote, Switch};

const IPIP: Encap = Encap {
    kind: EncapType::Ipip,
    mode: EncapMode::CrossSubnet,
};

fn kernel_has_ipip() -> bool {
    std::path::Path::new("/sys/module/ipip").exists()
}

/// Without the module, starting with IPIP configured fails at once with an error that says why
/// and what to do; nothing is created.
fn missing_module_is_a_clear_error() -> Result<Completion, Failed> {
    if kernel_has_ipip() {
        return Ok(Completion::ignored_with(
            "the kernel has ipip; nothing to refuse",
        ));
    }
    let ns = Netns::new("ip");
    let sw = Switch::new("sw");
    sw.attach(&ns, &["10.1.0.31/24"], 1500);
    match Dataplane::start(&ns, IPIP, "10.1.0.31", "10.244.31.0/24") {
        Err(e @ Error::IpipUnavailable) => {
            let msg = e.to_string();
            if !msg.contains("no ipip module") || !msg.contains("VXLAN") {
                return Err(format!("unclear message: {msg}").into());
            }
            Ok(Completion::Completed)
        }
        Err(e) => Err(format!("wrong error: {e}").into()),
        Ok(_) => Err("IPIP started without the module".into()),
    }
}

/// With the module: an off-link node's pod CIDR goes `via NODE dev tunl0 onlink`.
fn cross_subnet_routes_use_tunl0() -> Result<Completion, Failed> {
    if !kernel_has_ipip() {
        return Ok(Completion::ignored_with(
            "this kernel has no ipip module (no /sys/module/ipip)",
        ));
    }
    let ns = Netns::new("ip");
    let sw = Switch::new("sw");
    sw.attach(&ns, &["10.1.0.31/24"], 1500);
    ns.exec(&["ip", "route", "add", "default", "via", "10.1.0.1", "onlink"]);
    let dp = Dataplane::start(&ns, IPIP, "10.1.0.31", "10.244.31.0/24")
        .map_err(|e| format!("start: {e}"))?;
    if dp.mtu() != 1480 {
        return Err(format!("MTU {} instead of 1480", dp.mtu()).into());
    }
    let far = Remote {
        address: "10.2.0.32".parse().unwrap(),
        pod_cidr: "10.244.32.0/24".parse().unwrap(),
    };
    let (_, reach) = dp.apply(&[far]);
    let route = ns.exec(&["ip", "route", "show", "10.244.32.0/24"]);
    if reach[0].1.name() != "ipip" || !route.contains("via 10.2.0.32 dev tunl0") {
        return Err(format!("{reach:?} / {route}").into());
    }
    Ok(Completion::Completed)
}

fn main() {
    let args = Arguments::from_args();
    let tests = vec![
        Trial::ignorable_test(
            "missing_module_is_a_clear_error",
            missing_module_is_a_clear_error,
        ),
        Trial::ignorable_test(
            "cross_subnet_routes_use_tunl0",
            cross_subnet_routes_use_tunl0,
        ),
    ];
    libtest_mimic::run(&args, tests).exit();
}
