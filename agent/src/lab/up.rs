//! `twill lab up`: namespaces, links, `exec` lines, daemons, convergence, pods, in that order.
//! (containerlab starts a container's `cmd` before wiring its links; here links and `exec`
//! come first, so daemons find their addresses. The agent copes with either order.)

use super::host::{self, in_ns, poll, spawn_daemon};
use super::needs;
use super::state::{LabState, NodeState, PodState};
use super::topology::{Node, Role, Topology};
use super::{must_be_root, LabError};
use crate::node_file::NodeFile;
use crate::status::Status;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long `up` waits for every Twill node to have all its sessions and routes.
pub const CONVERGE_LIMIT: Duration = Duration::from_secs(90);
/// Where the CNI plugin looks for `bridge` and `host-local`.
pub(super) fn cni_path() -> String {
    needs::CNI_DIRS.join(":")
}

pub struct UpOptions {
    pub topology: PathBuf,
    pub dir: PathBuf,
    /// Overrides the file's `prefix` (tests use a unique one).
    pub prefix: Option<String>,
    /// Run Twill nodes from this image as containers (`lab::container`) instead of the local
    /// binary in a namespace.
    pub image: Option<String>,
    /// Namespaces, Pods (each with `spec.nodeName`) and NetworkPolicies to create once the
    /// fabric is up (`lab::workloads`).
    pub workloads: Option<PathBuf>,
}

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LabError + '_ {
    move |source| LabError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Build the lab; returns what to print. On error the state written so far stays, so
