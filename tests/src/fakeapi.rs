//! A list/watch-faithful fake of the Kubernetes API server, for testing the agent unmodified:
//! HTTP/1.1 on a socket the test chooses (inside a lab namespace), real JSON objects, lists
//! with `kind` / `apiVersion` / `metadata.resourceVersion`, watch streams of ADDED / MODIFIED /
//! DELETED and BOOKMARK events (chunked), equality label selectors, `410 Gone` for a
//! resourceVersion older than what the event log keeps, and RBAC: every request is checked
//! against the rules bound to one ServiceAccount in a manifest (`deploy/twill.yaml`), and
//! anything those rules do not allow is answered 403 and recorded.
//!
//! Hand-written because no crate serves the API's watch protocol for tests: the known ones
//! mock at the client's service layer, which would bypass the HTTP and the agent's kubeconfig.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::broadcast;

/// A resource the fake serves: where it lives in the API and what its objects are called.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
}

pub const NODES: Kind = Kind {
    group: "",
    version: "v1",
    plural: "nodes",
    kind: "Node",
    namespaced: false,
};
pub const SECRETS: Kind = Kind {
    group: "",
    version: "v1",
    plural: "secrets",
    kind: "Secret",
    namespaced: true,
};
pub const BGP_CONFIGURATIONS: Kind = Kind {
    group: "twill.io",
    version: "v1",
    plural: "bgpconfigurations",
    kind: "BGPConfiguration",
    namespaced: false,
};
pub const BGP_PEERS: Kind = Kind {
    group: "twill.io",
    version: "v1",
    plural: "bgppeers",
    kind: "BGPPeer",
    namespaced: false,
};
const KINDS: [Kind; 4] = [NODES, SECRETS, BGP_CONFIGURATIONS, BGP_PEERS];

impl Kind {
    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// One RBAC rule, with the namespace it applies in (None: cluster-wide).
#[derive(Clone, Debug)]
pub struct Rule {
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub verbs: Vec<String>,
    pub resource_names: Vec<String>,
    pub namespace: Option<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The rules a manifest binds to ServiceAccount `namespace/name`: ClusterRoles through
/// ClusterRoleBindings (cluster-wide) or RoleBindings (in that binding's namespace), Roles
/// through RoleBindings.
pub fn rules_for(docs: &[Value], namespace: &str, name: &str) -> Vec<Rule> {
    let find = |kind: &str, n: &str, ns: Option<&str>| {
        docs.iter().find(|d| {
            d["kind"] == kind
                && d["metadata"]["name"] == n
                && ns.is_none_or(|ns| d["metadata"]["namespace"] == ns)
        })
    };
    let mut out = Vec::new();
    for b in docs {
        let binds_us = b["subjects"].as_array().is_some_and(|s| {
            s.iter().any(|s| {
                s["kind"] == "ServiceAccount" && s["name"] == name && s["namespace"] == namespace
            })
        });
        if !binds_us {
            continue;
        }
        let scope = match b["kind"].as_str() {
            Some("ClusterRoleBinding") => None,
            Some("RoleBinding") => b["metadata"]["namespace"].as_str().map(String::from),
            _ => continue,
        };
        let role_kind = b["roleRef"]["kind"].as_str().unwrap_or("");
        let role_name = b["roleRef"]["name"].as_str().unwrap_or("");
        let role = match role_kind {
            "ClusterRole" => find("ClusterRole", role_name, None),
            _ => find("Role", role_name, scope.as_deref()),
        };
        for r in role
            .and_then(|r| r["rules"].as_array())
            .into_iter()
            .flatten()
        {
            out.push(Rule {
                api_groups: strings(&r["apiGroups"]),
                resources: strings(&r["resources"]),
                verbs: strings(&r["verbs"]),
                resource_names: strings(&r["resourceNames"]),
                namespace: scope.clone(),
            });
        }
    }
    out
}

fn allowed(rules: &[Rule], verb: &str, k: &Kind, ns: Option<&str>, name: Option<&str>) -> bool {
    let any = |l: &[String], v: &str| l.iter().any(|x| x == "*" || x == v);
    rules.iter().any(|r| {
        any(&r.verbs, verb)
            && any(&r.api_groups, k.group)
            && any(&r.resources, k.plural)
            && (r.resource_names.is_empty() || name.is_some_and(|n| any(&r.resource_names, n)))
            && r.namespace.as_deref().is_none_or(|rns| ns == Some(rns))
    })
}

#[derive(Clone, Debug)]
struct Event {
    rv: u64,
    kind: Kind,
    kind_of_event: &'static str,
    object: Value,
}

struct State {
    rv: u64,
    /// (kind, namespace, name) → object.
    objects: BTreeMap<(Kind, String, String), Value>,
    /// Events kept for watches resuming from a resourceVersion; older ones are compacted away.
    log: Vec<Event>,
    /// The oldest resourceVersion a watch may resume from.
    oldest: u64,
    requests: Vec<String>,
    denied: Vec<String>,
    /// Watches answered 410 Gone.
    expired: usize,
}

/// The fake server; dropping it stops serving (open watches end).
pub struct FakeApi {
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<Event>,
    /// Closing every open watch stream: incremented to cut them.
    cut: Arc<tokio::sync::watch::Sender<u64>>,
    rt: Option<tokio::runtime::Runtime>,
    pub address: std::net::SocketAddr,
}

impl FakeApi {
    /// Serve on `listener` (bound wherever the test needs it), enforcing `rules`.
    pub fn serve(listener: std::net::TcpListener, rules: Vec<Rule>) -> FakeApi {
        let address = listener.local_addr().expect("address");
        listener.set_nonblocking(true).expect("nonblocking");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let state = Arc::new(Mutex::new(State {
            rv: 100,
            objects: BTreeMap::new(),
            log: Vec::new(),
            oldest: 100,
            requests: Vec::new(),
            denied: Vec::new(),
            expired: 0,
        }));
        let (events, _) = broadcast::channel(1024);
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let cut = Arc::new(cut);
        let rules = Arc::new(rules);
        {
            let (state, events, cut) = (state.clone(), events.clone(), cut.clone());
            rt.spawn(async move {
                let l = tokio::net::TcpListener::from_std(listener).expect("listener");
                while let Ok((sock, _)) = l.accept().await {
                    let (state, events, cut, rules) = (
                        state.clone(),
                        events.clone(),
                        cut.subscribe(),
                        rules.clone(),
                    );
                    tokio::spawn(async move {
                        let _ = connection(sock, state, events, cut, rules).await;
                    });
                }
            });
        }
        FakeApi {
            state,
            events,
            cut,
            rt: Some(rt),
            address,
        }
    }

