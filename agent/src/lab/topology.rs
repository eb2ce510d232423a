//! A containerlab topology file (`.clab.yml`), the subset a Twill lab uses: `name`, `prefix`,
//! `topology.defaults` / `kinds` / `nodes` (kind `linux`: `image`, `binds`, `env`, `exec`,
//! `cmd`, `labels`) and `links` of `endpoints`. Other containerlab keys are accepted and
//! ignored, so a file written for containerlab itself loads here unchanged.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The label that sets how many pods the lab attaches to a Twill node.
pub const PODS_LABEL: &str = "twill.io/pods";
const DEFAULT_PODS: u32 = 1;
const MAX_PODS: u32 = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {value} {reason}")]
pub struct TopologyError {
    pub field: String,
    pub value: String,
    pub reason: String,
}

fn bad(
    field: impl Into<String>,
    value: impl fmt::Display,
    reason: impl Into<String>,
) -> TopologyError {
    TopologyError {
        field: field.into(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// What a node's image stands for on a machine without Docker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Twill's image: the local `twill` binary runs the node's `cmd`.
    Twill,
    /// FRR: local zebra + bgpd with the bound `/etc/frr/frr.conf`.
    Frr,
    /// BIRD 2 with the bound `bird.conf`.
    Bird,
    /// GoBGP with the bound configuration.
    Gobgp,
    /// Any other image (alpine, netshoot…): a bare namespace; only `exec` lines run.
    Plain,
}

impl Role {
    /// By the image's repository name, whatever the registry and tag
    /// (`ghcr.io/twill-net/twill:0.1`, `quay.io/frrouting/frr:8.4.4`).
    pub fn of_image(image: &str) -> Role {
        let repo = image.split(['@']).next().unwrap_or(image);
        let last = repo.rsplit('/').next().unwrap_or(repo);
        let name = last.split(':').next().unwrap_or(last);
        match name {
            "twill" => Role::Twill,
            n if n == "frr" || n.starts_with("frr-") => Role::Frr,
            n if n.contains("bird") => Role::Bird,
            n if n.contains("gobgp") => Role::Gobgp,
            _ => Role::Plain,
        }
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
struct RawNode {
    kind: Option<String>,
    image: Option<String>,
    #[serde(default)]
    binds: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, serde_yaml_ng::Value>,
    #[serde(default)]
    exec: Vec<String>,
    cmd: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, serde_yaml_ng::Value>,
}

#[derive(Debug, Deserialize)]
struct RawLink {
    #[serde(default)]
    endpoints: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RawTopology {
    #[serde(default)]
    defaults: RawNode,
    #[serde(default)]
    kinds: BTreeMap<String, RawNode>,
    /// A mapping rather than a map type: node order is the file's order.
    #[serde(default)]
    nodes: serde_yaml_ng::Mapping,
    #[serde(default)]
    links: Vec<RawLink>,
}

#[derive(Debug, Deserialize)]
struct RawFile {
    name: Option<String>,
    prefix: Option<String>,
    topology: Option<RawTopology>,
}

/// A file bound into a node: the host path (resolved against the topology's directory) and
/// where the container would see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub host: PathBuf,
    pub target: String,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub image: String,
    pub role: Role,
    pub binds: Vec<Bind>,
    pub env: BTreeMap<String, String>,
    pub exec: Vec<String>,
    /// `cmd` split into words as a shell would.
    pub cmd: Vec<String>,
    /// Pods the lab attaches (Twill nodes only).
    pub pods: u32,
}

impl Node {
    /// The host path of the file bound at `target`.
    pub fn bound(&self, target: &str) -> Option<&Path> {
        self.binds
            .iter()
            .find(|b| b.target == target)
            .map(|b| b.host.as_path())
    }

    /// `arg` with a bound container path replaced by its host path (also in `--flag=PATH`).
    pub fn host_path_arg(&self, arg: &str) -> String {
        let (flag, value) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with('-') => (Some(f), v),
            _ => (None, arg),
        };
        let mapped = self.binds.iter().find_map(|b| {
            let rest = value.strip_prefix(b.target.as_str())?;
            (rest.is_empty() || rest.starts_with('/'))
                .then(|| format!("{}{rest}", b.host.display()))
        });
        match (flag, mapped) {
            (Some(f), Some(m)) => format!("{f}={m}"),
            (None, Some(m)) => m,
            _ => arg.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub node: String,
    pub interface: String,
}

#[derive(Debug, Clone)]
pub struct Topology {
    pub name: String,
    /// containerlab's `prefix`: None = `clab`, "" = none.
    pub prefix: Option<String>,
    pub nodes: Vec<Node>,
    pub links: Vec<(Endpoint, Endpoint)>,
}

fn scalar(v: &serde_yaml_ng::Value) -> Option<String> {
    match v {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn strings(
    field: &str,
    m: &BTreeMap<String, serde_yaml_ng::Value>,
) -> Result<BTreeMap<String, String>, TopologyError> {
    m.iter()
        .map(|(k, v)| {
            scalar(v)
                .map(|s| (k.clone(), s))
                .ok_or_else(|| bad(format!("{field}.{k}"), format!("{v:?}"), "is not a string"))
        })
        .collect()
}

/// Linux interface names: 1–15 bytes, no `/`, no whitespace, not `.` or `..`.
fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && !s.contains(['/', ':'])
        && !s.chars().any(char::is_whitespace)
}

impl Topology {
    pub fn load(path: &Path) -> Result<Topology, TopologyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad("file", path.display(), format!("cannot be read: {e}")))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Topology::parse(&text, dir, path)
    }

    /// `dir` is where relative bind paths start, as containerlab resolves them.
    pub fn parse(text: &str, dir: &Path, file: &Path) -> Result<Topology, TopologyError> {
        let raw: RawFile = serde_yaml_ng::from_str(text)
            .map_err(|e| bad("file", file.display(), format!("is not a topology: {e}")))?;
        let name = raw
            .name
            .ok_or_else(|| bad("name", "(missing)", "is required"))?;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad("name", &name, "must be letters, digits, - or _"));
        }
        let topo = raw
            .topology
            .ok_or_else(|| bad("topology", "(missing)", "is required"))?;
        let mut nodes = Vec::new();
        for (k, v) in &topo.nodes {
            let node_name = scalar(k)
                .ok_or_else(|| bad("topology.nodes", format!("{k:?}"), "is not a node name"))?;
            let field = format!("topology.nodes.{node_name}");
            let raw_node: RawNode = match v {
                serde_yaml_ng::Value::Null => RawNode::default(),
                v => serde_yaml_ng::from_value(v.clone())
                    .map_err(|e| bad(&field, "", format!("is not a node: {e}")))?,
            };
            nodes.push(resolve_node(&node_name, &field, raw_node, &topo, dir)?);
        }
        if nodes.is_empty() {
            return Err(bad("topology.nodes", "(empty)", "names no node"));
        }
        let mut links = Vec::new();
        let mut used: Vec<(String, String)> = Vec::new();
        for (i, l) in topo.links.iter().enumerate() {
            let field = format!("topology.links[{i}].endpoints");
            if l.endpoints.len() != 2 {
                return Err(bad(
                    &field,
                    l.endpoints.join(", "),
                    "must name exactly two endpoints",
                ));
            }
            let mut ends = Vec::new();
            for (j, e) in l.endpoints.iter().enumerate() {
                let f = format!("{field}[{j}]");
                let (node, interface) = e
                    .split_once(':')
                    .ok_or_else(|| bad(&f, e, "is not NODE:INTERFACE"))?;
                if !nodes.iter().any(|n| n.name == node) {
                    return Err(bad(
                        &f,
                        e,
                        format!("names no node ({node} is not in topology.nodes)"),
                    ));
                }
                if !valid_ifname(interface) {
                    return Err(bad(
                        &f,
                        e,
                        "has an invalid interface name (1–15 characters, no / or :)",
                    ));
                }
                let key = (node.to_string(), interface.to_string());
                if used.contains(&key) {
                    return Err(bad(&f, e, "is already used by another link"));
                }
                used.push(key);
                ends.push(Endpoint {
                    node: node.to_string(),
                    interface: interface.to_string(),
                });
            }
            let b = ends.pop().expect("two");
            let a = ends.pop().expect("two");
            links.push((a, b));
        }
        Ok(Topology {
            name,
            prefix: raw.prefix,
            nodes,
            links,
        })
    }

    /// The namespace (containerlab: container) name of a node: `clab-LAB-NODE` by default.
    pub fn namespace(&self, prefix: Option<&str>, node: &str) -> String {
        match prefix.or(self.prefix.as_deref()) {
            None => format!("clab-{}-{node}", self.name),
            Some("") => node.to_string(),
            Some(p) => format!("{p}-{}-{node}", self.name),
        }
    }
}

/// containerlab's inheritance: node settings over its kind's over `defaults`.
fn resolve_node(
    name: &str,
    field: &str,
    raw: RawNode,
    topo: &RawTopology,
    dir: &Path,
) -> Result<Node, TopologyError> {
    let kind = raw
        .kind
        .clone()
        .or_else(|| topo.defaults.kind.clone())
        .ok_or_else(|| bad(format!("{field}.kind"), "(missing)", "is required (linux)"))?;
    if kind != "linux" {
        return Err(bad(
            format!("{field}.kind"),
            &kind,
            "is not supported without Docker (only linux nodes)",
        ));
    }
    let by_kind = topo.kinds.get(&kind).cloned().unwrap_or_default();
    let layers = [&topo.defaults, &by_kind, &raw];
    let image = layers
        .iter()
        .rev()
        .find_map(|l| l.image.clone())
        .ok_or_else(|| bad(format!("{field}.image"), "(missing)", "is required"))?;
    let pick_list = |f: fn(&RawNode) -> &Vec<String>| {
        layers
            .iter()
            .rev()
            .map(|l| f(l))
            .find(|v| !v.is_empty())
            .cloned()
            .unwrap_or_default()
    };
    let mut env = BTreeMap::new();
    let mut labels = BTreeMap::new();
    for l in layers {
        env.extend(strings(&format!("{field}.env"), &l.env)?);
        labels.extend(strings(&format!("{field}.labels"), &l.labels)?);
    }
    let mut binds = Vec::new();
    for (i, b) in pick_list(|l| &l.binds).iter().enumerate() {
        let f = format!("{field}.binds[{i}]");
        let mut parts = b.split(':');
        let (Some(host), Some(target)) = (parts.next(), parts.next()) else {
            return Err(bad(&f, b, "is not HOST:CONTAINER[:ro]"));
        };
        let host = if Path::new(host).is_absolute() {
            PathBuf::from(host)
        } else {
            dir.join(host)
        };
        if !host.exists() {
            return Err(bad(
                &f,
                b,
                format!("binds {}, which does not exist", host.display()),
            ));
        }
        binds.push(Bind {
            host,
            target: target.to_string(),
        });
    }
    let cmd_text = layers.iter().rev().find_map(|l| l.cmd.clone());
    let cmd = match &cmd_text {
        None => Vec::new(),
        Some(c) => shlex::split(c)
            .ok_or_else(|| bad(format!("{field}.cmd"), c, "has unbalanced quotes"))?,
    };
    let role = Role::of_image(&image);
    let pods = match labels.get(PODS_LABEL) {
        None => DEFAULT_PODS,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| *n <= MAX_PODS)
            .ok_or_else(|| {
                bad(
                    format!("{field}.labels.{PODS_LABEL}"),
                    v,
                    format!("is not a pod count (0–{MAX_PODS})"),
                )
            })?,
    };
    if role == Role::Twill
        && cmd.first().map(|c| c.rsplit('/').next() == Some("twill")) != Some(true)
    {
        return Err(bad(
            format!("{field}.cmd"),
            cmd_text.unwrap_or_else(|| "(missing)".into()),
            "must run twill (twill agent --config FILE)",
        ));
    }
    if role == Role::Frr && !binds.iter().any(|b| b.target == "/etc/frr/frr.conf") {
        return Err(bad(
            format!("{field}.binds"),
            "(no /etc/frr/frr.conf)",
            "must bind the FRR configuration to /etc/frr/frr.conf",
        ));
    }
    Ok(Node {
        name: name.to_string(),
        image,
        role,
        binds,
        env,
        exec: pick_list(|l| &l.exec),
        cmd,
        pods: if role == Role::Twill { pods } else { 0 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Topology, TopologyError> {
        Topology::parse(s, Path::new("/"), Path::new("t.clab.yml"))
    }

    #[test]
    fn roles_by_image_name() {
        assert_eq!(Role::of_image("ghcr.io/twill-net/twill:0.1"), Role::Twill);
        assert_eq!(Role::of_image("twill"), Role::Twill);
        assert_eq!(Role::of_image("quay.io/frrouting/frr:8.4.4"), Role::Frr);
        assert_eq!(Role::of_image("frrouting/frr"), Role::Frr);
        assert_eq!(Role::of_image("ghcr.io/x/bird2:2.0.12"), Role::Bird);
        assert_eq!(Role::of_image("jauderho/gobgp:v3.10.0"), Role::Gobgp);
        assert_eq!(Role::of_image("alpine:3.20"), Role::Plain);
        assert_eq!(Role::of_image("localhost:5000/alpine"), Role::Plain);
    }

    #[test]
    fn inheritance_order_and_file_order() {
        let t = parse(
            "name: t\ntopology:\n  defaults: {kind: linux, image: alpine, env: {A: '1'}}\n  kinds:\n    linux: {env: {B: '2'}}\n  nodes:\n    zz: {env: {A: '3'}}\n    aa: {image: ghcr.io/x/twill:1, cmd: 'twill agent --config \"/etc/twill/c.yaml\"', labels: {twill.io/pods: 3}}\n  links:\n    - endpoints: [zz:eth1, aa:eth1]\n",
        )
        .unwrap();
        assert_eq!(t.nodes[0].name, "zz", "the file's order");
        assert_eq!(t.nodes[0].env["A"], "3");
        assert_eq!(t.nodes[0].env["B"], "2");
        assert_eq!(t.nodes[0].pods, 0, "pods only on Twill nodes");
        assert_eq!(t.nodes[1].role, Role::Twill);
        assert_eq!(t.nodes[1].pods, 3);
        assert_eq!(
            t.nodes[1].cmd,
            ["twill", "agent", "--config", "/etc/twill/c.yaml"]
        );
        assert_eq!(t.namespace(None, "aa"), "clab-t-aa");
        assert_eq!(t.namespace(Some("x1"), "aa"), "x1-t-aa");
        assert_eq!(t.namespace(Some(""), "aa"), "aa");
    }

    #[test]
    fn bound_paths_are_rewritten_in_arguments() {
        let n = Node {
            name: "a1".into(),
            image: "twill".into(),
            role: Role::Twill,
            binds: vec![Bind {
                host: "/lab/cluster.yaml".into(),
                target: "/etc/twill/cluster.yaml".into(),
            }],
            env: BTreeMap::new(),
            exec: vec![],
            cmd: vec![],
            pods: 1,
        };
        assert_eq!(
            n.host_path_arg("/etc/twill/cluster.yaml"),
            "/lab/cluster.yaml"
        );
        assert_eq!(
            n.host_path_arg("--config=/etc/twill/cluster.yaml"),
            "--config=/lab/cluster.yaml"
        );
        assert_eq!(
            n.host_path_arg("/etc/twill/cluster.yaml.bak"),
            "/etc/twill/cluster.yaml.bak"
        );
        assert_eq!(n.host_path_arg("agent"), "agent");
    }

    #[test]
    fn errors_name_the_field_and_value() {
        let base = "name: t\ntopology:\n  nodes:\n    a: {kind: linux, image: alpine}\n";
        let e = parse(&format!(
            "{base}  links:\n    - endpoints: [a:eth1, b:eth1]\n"
        ))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "topology.links[0].endpoints[1]: b:eth1 names no node (b is not in topology.nodes)"
        );
        let e = parse(&format!(
            "{base}  links:\n    - endpoints: [a:eth1, a:eth1]\n"
        ))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "topology.links[0].endpoints[1]: a:eth1 is already used by another link"
        );
        let e = parse(&format!(
            "{base}  links:\n    - endpoints: [a:averyveryverylongname, a:eth2]\n"
        ))
        .unwrap_err();
        assert!(e.to_string().starts_with("topology.links[0].endpoints[0]: a:averyveryverylongname has an invalid interface name"), "{e}");
        let e = parse("name: t\ntopology:\n  nodes:\n    a: {kind: ceos, image: x}\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "topology.nodes.a.kind: ceos is not supported without Docker (only linux nodes)"
        );
        let e = parse(
            "name: t\ntopology:\n  nodes:\n    a: {kind: linux, image: twill, cmd: sleep 1}\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "topology.nodes.a.cmd: sleep 1 must run twill (twill agent --config FILE)"
        );
        let e = parse("name: t\ntopology:\n  nodes:\n    a: {kind: linux, image: twill, cmd: twill agent, labels: {twill.io/pods: many}}\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "topology.nodes.a.labels.twill.io/pods: many is not a pod count (0–32)"
        );
        let e = parse("name: t\ntopology:\n  nodes:\n    a: {kind: linux, image: frrouting/frr}\n")
            .unwrap_err();
        assert!(e.to_string().contains("/etc/frr/frr.conf"), "{e}");
        let e = parse("name: t\ntopology:\n  nodes:\n    a: {kind: linux, image: alpine, binds: [nothere.conf:/etc/x.conf]}\n").unwrap_err();
        assert_eq!(e.to_string(), "topology.nodes.a.binds[0]: nothere.conf:/etc/x.conf binds /nothere.conf, which does not exist");
        let e =
            parse("name: 'a b'\ntopology: {nodes: {a: {kind: linux, image: x}}}\n").unwrap_err();
        assert_eq!(e.to_string(), "name: a b must be letters, digits, - or _");
    }

    #[test]
    fn the_shipped_topologies_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/containerlab");
        for name in ["two-racks-vxlan", "two-racks-tor"] {
            let t = Topology::load(&dir.join(format!("{name}.clab.yml")))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(t.name, name);
            let twill = t.nodes.iter().filter(|n| n.role == Role::Twill).count();
            assert_eq!(twill, 4, "{name}: four Twill nodes");
            for n in t.nodes.iter().filter(|n| n.role == Role::Twill) {
                assert!(n.pods >= 1, "{name}/{}: pods", n.name);
                assert_eq!(n.env.get("NODE_NAME"), Some(&n.name), "{name}/{}", n.name);
            }
            let frr = t.nodes.iter().filter(|n| n.role == Role::Frr).count();
            assert_eq!(frr, if name == "two-racks-tor" { 2 } else { 0 }, "{name}");
        }
    }
}