/// `twill lab down` removes the half-built lab.
pub fn up(opts: &UpOptions) -> Result<String, LabError> {
    let started = std::time::Instant::now();
    must_be_root()?;
    let topo = Topology::load(&opts.topology)?;
    let missing = needs::missing(&topo, needs::on_this_machine);
    if !missing.is_empty() {
        return Err(LabError::Missing(missing));
    }
    let dir = opts.dir.join(&topo.name);
    if dir.join(super::state::STATE_FILE).exists() {
        return Err(LabError::AlreadyUp {
            name: topo.name.clone(),
            dir: dir.display().to_string(),
        });
    }
    let prefix = opts.prefix.as_deref();
    for n in &topo.nodes {
        let ns = topo.namespace(prefix, &n.name);
        if host::namespace_exists(&ns) {
            return Err(LabError::NamespaceTaken(ns));
        }
    }
    if let Some(image) = &opts.image {
        let twill: Vec<String> = topo
            .nodes
            .iter()
            .filter(|n| n.role == Role::Twill)
            .map(|n| topo.namespace(prefix, &n.name))
            .collect();
        super::container::check(image, &twill)?;
    }
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let twill = std::env::current_exe().map_err(io(Path::new("/proc/self/exe")))?;
    let mut st = LabState {
        name: topo.name.clone(),
        topology: opts
            .topology
            .canonicalize()
            .unwrap_or(opts.topology.clone()),
        dir: dir.clone(),
        namespaces: Vec::new(),
        nodes: Vec::new(),
        pods: Vec::new(),
        neigh: Vec::new(),
    };
    st.save()?;
    let pods: usize = topo.nodes.iter().map(|n| n.pods as usize).sum();
    st.neigh = super::neigh::raise(super::neigh::needed(topo.nodes.len(), pods + 16))?;
    st.save()?;
    for n in &topo.nodes {
        let ns = topo.namespace(prefix, &n.name);
        let image = opts.image.clone().filter(|_| n.role == Role::Twill);
        let node_dir = dir.join(&n.name);
        std::fs::create_dir_all(&node_dir).map_err(io(&node_dir))?;
        let node = NodeState {
            name: n.name.clone(),
            role: n.role,
            namespace: ns.clone(),
            dir: node_dir,
            image: image.clone(),
        };
        match &image {
            Some(image) => {
                // Recorded before it exists, so `down` removes a half-made container too
                // (only if it carries this lab's label: the names were checked free above).
                st.nodes.push(node.clone());
                st.namespaces.push(ns.clone());
                st.save()?;
                super::container::add_node(&node, image)?;
            }
            None => {
                // Recorded once made: a name taken meanwhile by someone else is never ours
                // to delete.
                host::add_namespace(&ns)?;
                st.namespaces.push(ns.clone());
                st.nodes.push(node);
            }
        }
        st.save()?;
    }
    let ns_of = |name: &str| topo.namespace(prefix, name);
    for (a, b) in &topo.links {
        host::add_veth(&ns_of(&a.node), &a.interface, &ns_of(&b.node), &b.interface)?;
    }
    for n in &topo.nodes {
        for line in &n.exec {
            host::run(in_ns(&ns_of(&n.name), "sh").args(["-c", line])).map_err(|e| {
                LabError::Node {
                    node: n.name.clone(),
                    reason: format!("exec `{line}` failed: {e}"),
                }
            })?;
        }
    }
    // Every namespace-mode agent reads the lab's workloads file (NetworkPolicy, file mode);
    // it starts empty and `lab apply` fills it.
    let wl = super::workloads::path(&dir);
    std::fs::write(&wl, "").map_err(io(&wl))?;
    let mut notes = Vec::new();
    for (n, ns) in topo.nodes.iter().zip(&st.nodes) {
        start_node(n, ns, &twill, &mut notes)?;
    }
    wait_converged(&st, CONVERGE_LIMIT).map_err(|waiting| LabError::NotConverged {
        secs: CONVERGE_LIMIT.as_secs(),
        waiting,
        dir: dir.display().to_string(),
    })?;
    let converged = started.elapsed();
    for (n, ns) in topo.nodes.iter().zip(st.nodes.clone()) {
        for i in 1..=n.pods {
            let name = format!("{}-pod{i}", n.name);
            let pod_ns = format!("{}-pod{i}", ns.namespace);
            host::add_namespace(&pod_ns)?;
            st.namespaces.push(pod_ns.clone());
            st.save()?;
            let address = super::workloads::cni_add(&twill, &ns, &pod_ns, None)?;
            st.pods.push(PodState {
                name,
                node: n.name.clone(),
                namespace: pod_ns,
                address,
            });
            st.save()?;
        }
    }
    let mut applied = String::new();
    if let Some(file) = &opts.workloads {
        let objects = super::workloads::read(file)?;
        applied = super::workloads::apply(&mut st, &twill, objects, false)?;
    }
    let mut out = format!(
        "lab {} is up ({}): {} nodes, {} links, {} pods\n",
        topo.name,
        opts.topology.display(),
        topo.nodes.len(),
        topo.links.len(),
        st.pods.len()
    );
    out += &format!(
        "converged: every session up and every node routing every pod CIDR {:.2} s after lab up started\n",
        converged.as_secs_f64()
    );
    for s in &st.neigh {
        out += &format!(
            "host {} neighbour table: gc_thresh3 {} → {} for this lab (lab down puts it back)\n",
            s.family, s.found[2], s.set[2]
        );
    }
    for n in &st.nodes {
        let role = format!("{:?}", n.role).to_lowercase();
        out += &format!(
            "  {:<8} {:<6} ip netns exec {}\n",
            n.name, role, n.namespace
        );
    }
    for p in st.pods.iter().filter(|p| !p.name.contains('/')) {
        out += &format!("  {:<10} {:<15} on {}\n", p.name, p.address, p.node);
    }
    out += &applied;
    for note in notes {
        out += &format!("note: {note}\n");
    }
    out += &format!(
        "state and logs: {}\nnext: twill lab test; twill lab down\n",
        dir.display()
    );
    Ok(out)
}