    /// Create or replace an object (ADDED or MODIFIED), stamping its resourceVersion.
    pub fn apply(&self, kind: Kind, mut object: Value) {
        let mut s = self.state.lock().expect("state");
        s.rv += 1;
        let rv = s.rv;
        object["apiVersion"] = json!(kind.api_version());
        object["kind"] = json!(kind.kind);
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        if object["metadata"]["uid"].is_null() {
            object["metadata"]["uid"] = json!(format!("uid-{rv}"));
        }
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .expect("metadata.name")
            .to_string();
        let existed = s.objects.insert((kind, ns, name), object.clone()).is_some();
        let e = Event {
            rv,
            kind,
            kind_of_event: if existed { "MODIFIED" } else { "ADDED" },
            object,
        };
        s.log.push(e.clone());
        let _ = self.events.send(e);
    }

    pub fn delete(&self, kind: Kind, namespace: &str, name: &str) {
        let mut s = self.state.lock().expect("state");
        let Some(mut object) = s
            .objects
            .remove(&(kind, namespace.to_string(), name.to_string()))
        else {
            return;
        };
        s.rv += 1;
        let rv = s.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let e = Event {
            rv,
            kind,
            kind_of_event: "DELETED",
            object,
        };
        s.log.push(e.clone());
        let _ = self.events.send(e);
    }

    /// End every open watch stream, as a server restart or a load balancer timeout would.
    pub fn cut_watches(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// Forget the event log, as etcd compaction does while other writes move the revision on:
    /// a watch resuming from any resourceVersion it has seen gets 410 Gone and must relist.
    pub fn compact(&self) {
        let mut s = self.state.lock().expect("state");
        s.log.clear();
        s.rv += 1;
        s.oldest = s.rv;
    }

    /// Every request line served so far (`GET /api/v1/nodes?…`).
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().expect("state").requests.clone()
    }

    /// How many watches were answered 410 Gone.
    pub fn expired(&self) -> usize {
        self.state.lock().expect("state").expired
    }

    /// Requests refused by RBAC.
    pub fn denied(&self) -> Vec<String> {
        self.state.lock().expect("state").denied.clone()
    }

