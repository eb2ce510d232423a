//! `twill`: the node agent (`twill agent`), its CLI (`twill status`, `twill routes`), and
//! `twill lab` (a whole fabric in network namespaces from a containerlab file). Run with `CNI_COMMAND` set (as a CNI runtime runs `/opt/cni/bin/twill`) it is the CNI
//! plugin.

mod cni;
mod control;
mod http;
mod lab;
mod metrics;
mod netpol;
mod node;
mod node_file;
mod peers;
mod state;
mod status;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "twill",
    version,
    about = "Twill: a BGP pod-network fabric for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node agent: BGP speaker, tunnel fabric and route programmer for one node.
    Agent {
        /// The cluster view file (YAML). Or use --kubernetes.
        #[arg(
            long,
            required_unless_present = "kubernetes",
            conflicts_with = "kubernetes"
        )]
        config: Option<PathBuf>,
        /// Read the cluster view from the Kubernetes API (Nodes, BGPConfiguration, BGPPeer):
        /// in-cluster, or the kubeconfig given with --kubeconfig.
        #[arg(long)]
        kubernetes: bool,
        #[arg(long, requires = "kubernetes")]
        kubeconfig: Option<PathBuf>,
        /// The namespace holding BGPPeer password Secrets (default: the agent's own).
        #[arg(long, requires = "kubernetes")]
        namespace: Option<String>,
        /// podNetwork when the BGPConfiguration `default` gives none.
        #[arg(long, env = "TWILL_POD_NETWORK", requires = "kubernetes")]
        pod_network: Option<String>,
        /// This node's name in the cluster view.
        #[arg(long, env = "NODE_NAME")]
        node: String,
        /// File mode: Namespaces, Pods and NetworkPolicies (Kubernetes YAML) to enforce
        /// NetworkPolicy from, re-read on SIGHUP. With --kubernetes they come from the API.
        #[arg(long, conflicts_with = "kubernetes")]
        workloads: Option<PathBuf>,
        /// Control socket for `twill status` / `twill routes`.
        #[arg(long, default_value = "/run/twill/twill.sock")]
        socket: PathBuf,
        /// Where the MTU and node files for the CNI plugin go.
        #[arg(long, default_value = "/run/twill")]
        state_dir: PathBuf,
        /// Address of the /metrics, /healthz and /readyz listener.
        #[arg(long, default_value = "127.0.0.1:9099")]
        metrics: std::net::SocketAddr,
        /// Seconds after which the agent reports ready even if some cluster session has not
        /// completed its first exchange.
        #[arg(long, default_value_t = 120)]
        ready_timeout: u64,
        /// Where to name route protocol 77 `twill` for iproute2 (`twill.conf`).
        #[arg(long, default_value = felix_lite::RT_PROTOS_DIR)]
        rt_protos_dir: PathBuf,
        /// The iptables Twill's rules go through: `legacy`, `nft`, or `auto` (the one holding
        /// kubelet's KUBE-IPTABLES-HINT / KUBE-KUBELET-CANARY chain, else the one with more
        /// rules, else nft), as Calico's FELIX_IPTABLESBACKEND.
        #[arg(long, env = "TWILL_IPTABLES_BACKEND", default_value = "auto")]
        iptables_backend: policy::BackendChoice,
    },
    /// One line per BGP peer of the running agent.
    Status {
        #[arg(long, default_value = "/run/twill/twill.sock")]
        socket: PathBuf,
        /// Print JSON (keys node, peers[], routes[]).
        #[arg(long)]
        json: bool,
    },
    /// The programmed routes and how each is reached.
    Routes {
        #[arg(long, default_value = "/run/twill/twill.sock")]
        socket: PathBuf,
        #[arg(long)]
        json: bool,
        /// Also the BGP peer each route was learned from and, for a reflected route, its
        /// ORIGINATOR_ID and CLUSTER_LIST.
        #[arg(long)]
        detail: bool,
    },
    /// NetworkPolicy on this node: the policies selecting a pod (`namespace/name`), or each
    /// local pod's; `explain` says whether a new connection would be allowed, and by what.
    #[command(args_conflicts_with_subcommands = true)]
    Policy {
        #[command(subcommand)]
        command: Option<PolicyCommand>,
        /// A pod, `namespace/name` (default: every pod of this node).
        pod: Option<String>,
        #[arg(long, default_value = "/run/twill/twill.sock")]
        socket: PathBuf,
    },
    /// Print Twill's CustomResourceDefinitions (the ones in deploy/twill.yaml) as YAML.
    Crds,
    /// A whole fabric on this machine in network namespaces, from a containerlab file.
    Lab {
        #[command(subcommand)]
        command: LabCommand,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Would a new connection FROM → TO on PORT/PROTO be allowed, and by which policy and rule?
    /// Ends are pods (`namespace/name`) or addresses.
    Explain {
        from: String,
        to: String,
        /// `80/TCP`, `53/udp`, or a bare port (TCP).
        port: String,
        #[arg(long, default_value = "/run/twill/twill.sock")]
        socket: PathBuf,
    },
}