pub(super) fn start_node(
    n: &Node,
    st: &NodeState,
    twill: &Path,
    notes: &mut Vec<String>,
) -> Result<(), LabError> {
    let ns = &st.namespace;
    let log = |what: &str| st.dir.join(format!("{what}.log"));
    let node_err = |reason: String| LabError::Node {
        node: n.name.clone(),
        reason,
    };
    match n.role {
        Role::Plain => {
            if !n.cmd.is_empty() {
                notes.push(format!(
                    "{}: cmd `{}` not run (image {} is not mapped to a local program; exec lines ran)",
                    n.name,
                    n.cmd.join(" "),
                    n.image
                ));
            }
        }
        Role::Twill if st.image.is_some() => {
            super::container::start_agent(n, st, st.image.as_deref().expect("checked"))?;
        }
        Role::Twill => {
            let mut c = in_ns(ns, twill);
            let args: Vec<String> = n.cmd[1..].iter().map(|a| n.host_path_arg(a)).collect();
            let has = |flag: &str| {
                args.iter()
                    .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
            };
            c.args(&args);
            // What a container keeps private, a namespace on a shared host must be told.
            if !has("--socket") {
                c.arg("--socket").arg(st.socket());
            }
            if !has("--state-dir") {
                c.arg("--state-dir").arg(st.run_dir());
            }
            if !has("--rt-protos-dir") {
                c.arg("--rt-protos-dir").arg(st.dir.join("iproute2"));
            }
            if !has("--workloads") && !has("--kubernetes") {
                let wl = super::workloads::path(st.dir.parent().unwrap_or(&st.dir));
                c.arg("--workloads").arg(wl);
            }
            c.envs(&n.env);
            if !n.env.contains_key("RUST_LOG") {
                c.env("RUST_LOG", "info");
            }
            spawn_daemon(c, &log("twill"))?;
        }
        Role::Frr => {
            // FRR drops its capabilities after start, root included: the run directory must
            // be writable without CAP_DAC_OVERRIDE.
            set_mode(&st.dir, 0o777)?;
            let run = st.dir.display().to_string();
            let zconf = st.dir.join("zebra.conf");
            std::fs::write(&zconf, format!("hostname {}\n", n.name)).map_err(io(&zconf))?;
            let frr_conf = n.bound("/etc/frr/frr.conf").expect("checked at load");
            let zserv = format!("{run}/zserv.api");
            let frr = |daemon: &str, conf: &Path| {
                let mut c = in_ns(ns, format!("/usr/lib/frr/{daemon}"));
                c.args(["-u", "root", "-g", "frrvty", "-f"])
                    .arg(conf)
                    .args(["--vty_socket", &run, "-z", &zserv, "-P", "0"])
                    .arg("-i")
                    .arg(format!("{run}/{daemon}.pid"))
                    .arg("--log")
                    .arg(format!("file:{run}/{daemon}.log"));
                c
            };
            spawn_daemon(frr("zebra", &zconf), &log("zebra.out"))?;
            poll(Duration::from_secs(10), Duration::from_millis(50), || {
                Path::new(&zserv).exists().then_some(())
            })
            .ok_or_else(|| node_err(format!("zebra did not start; see {run}/zebra.log")))?;
            if frr_daemon_enabled(n, "bgpd") {
                spawn_daemon(frr("bgpd", frr_conf), &log("bgpd.out"))?;
                poll(Duration::from_secs(10), Duration::from_millis(50), || {
                    st.dir.join("bgpd.vty").exists().then_some(())
                })
                .ok_or_else(|| node_err(format!("bgpd did not start; see {run}/bgpd.log")))?;
            }
        }
        Role::Bird => {
            let conf = n
                .binds
                .iter()
                .find(|b| b.target.ends_with("bird.conf"))
                .ok_or_else(|| node_err("binds no bird.conf".into()))?;
            let mut c = in_ns(ns, "bird");
            c.args(["-f", "-c"])
                .arg(&conf.host)
                .arg("-s")
                .arg(st.dir.join("bird.ctl"))
                .arg("-P")
                .arg(st.dir.join("bird.pid"));
            spawn_daemon(c, &log("bird"))?;
        }
        Role::Gobgp => {
            let conf = n
                .binds
                .iter()
                .find(|b| {
                    [".toml", ".yml", ".yaml", ".conf"]
                        .iter()
                        .any(|x| b.target.ends_with(x))
                })
                .ok_or_else(|| node_err("binds no GoBGP configuration".into()))?;
            let mut c = in_ns(ns, "gobgpd");
            c.arg("-f")
                .arg(&conf.host)
                .args(["--api-hosts", "127.0.0.1:50051", "--pprof-disable"]);
            spawn_daemon(c, &log("gobgpd"))?;
        }
    }
    Ok(())
}