    /// A kubeconfig pointing at this server with a ServiceAccount-style bearer token.
    pub fn kubeconfig(&self, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: twill\n    namespace: {namespace}\ncurrent-context: fake\nusers:\n- name: twill\n  user:\n    token: fake-service-account-token\n",
            self.address
        )
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// What a request path names.
struct Target {
    kind: Kind,
    namespace: Option<String>,
    name: Option<String>,
}

fn route(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        rest => (None, rest),
    };
    let (plural, name) = match rest {
        [p] => (*p, None),
        [p, n] => (*p, Some(n.to_string())),
        _ => return None,
    };
    let kind = *KINDS
        .iter()
        .find(|k| k.group == group && k.version == version && k.plural == plural)?;
    if kind.namespaced != namespace.is_some() && name.is_some() {
        return None;
    }
    Some(Target {
        kind,
        namespace,
        name,
    })
}

fn query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Equality-based selectors: `k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-separated.
fn selects(selector: &str, labels: &Value) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels[k.trim()].as_str() != Some(v.trim())
        } else if let Some((k, v)) = term.split_once('=') {
            labels[k.trim()].as_str() == Some(v.trim_start_matches('=').trim())
        } else if let Some(k) = term.strip_prefix('!') {
            labels[k.trim()].is_null()
        } else {
            !labels[term.trim()].is_null()
        }
    })
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

async fn respond<W: AsyncWriteExt + Unpin>(
    w: &mut W,
    code: u16,
    body: &Value,
) -> std::io::Result<()> {
    let text = body.to_string();
    let reason = match code {
        200 => "OK",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    };
    w.write_all(
        format!(
            "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        )
        .as_bytes(),
    )
    .await
}

async fn chunk<W: AsyncWriteExt + Unpin>(w: &mut W, line: &Value) -> std::io::Result<()> {
    let text = format!("{line}\n");
    w.write_all(format!("{:x}\r\n{text}\r\n", text.len()).as_bytes())
        .await?;
    w.flush().await
}

async fn connection(
    sock: tokio::net::TcpStream,
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<Event>,
    mut cut: tokio::sync::watch::Receiver<u64>,
    rules: Arc<Vec<Rule>>,
) -> std::io::Result<()> {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut content_length = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).await? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    content_length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        if content_length > 0 {
            let mut body = vec![0; content_length];
            tokio::io::AsyncReadExt::read_exact(&mut r, &mut body).await?;
        }
        let request = line.trim_end().to_string();
        let mut words = request.split_whitespace();
        let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        state.lock().expect("state").requests.push(request.clone());
        let (path, q) = target.split_once('?').unwrap_or((target, ""));
        let q = query(q);
        let Some(t) = route(path) else {
            respond(
                &mut w,
                404,
                &status(404, "NotFound", &format!("no route {path}")),
            )
            .await?;
            continue;
        };
        let watch = q.get("watch").is_some_and(|v| v == "true" || v == "1");
        let verb = match (method, &t.name, watch) {
            ("GET", Some(_), _) => "get",
            ("GET", None, true) => "watch",
            ("GET", None, false) => "list",
            _ => {
                respond(
                    &mut w,
                    405,
                    &status(405, "MethodNotAllowed", "the fake serves reads only"),
                )
                .await?;
                continue;
            }
        };
        if !allowed(
            &rules,
            verb,
            &t.kind,
            t.namespace.as_deref(),
            t.name.as_deref(),
        ) {
            state.lock().expect("state").denied.push(request.clone());
            let msg = format!(
                "{verb} {} is forbidden for the service account by the manifest's RBAC",
                t.kind.plural
            );
            respond(&mut w, 403, &status(403, "Forbidden", &msg)).await?;
            continue;
        }
        let selector = q.get("labelSelector").cloned().unwrap_or_default();
        let in_scope = |k: &Kind, ns: &str, o: &Value| {
            *k == t.kind
                && t.namespace.as_deref().is_none_or(|n| n == ns)
                && selects(&selector, &o["metadata"]["labels"])
        };
        match verb {
            "get" => {
                let key = (
                    t.kind,
                    t.namespace.clone().unwrap_or_default(),
                    t.name.clone().unwrap_or_default(),
                );
                let body = state.lock().expect("state").objects.get(&key).cloned();
                match body {
                    Some(o) => respond(&mut w, 200, &o).await?,
                    None => {
                        let msg = format!("{} \"{}\" not found", t.kind.plural, key.2);
                        respond(&mut w, 404, &status(404, "NotFound", &msg)).await?
                    }
                }
            }
            "list" => {
                let body = {
                    let s = state.lock().expect("state");
                    let items: Vec<Value> = s
                        .objects
                        .iter()
                        .filter(|((k, ns, _), o)| in_scope(k, ns, o))
                        .map(|(_, o)| o.clone())
                        .collect();
                    json!({
                        "kind": format!("{}List", t.kind.kind),
                        "apiVersion": t.kind.api_version(),
                        "metadata": {"resourceVersion": s.rv.to_string()},
                        "items": items,
                    })
                };
                respond(&mut w, 200, &body).await?;
            }
            _ => {
                // Subscribe before reading the log so no event falls between the two.
                let mut live = events.subscribe();
                let from: u64 = q
                    .get("resourceVersion")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
                let timeout = q
                    .get("timeoutSeconds")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(300u64);
                w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .await?;
                let (expired, backlog, mut last) = {
                    let s = state.lock().expect("state");
                    let expired = from != 0 && from < s.oldest;
                    let backlog: Vec<Event> = s
                        .log
                        .iter()
                        .filter(|e| {
                            e.rv > from
                                && in_scope(
                                    &e.kind,
                                    e.object["metadata"]["namespace"].as_str().unwrap_or(""),
                                    &e.object,
                                )
                        })
                        .cloned()
                        .collect();
                    (expired, backlog, s.rv)
                };
                if expired {
                    state.lock().expect("state").expired += 1;
                    let msg = format!("too old resource version: {from} ({last})");
                    chunk(
                        &mut w,
                        &json!({"type": "ERROR", "object": status(410, "Expired", &msg)}),
                    )
                    .await?;
                    w.write_all(b"0\r\n\r\n").await?;
                    continue;
                }
                for e in backlog {
                    chunk(
                        &mut w,
                        &json!({"type": e.kind_of_event, "object": e.object}),
                    )
                    .await?;
                }
                let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                let cut_at = *cut.borrow_and_update();
                let ended_by_cut = loop {
                    tokio::select! {
                        e = live.recv() => match e {
                            Ok(e) if e.rv > from && in_scope(&e.kind, e.object["metadata"]["namespace"].as_str().unwrap_or(""), &e.object) => {
                                last = last.max(e.rv);
                                chunk(&mut w, &json!({"type": e.kind_of_event, "object": e.object})).await?;
                            }
                            Ok(_) => {}
                            Err(_) => break false,
                        },
                        _ = tick.tick(), if bookmarks => {
                            let rv = state.lock().expect("state").rv.max(last);
                            let object = json!({"kind": t.kind.kind, "apiVersion": t.kind.api_version(), "metadata": {"resourceVersion": rv.to_string()}});
                            chunk(&mut w, &json!({"type": "BOOKMARK", "object": object})).await?;
                        }
                        _ = cut.changed() => {
                            if *cut.borrow() != cut_at { break true; }
                        }
                        _ = tokio::time::sleep_until(deadline) => break false,
                    }
                };
                if ended_by_cut {
                    // A cut connection: no clean end of the stream.
                    return Ok(());
                }
                w.write_all(b"0\r\n\r\n").await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_selectors() {
        let t = route("/api/v1/nodes").unwrap();
        assert_eq!(t.kind, NODES);
        let t = route("/api/v1/namespaces/twill-system/secrets/tor").unwrap();
        assert_eq!(
            (t.kind, t.namespace.as_deref(), t.name.as_deref()),
            (SECRETS, Some("twill-system"), Some("tor"))
        );
        assert_eq!(
            route("/apis/twill.io/v1/bgppeers/x").unwrap().kind,
            BGP_PEERS
        );
        assert!(route("/api/v1/pods").is_none());
        let labels = json!({"rack": "a", "zone": "z1"});
        assert!(selects("rack=a", &labels));
        assert!(selects("rack==a,zone", &labels));
        assert!(!selects("rack!=a", &labels));
        assert!(selects("!gpu", &labels));
        assert!(!selects("gpu", &labels));
        assert_eq!(
            query("labelSelector=rack%3Da&watch=true")["labelSelector"],
            "rack=a"
        );
    }

    #[test]
    fn rbac_from_a_manifest() {
        let docs: Vec<Value> = vec![
            json!({"kind": "ClusterRole", "metadata": {"name": "twill"}, "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}]}),
            json!({"kind": "ClusterRoleBinding", "metadata": {"name": "twill"}, "roleRef": {"kind": "ClusterRole", "name": "twill"}, "subjects": [{"kind": "ServiceAccount", "name": "twill", "namespace": "twill-system"}]}),
            json!({"kind": "Role", "metadata": {"name": "twill", "namespace": "twill-system"}, "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}),
            json!({"kind": "RoleBinding", "metadata": {"name": "twill", "namespace": "twill-system"}, "roleRef": {"kind": "Role", "name": "twill"}, "subjects": [{"kind": "ServiceAccount", "name": "twill", "namespace": "twill-system"}]}),
        ];
        let r = rules_for(&docs, "twill-system", "twill");
        assert!(allowed(&r, "watch", &NODES, None, None));
        assert!(!allowed(&r, "delete", &NODES, None, Some("a1")));
        assert!(allowed(
            &r,
            "get",
            &SECRETS,
            Some("twill-system"),
            Some("tor")
        ));
        assert!(
            !allowed(&r, "get", &SECRETS, Some("kube-system"), Some("tor")),
            "secrets only in its namespace"
        );
        assert!(!allowed(&r, "list", &SECRETS, Some("twill-system"), None));
        assert!(
            rules_for(&docs, "default", "twill").is_empty(),
            "another service account"
        );
    }
}
