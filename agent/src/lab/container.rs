//! `twill lab up --image TAG`: Twill nodes run from a built image, as containerlab would run
//! them, and as a DaemonSet runs the agent on a node. Each Twill node is two containers:
//! - the node, `<namespace>`: the image sleeping, with no network of its own (`--network none`);
//!   its network namespace is named `<namespace>` for `ip netns`, so links, `exec` lines, pods
//!   and the CNI plugin treat it exactly as a namespace-only node;
//! - the agent, `<namespace>-agent`: the image running the node's `cmd`, on the node's network
//!   (`--network container:<namespace>`, the DaemonSet's host network) with NET_ADMIN and
//!   NET_RAW only, the topology's binds and env, and the node's lab directory at `/lab` (socket,
//!   state, log). Stopping and starting a node stops and starts the agent container only: the
//!   node, its links and its pods stay, as when a DaemonSet pod is replaced.
//!
//! Docker's own iptables rules live in the host namespace; nothing here depends on them.

use super::host::{ip, run};
use super::state::NodeState;
use super::topology::Node;
use super::LabError;
use std::process::Command;

/// Where the node's lab directory is inside the agent container.
const LAB: &str = "/lab";

fn docker(args: &[&str]) -> Result<String, LabError> {
    run(Command::new("docker").args(args))
}

pub fn agent_name(namespace: &str) -> String {
    format!("{namespace}-agent")
}

/// What `lab up --image` needs before it creates anything: a Docker engine, the image here (it
/// is never pulled), and free container names for every Twill node.
pub fn check(image: &str, namespaces: &[String]) -> Result<(), LabError> {
    docker(&["image", "inspect", "--format", "{{.Id}}", image]).map_err(|e| LabError::Node {
        node: "*".into(),
        reason: format!("image {image} is not here (build it with scripts/image.sh): {e}"),
    })?;
    for ns in namespaces {
        for name in [ns.clone(), agent_name(ns)] {
            if docker(&[
                "inspect",
                "--type",
                "container",
                "--format",
                "{{.Id}}",
                &name,
            ])
            .is_ok()
            {
                return Err(LabError::ContainerTaken(name));
            }
        }
    }
    Ok(())
}

/// The label that marks a container as this lab's (its state directory), so `down` never
/// removes one it did not create.
fn owner(st: &NodeState) -> String {
    format!("io.twill.lab={}", st.dir.display())
}

/// The node container, its namespace named `namespace` for `ip netns`.
pub fn add_node(st: &NodeState, image: &str) -> Result<(), LabError> {
    let namespace = st.namespace.as_str();
    docker(&[
        "run",
        "-d",
        "--pull=never",
        "--network",
        "none",
        "--name",
        namespace,
        "--label",
        &owner(st),
        "--entrypoint",
        "sleep",
        image,
        "infinity",
    ])?;
    let pid = docker(&["inspect", "-f", "{{.State.Pid}}", namespace])?;
    ip(&["netns", "attach", namespace, pid.trim()])?;
    ip(&["-n", namespace, "link", "set", "lo", "up"])?;
    Ok(())
}

/// The agent container for a Twill node: the node's `cmd` with the lab's socket, state and
/// route-protocol directories under `/lab`, its output in the node's `twill.log`.
pub fn start_agent(n: &Node, st: &NodeState, image: &str) -> Result<(), LabError> {
    let name = agent_name(&st.namespace);
    // A stopped agent container is started again, keeping what it was created with.
    if let Ok(running) = docker(&[
        "inspect",
        "--type",
        "container",
        "-f",
        "{{.State.Running}}",
        &name,
    ]) {
        if running.trim() == "true" {
            return Err(LabError::Node {
                node: n.name.clone(),
                reason: "is running; `twill lab stop` it first".into(),
            });
        }
        docker(&["start", &name])?;
        return Ok(());
    }
    let owner = owner(st);
    let mut args: Vec<String> = [
        "run",
        "-d",
        "--pull=never",
        "--name",
        &name,
        "--label",
        &owner,
        "--entrypoint",
        "sh",
        "--network",
        &format!("container:{}", st.namespace),
        "--cap-add",
        "NET_ADMIN",
        "--cap-add",
        "NET_RAW",
        "-v",
        &format!("{}:{LAB}", st.dir.display()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for b in &n.binds {
        args.push("-v".into());
        args.push(format!("{}:{}:ro", b.host.display(), b.target));
    }
    for (k, v) in &n.env {
        args.push("-e".into());
        args.push(format!("{k}={v}"));
    }
    if !n.env.contains_key("RUST_LOG") {
        args.push("-e".into());
        args.push("RUST_LOG=info".into());
    }
    let has = |flag: &str| {
        n.cmd
            .iter()
            .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
    };
    let mut cmd: Vec<String> = n.cmd.iter().map(|a| shell_word(a)).collect();
    for (flag, path) in [
        ("--socket", format!("{LAB}/twill.sock")),
        ("--state-dir", format!("{LAB}/run")),
        ("--rt-protos-dir", format!("{LAB}/iproute2")),
    ] {
        if !has(flag) {
            cmd.push(flag.into());
            cmd.push(path);
        }
    }
    args.push(image.into());
    args.push("-c".into());
    args.push(format!("exec {} >>{LAB}/twill.log 2>&1", cmd.join(" ")));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    docker(&refs)?;
    Ok(())
}

/// Stop the agent container: SIGTERM with a grace period (`docker stop`), or SIGKILL.
pub fn stop_agent(st: &NodeState, sigkill: bool) -> Result<(), LabError> {
    let name = agent_name(&st.namespace);
    if sigkill {
        docker(&["kill", &name])?;
    } else {
        docker(&["stop", "-t", "10", &name])?;
    }
    Ok(())
}

/// Remove both containers of a node (what `lab down` does before deleting the names): only
/// those carrying this lab's label; one already gone is fine.
pub fn remove(st: &NodeState) -> Result<(), LabError> {
    let label = owner(st);
    for name in [agent_name(&st.namespace), st.namespace.clone()] {
        let labels = match docker(&[
            "inspect",
            "--type",
            "container",
            "-f",
            "{{json .Config.Labels}}",
            &name,
        ]) {
            Ok(l) => l,
            Err(_) => continue, // no such container
        };
        let (key, value) = label.split_once('=').expect("key=value");
        let ours =
            serde_json::from_str::<std::collections::BTreeMap<String, String>>(labels.trim())
                .is_ok_and(|m| m.get(key).map(String::as_str) == Some(value));
        if ours {
            docker(&["rm", "-f", &name])?;
        }
    }
    Ok(())
}

/// `word` quoted for `sh -c` when it needs to be.
fn shell_word(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::shell_word;

    #[test]
    fn words_are_quoted_only_when_needed() {
        assert_eq!(
            shell_word("--config=/etc/twill/cluster.yaml"),
            "--config=/etc/twill/cluster.yaml"
        );
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
