//! The CNI plugin (type `twill`, spec 1.0.0): flannel's model. ADD, DEL and CHECK delegate to
//! the reference `bridge` plugin (pods on `cni0`, one veth each) with `host-local` IPAM over
//! this node's pod CIDRs and the MTU the agent wrote; VERSION answers directly. Errors are CNI
//! error JSON on stdout.

use crate::node_file::{self, NodeFile, NodeFileError};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

const VERSIONS: [&str; 4] = ["0.3.1", "0.4.0", "1.0.0", "1.1.0"];

struct CniError {
    code: u32,
    msg: String,
    details: String,
}

fn err(code: u32, msg: impl Into<String>, details: impl Into<String>) -> CniError {
    CniError {
        code,
        msg: msg.into(),
        details: details.into(),
    }
}

pub fn main() -> ExitCode {
    let cmd = std::env::var("CNI_COMMAND").unwrap_or_default();
    match run(&cmd) {
        Ok(out) => {
            let mut o = std::io::stdout();
            let _ = o.write_all(&out);
            ExitCode::SUCCESS
        }
        Err(e) => {
            let body =
                json!({"cniVersion": "1.0.0", "code": e.code, "msg": e.msg, "details": e.details});
            println!("{body}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: &str) -> Result<Vec<u8>, CniError> {
    if cmd == "VERSION" {
        let v = json!({"cniVersion": "1.0.0", "supportedVersions": VERSIONS});
        return Ok(v.to_string().into_bytes());
    }
    if !matches!(cmd, "ADD" | "DEL" | "CHECK") {
        return Err(err(
            4,
            format!("unknown CNI_COMMAND {cmd:?}"),
            "expected ADD, DEL, CHECK or VERSION",
        ));
    }
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| err(6, "cannot read the network configuration", e.to_string()))?;
    let conf: Value = serde_json::from_str(&input)
        .map_err(|e| err(6, "network configuration is not JSON", e.to_string()))?;
    let version = conf["cniVersion"].as_str().unwrap_or("");
    if !VERSIONS.contains(&version) {
        return Err(err(
            1,
            format!("cniVersion {version:?} is not supported"),
            format!("supported: {}", VERSIONS.join(", ")),
        ));
    }
    let state_dir = PathBuf::from(conf["stateDir"].as_str().unwrap_or("/run/twill"));
    let node = read_node(&state_dir, cmd)?;
    let delegate = delegate_conf(&conf, &node);
    let out = call_bridge(&delegate)?;
    if let (Some(wait), Some((namespace, name))) = (&node.policy_wait, pod_name()) {
        policy_wait(cmd, wait, namespace, name, &out)?;
    }
    Ok(out)
}

/// The pod's namespace and name from `CNI_ARGS` (`K8S_POD_NAMESPACE=…;K8S_POD_NAME=…`, as the
/// container runtime passes them).
fn pod_name() -> Option<(String, String)> {
    let args = std::env::var("CNI_ARGS").ok()?;
    let get = |k: &str| {
        args.split(';')
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
            .map(str::to_string)
    };
    Some((get("K8S_POD_NAMESPACE")?, get("K8S_POD_NAME")?))
}

/// ADD: tell the agent the pod's addresses and return only once its NetworkPolicy rules are in
/// force, so no pod runs unprotected. DEL: tell it the pod is gone (best effort: DEL must
/// succeed while the agent is down).
fn policy_wait(
    cmd: &str,
    wait: &node_file::PolicyWait,
    namespace: String,
    name: String,
    result: &[u8],
) -> Result<(), CniError> {
    use crate::control::{request, Request};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| err(999, "cannot start a runtime", e.to_string()))?;
    match cmd {
        "ADD" => {
            let r: Value = serde_json::from_slice(result).unwrap_or(Value::Null);
            let ips: Vec<std::net::IpAddr> = r["ips"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["address"].as_str()?.split('/').next()?.parse().ok())
                .collect();
            let pod = format!("{namespace}/{name}");
            let req = Request::PodAdded {
                namespace,
                name,
                ips,
            };
            let limit = std::time::Duration::from_secs(u64::from(wait.seconds) + 1);
            match rt.block_on(request(&wait.socket, &req, limit)) {
                Some(a) if a.ok => Ok(()),
                Some(a) => Err(err(
                    999,
                    format!("NetworkPolicy rules for pod {pod} are not in force"),
                    a.error.unwrap_or_default(),
                )),
                None => Err(err(
                    999,
                    format!("NetworkPolicy rules for pod {pod} are not in force"),
                    format!(
                        "the twill agent did not answer on {} within {}s",
                        wait.socket.display(),
                        limit.as_secs()
                    ),
                )),
            }
        }
        "DEL" => {
            let req = Request::PodDeleted { namespace, name };
            let _ = rt.block_on(request(
                &wait.socket,
                &req,
                std::time::Duration::from_secs(2),
            ));
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The node's pod CIDRs and MTU from the agent's node file.
fn read_node(dir: &Path, cmd: &str) -> Result<NodeFile, CniError> {
    match NodeFile::read(dir) {
        Ok(n) if n.pod_cidrs.is_empty() => Err(err(
            11,
            "this node has no pod CIDR yet",
            node_file::path(dir).display().to_string(),
        )),
        Ok(n) => Ok(n),
        // DEL must succeed even while the agent is down: host-local releases by container ID.
        Err(_) if cmd == "DEL" => Ok(NodeFile {
            name: String::new(),
            pod_cidrs: vec!["0.0.0.0/0".into()],
            mtu: 1450,
            policy_wait: None,
        }),
        Err(e @ NodeFileError::Json { .. }) => {
            Err(err(999, "the node file is damaged", e.to_string()))
        }
        Err(e) => Err(err(
            11,
            "the twill agent has not written this node's pod CIDR yet; try again",
            e.to_string(),
        )),
    }
}

fn delegate_conf(conf: &Value, node: &NodeFile) -> Value {
    let ranges: Vec<Value> = node
        .pod_cidrs
        .iter()
        .map(|c| json!([{ "subnet": c }]))
        .collect();
    let mut routes = Vec::new();
    if node.pod_cidrs.iter().any(|c| !c.contains(':')) {
        routes.push(json!({"dst": "0.0.0.0/0"}));
    }
    if node.pod_cidrs.iter().any(|c| c.contains(':')) {
        routes.push(json!({"dst": "::/0"}));
    }
    let mut ipam = json!({"type": "host-local", "ranges": ranges, "routes": routes});
    if let Some(d) = conf.get("dataDir") {
        ipam["dataDir"] = d.clone();
    }
    let mut d = json!({
        "cniVersion": conf["cniVersion"],
        "name": conf["name"],
        "type": "bridge",
        "bridge": conf.get("bridge").cloned().unwrap_or(json!("cni0")),
        "isGateway": true,
        "ipMasq": false,
        "hairpinMode": true,
        "mtu": node.mtu,
        "ipam": ipam,
    });
    if let Some(prev) = conf.get("prevResult") {
        d["prevResult"] = prev.clone();
    }
    d
}

fn find_plugin(name: &str) -> Option<PathBuf> {
    let paths = std::env::var("CNI_PATH").unwrap_or_else(|_| "/opt/cni/bin".into());
    paths
        .split(':')
        .map(|p| Path::new(p).join(name))
        .find(|p| p.is_file())
}

fn call_bridge(conf: &Value) -> Result<Vec<u8>, CniError> {
    let bridge = find_plugin("bridge").ok_or_else(|| {
        err(
            999,
            "the reference bridge plugin is not in CNI_PATH",
            std::env::var("CNI_PATH").unwrap_or_default(),
        )
    })?;
    let mut child = Command::new(&bridge)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            err(
                999,
                format!("cannot run {}", bridge.display()),
                e.to_string(),
            )
        })?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(conf.to_string().as_bytes())
        .map_err(|e| err(999, "cannot write to the bridge plugin", e.to_string()))?;
    let out = child
        .wait_with_output()
        .map_err(|e| err(999, "bridge plugin failed", e.to_string()))?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    // Pass the delegate's own CNI error through, naming where it came from.
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    Err(err(
        v["code"].as_u64().unwrap_or(999) as u32,
        format!("bridge plugin: {}", v["msg"].as_str().unwrap_or("failed")),
        v["details"].as_str().unwrap_or_default().to_string(),
    ))
}