/// FRR's `daemons` file, when bound, decides which daemons run (zebra always does).
fn frr_daemon_enabled(n: &Node, daemon: &str) -> bool {
    let Some(path) = n.bound("/etc/frr/daemons") else {
        return true;
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == daemon)
        .is_none_or(|(_, v)| v.trim() == "yes")
}

fn set_mode(p: &Path, mode: u32) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(io(p))
}

/// Every running agent's status, by node name (None where nothing answers).
pub fn statuses(st: &LabState) -> Vec<(String, Option<Status>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    st.twill_nodes()
        .map(|n| {
            (
                n.name.clone(),
                rt.block_on(crate::control::ask(&n.socket(), "status")),
            )
        })
        .collect()
}

/// The pod CIDRs each agent wrote for the CNI plugin.
fn pod_cidrs(st: &LabState) -> Vec<(String, Vec<String>)> {
    st.twill_nodes()
        .map(|n| {
            let cidrs = NodeFile::read(&n.run_dir())
                .map(|f| f.pod_cidrs)
                .unwrap_or_default();
            (n.name.clone(), cidrs)
        })
        .collect()
}

/// What keeps the fabric from being converged: agents not answering, sessions not
/// Established, other nodes' pod CIDRs not routed. Empty when converged.
pub fn not_converged(st: &LabState) -> Vec<String> {
    let cidrs = pod_cidrs(st);
    let mut waiting = Vec::new();
    for (node, status) in statuses(st) {
        let Some(s) = status else {
            waiting.push(format!(
                "{node}: the agent does not answer (see its twill.log)"
            ));
            continue;
        };
        if !s.ready {
            // Until then the agent only adds routes: a node that went away would keep its.
            waiting.push(format!("{node}: not ready yet"));
        }
        for p in s.peers.iter().filter(|p| p.state != "Established") {
            waiting.push(format!(
                "{node}: peer {} ({}) is {}",
                p.address, p.kind, p.state
            ));
        }
        // A graceful restart is over once the restarted peer's End-of-RIB swept its stale routes.
        for p in s
            .peers
            .iter()
            .filter(|p| p.graceful_restart.stale_routes > 0)
        {
            waiting.push(format!(
                "{node}: peer {} ({}) has {} stale routes",
                p.address, p.kind, p.graceful_restart.stale_routes
            ));
        }
        for (other, list) in &cidrs {
            if *other == node {
                continue;
            }
            if list.is_empty() {
                waiting.push(format!("{node}: {other} has not written its pod CIDR"));
            }
            for c in list {
                if !s.routes.iter().any(|r| &r.prefix == c) {
                    waiting.push(format!("{node}: no route yet to {other}'s {c}"));
                }
            }
        }
    }
    waiting
}

/// Poll until converged or `limit`; the error is what was still missing.
pub fn wait_converged(st: &LabState, limit: Duration) -> Result<(), Vec<String>> {
    let mut last = Vec::new();
    match poll(limit, Duration::from_millis(50), || {
        last = not_converged(st);
        last.is_empty().then_some(())
    }) {
        Some(()) => Ok(()),
        None => Err(last),
    }
}