/// `twill policy …`: one request over the control socket, its lines printed.
fn policy_main(command: Option<PolicyCommand>, pod: Option<String>, socket: PathBuf) -> ExitCode {
    let (socket, request) = match command {
        None => (socket, control::Request::Policies { pod }),
        Some(PolicyCommand::Explain {
            from,
            to,
            port,
            socket,
        }) => {
            let (p, proto) = port.split_once('/').unwrap_or((port.as_str(), "TCP"));
            let Ok(p) = p.parse::<u16>() else {
                eprintln!("twill policy explain: port {port}: not a port number (80/TCP)");
                return ExitCode::FAILURE;
            };
            let request = control::Request::Explain {
                from,
                to,
                port: p,
                protocol: proto.to_string(),
            };
            (socket, request)
        }
    };
    let answer = runtime().block_on(control::request(&socket, &request, Duration::from_secs(10)));
    match answer {
        None => {
            eprintln!(
                "twill: no agent is running (nothing answers on {})",
                socket.display()
            );
            ExitCode::FAILURE
        }
        Some(a) if a.ok => {
            for l in a.lines {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }
        Some(a) => {
            eprintln!("twill policy: {}", a.error.unwrap_or_default());
            ExitCode::FAILURE
        }
    }
}

#[derive(Subcommand)]
enum LabCommand {
    /// Build a topology: a file, or a name in deploy/containerlab/ (default two-racks-vxlan).
    Up {
        topology: Option<String>,
        /// Where lab state and logs go.
        #[arg(long, default_value = lab::DEFAULT_DIR)]
        dir: PathBuf,
        /// Namespace name prefix, instead of the file's `prefix` (containerlab's default `clab`).
        #[arg(long)]
        prefix: Option<String>,
        /// Run Twill nodes from this image (Docker), a container per node as containerlab
        /// does, instead of the local binary in a namespace.
        #[arg(long)]
        image: Option<String>,
        /// Kubernetes YAML: Namespaces, Pods (placed by `spec.nodeName`, attached through the
        /// CNI plugin) and NetworkPolicies, created once the fabric is up. Agents read them as
        /// file-mode workloads (`<dir>/<lab>/workloads.yaml`).
        #[arg(long)]
        workloads: Option<PathBuf>,
    },
    /// Create or change Namespaces, Pods and NetworkPolicies in a running lab (as `kubectl
    /// apply`); returns once every agent has the rules in force.
    Apply {
        file: PathBuf,
        /// The file holds every NetworkPolicy the lab should have: the others are deleted.
        #[arg(long)]
        prune: bool,
        #[arg(long)]
        lab: Option<String>,
        #[arg(long, default_value = lab::DEFAULT_DIR)]
        dir: PathBuf,
    },
    /// Delete the objects a file names (Pods lose their namespace and address too).
    Delete {
        file: PathBuf,
        #[arg(long)]
        lab: Option<String>,
        #[arg(long, default_value = lab::DEFAULT_DIR)]
        dir: PathBuf,
    },
    /// Every pod pings every other; prints the matrix and each node's status. Fails if any
    /// pair is unreachable.
    Test {
        /// The lab's name (needed only when several are up).
        name: Option<String>,
        #[arg(long, default_value = lab::DEFAULT_DIR)]
        dir: PathBuf,
    },
    /// Stop one node's daemons (SIGTERM, or SIGKILL with --kill); its namespace, links and
    /// pods stay.
    Stop {
        node: String,
        /// SIGKILL at once: a crash rather than a shutdown.
        #[arg(long)]
        kill: bool,
        /// The lab's name (needed only when several are up).
        #[arg(long)]
        lab: Option<String>,
        #[arg(long, default_value = lab::DEFAULT_DIR)]
        dir: PathBuf,
    },
    /// Start a stopped node's daemons again; returns once the fabric has converged.
    Start {
        node: String,
        #[arg(long)]
        lab: Option<String>,
        #[arg(long, default_value = lab::DEFAULT_DIR)]
        dir: PathBuf,
    },
    /// Stop the lab's processes and delete its namespaces and state.
    Down {
        name: Option<String>,
        #[arg(long, default_value = lab::DEFAULT_DIR)]
        dir: PathBuf,
    },
}

fn lab_main(command: LabCommand) -> ExitCode {
    let r = match command {
        LabCommand::Up {
            topology,
            dir,
            prefix,
            image,
            workloads,
        } => lab::resolve_topology(topology.as_deref())
            .and_then(|topology| {
                lab::up(&lab::UpOptions {
                    topology,
                    dir,
                    prefix,
                    image,
                    workloads,
                })
            })
            .map(|s| (s, true)),
        LabCommand::Apply {
            file,
            prune,
            lab,
            dir,
        } => lab::change_workloads(&dir, lab.as_deref(), &file, lab::Change::Apply { prune })
            .map(|s| (s, true)),
        LabCommand::Delete { file, lab, dir } => {
            lab::change_workloads(&dir, lab.as_deref(), &file, lab::Change::Delete)
                .map(|s| (s, true))
        }
        LabCommand::Test { name, dir } => lab::test(&dir, name.as_deref()),
        LabCommand::Stop {
            node,
            kill,
            lab,
            dir,
        } => lab::stop(&dir, lab.as_deref(), &node, kill).map(|s| (s, true)),
        LabCommand::Start { node, lab, dir } => {
            lab::start(&dir, lab.as_deref(), &node).map(|s| (s, true))
        }
        LabCommand::Down { name, dir } => lab::down(&dir, name.as_deref()).map(|s| (s, true)),
    };
    match r {
        Ok((out, ok)) => {
            print!("{out}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("twill lab: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// What `show` prints without `--json`.
enum Shown {
    Peers,
    Routes { detail: bool },
}

fn show(socket: PathBuf, json: bool, what: Shown) -> ExitCode {
    let Some(s) = runtime().block_on(control::ask(&socket, "status")) else {
        eprintln!(
            "twill: no agent is running (nothing answers on {})",
            socket.display()
        );
        return ExitCode::FAILURE;
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&s).expect("json"));
    } else {
        match what {
            Shown::Routes { detail } => print!("{}", s.routes_table(detail)),
            Shown::Peers => print!("{}", s.peers_table()),
        }
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    if std::env::var_os("CNI_COMMAND").is_some() {
        return cni::main();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Agent {
            config,
            kubernetes: _,
            kubeconfig,
            namespace,
            pod_network,
            node,
            workloads,
            socket,
            state_dir,
            metrics,
            ready_timeout,
            rt_protos_dir,
            iptables_backend,
        } => {
            let source = match config {
                Some(path) => node::ViewSource::File(path),
                None => node::ViewSource::Kubernetes {
                    kubeconfig,
                    namespace,
                    pod_network,
                },
            };
            let opts = node::Options {
                source,
                node,
                workloads,
                socket,
                state_dir,
                metrics,
                ready_timeout: Duration::from_secs(ready_timeout),
                rt_protos_dir,
                iptables_backend,
            };
            match runtime().block_on(node::run(opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("twill agent: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Status { socket, json } => show(socket, json, Shown::Peers),
        Command::Routes {
            socket,
            json,
            detail,
        } => show(socket, json, Shown::Routes { detail }),
        Command::Lab { command } => lab_main(command),
        Command::Policy {
            command,
            pod,
            socket,
        } => policy_main(command, pod, socket),
        Command::Crds => {
            print!("{}", cluster::k8s::crd::manifests());
            ExitCode::SUCCESS
        }
    }
}
