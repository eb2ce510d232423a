//! `twill`: the node agent (`twill agent`), its CLI (`twill status`, `twill routes`), and the
//! demo. Run with `CNI_COMMAND` set (as a CNI runtime runs `/opt/cni/bin/twill`) it is the CNI
//! plugin.

mod agent;
mod cni;
mod control;
mod dataplane;
mod demo;
mod http;
mod peers;
mod status;
mod view;

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
        /// The cluster view file (YAML).
        #[arg(long)]
        config: PathBuf,
        /// This node's name in the cluster view.
        #[arg(long, env = "NODE_NAME")]
        node: String,
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
    },
    /// Two Twill speakers in two network namespaces peer over iBGP, exchange their pod
    /// prefixes (IPv4 and IPv6), and print what each learned. Needs root.
    Demo {
        /// Seconds to wait for the routes before giving up.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn show(socket: PathBuf, json: bool, routes: bool) -> ExitCode {
    let Some(s) = runtime().block_on(agent::ask(&socket, "status")) else {
        eprintln!(
            "twill: no agent is running (nothing answers on {})",
            socket.display()
        );
        return ExitCode::FAILURE;
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&s).expect("json"));
    } else if routes {
        print!("{}", s.routes_table());
    } else {
        print!("{}", s.peers_table());
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
            node,
            socket,
            state_dir,
            metrics,
            ready_timeout,
            rt_protos_dir,
        } => {
            let opts = agent::Options {
                config,
                node,
                socket,
                state_dir,
                metrics,
                ready_timeout: Duration::from_secs(ready_timeout),
                rt_protos_dir,
            };
            match runtime().block_on(agent::run(opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("twill agent: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Status { socket, json } => show(socket, json, false),
        Command::Routes { socket, json } => show(socket, json, true),
        Command::Demo { timeout } => match demo::run(Duration::from_secs(timeout)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("twill demo: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
