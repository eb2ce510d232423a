//! A real Kubernetes control plane in a lab namespace: etcd and kube-apiserver v1.20.2 (built or
//! reused by `scripts/kube.sh`), listening on the namespace's address on the lab network as a
//! control-plane node would, with a throwaway CA, RBAC and an audit log; on demand
//! kube-controller-manager (node IPAM, ServiceAccount tokens). Static tokens: the admin's, and
//! one for the agent's ServiceAccount user `twill-system/twill` for tests that run no
//! controller-manager (RBAC matches its user and groups as it would a real token's). Everything
//! it starts and writes goes on drop.

use crate::netns::{Netns, TempDir};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The directory with `kube-apiserver`, `etcd` and `kubectl`: `scripts/kube.sh` builds them the
/// first time and prints it (a cached run answers at once).
pub fn bin_dir() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kube.sh");
    let out = Command::new(&script).output().expect("scripts/kube.sh");
    assert!(
        out.status.success(),
        "scripts/kube.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(text.lines().last().expect("bin dir").trim())
}

pub struct Kube {
    pub dir: TempDir,
    bin: PathBuf,
    ns: String,
    children: Vec<Child>,
    /// `https://ADDRESS:6443`.
    pub server: String,
    /// kubeconfig of the cluster admin (`system:masters`).
    pub admin: PathBuf,
    /// kubeconfig of the agent's ServiceAccount, `system:serviceaccount:twill-system:twill`.
    pub agent: PathBuf,
}

const ADMIN_TOKEN: &str = "admin-token-for-tests";
const AGENT_TOKEN: &str = "twill-agent-token-for-tests";

/// A kubeconfig for `server` (its CA in `ca`) authenticating with `token`.
fn kubeconfig(server: &str, ca: &Path, token: &str, namespace: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    certificate-authority: {}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context: {{cluster: test, user: u, namespace: {namespace}}}\ncurrent-context: c\n",
        ca.display()
    )
}

fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn spawn(ns: &str, args: &[&str], log: &Path) -> Child {
    let f = std::fs::File::create(log).expect("log");
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .stdout(f.try_clone().expect("log"))
        .stderr(f)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {args:?}: {e}"))
}

impl Kube {
    /// etcd (on the namespace's loopback) and kube-apiserver on `address`:6443 inside `ns`.
    /// Dual-stack Node pod CIDRs need the `IPv6DualStack` feature gate on 1.20 (alpha there):
    /// without it the server silently keeps only the first.
    pub fn start(ns: &Netns, address: &str) -> Kube {
        let bin = bin_dir();
        let dir = TempDir::new("kube");
        let d = &dir.path.clone();
        openssl(d, &["genrsa", "-out", "ca.key", "2048"]);
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-subj",
                "/CN=twill-test-ca",
                "-days",
                "2",
                "-out",
                "ca.crt",
            ],
        );
        openssl(d, &["genrsa", "-out", "server.key", "2048"]);
        std::fs::write(
            d.join("san.cnf"),
            format!("subjectAltName=IP:{address},IP:127.0.0.1,DNS:kubernetes,DNS:localhost\n"),
        )
        .unwrap();
        openssl(
            d,
            &[
                "req",
                "-new",
                "-key",
                "server.key",
                "-subj",
                "/CN=kube-apiserver",
                "-out",
                "server.csr",
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "san.cnf",
                "-out",
                "server.crt",
            ],
        );
        openssl(d, &["genrsa", "-out", "sa.key", "2048"]);
        openssl(d, &["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
        std::fs::write(
            d.join("tokens.csv"),
            format!(
                "{ADMIN_TOKEN},admin,1,\"system:masters\"\n{AGENT_TOKEN},system:serviceaccount:twill-system:twill,2,\"system:serviceaccounts,system:serviceaccounts:twill-system\"\n"
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("audit.yaml"),
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Metadata\n",
        )
        .unwrap();
        let p = |f: &str| d.join(f).display().to_string();
        let etcd = spawn(
            &ns.name,
            &[
                &bin.join("etcd").display().to_string(),
                "--data-dir",
                &p("etcd"),
                "--listen-client-urls",
                "http://127.0.0.1:2379",
                "--advertise-client-urls",
                "http://127.0.0.1:2379",
                "--listen-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-advertise-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-cluster",
                "default=http://127.0.0.1:2380",
            ],
            &d.join("etcd.log"),
        );
        let mut kube = Kube {
            bin: bin.clone(),
            ns: ns.name.clone(),
            children: vec![etcd],
            server: format!("https://{address}:6443"),
            admin: d.join("admin.kubeconfig"),
            agent: d.join("agent.kubeconfig"),
            dir,
        };
        let api = spawn(
            &ns.name,
            &[
                &bin.join("kube-apiserver").display().to_string(),
                "--etcd-servers=http://127.0.0.1:2379",
                &format!("--bind-address={address}"),
                &format!("--advertise-address={address}"),
                "--secure-port=6443",
                &format!("--tls-cert-file={}", p("server.crt")),
                &format!("--tls-private-key-file={}", p("server.key")),
                &format!("--client-ca-file={}", p("ca.crt")),
                &format!("--token-auth-file={}", p("tokens.csv")),
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc",
                &format!("--service-account-key-file={}", p("sa.pub")),
                &format!("--service-account-signing-key-file={}", p("sa.key")),
                "--service-cluster-ip-range=10.96.0.0/16",
                "--feature-gates=IPv6DualStack=true",
                &format!("--audit-policy-file={}", p("audit.yaml")),
                &format!("--audit-log-path={}", p("audit.log")),
                &format!("--cert-dir={}", p("certs")),
            ],
            &d.join("apiserver.log"),
        );
        kube.children.push(api);
        for (file, token) in [(&kube.admin, ADMIN_TOKEN), (&kube.agent, AGENT_TOKEN)] {
            let text = kubeconfig(&kube.server, &d.join("ca.crt"), token, "twill-system");
            std::fs::write(file, text).unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            if kube
                .kubectl_output(&["get", "--raw", "/readyz"])
                .status
                .success()
            {
                return kube;
            }
            if std::time::Instant::now() > deadline {
                let tail = |f: &str| {
                    let t = std::fs::read_to_string(kube.dir.join(f)).unwrap_or_default();
                    let lines: Vec<&str> = t.lines().collect();
                    lines[lines.len().saturating_sub(15)..].join("\n")
                };
                panic!(
                    "kube-apiserver not ready after 90 s\n--- apiserver.log\n{}\n--- etcd.log\n{}",
                    tail("apiserver.log"),
                    tail("etcd.log")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn kubectl_output(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(self.bin.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.admin)
            // Every call bounded: a hung connection must not outlast the callers' deadlines.
            .arg("--request-timeout=10s")
            .args(args)
            .output()
            .expect("kubectl")
    }

    /// `kubectl` as the admin, from inside the control plane's namespace: (success, stdout +
    /// stderr).
    pub fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let o = self.kubectl_output(args);
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }

    /// The request URIs of `user`'s requests with `verb` (`list`, `watch`), from the audit log.
    pub fn uris(&self, user: &str, verb: &str) -> Vec<String> {
        self.audit()
            .into_iter()
            .filter(|e| e["user"]["username"] == user && e["verb"] == verb)
            .filter_map(|e| e["requestURI"].as_str().map(String::from))
            .collect()
    }

    /// Set a pod's status as its kubelet would (`PATCH …/pods/NAME/status`: kubectl v1.20 has
    /// no `--subresource`), as the admin, from inside the control plane's namespace.
    pub fn patch_pod_status(&self, namespace: &str, name: &str, status: &Value) {
        let url = format!(
            "{}/api/v1/namespaces/{namespace}/pods/{name}/status",
            self.server
        );
        let o = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "curl",
                "-sS",
                "--fail-with-body",
                "--max-time",
                "10",
            ])
            .arg("--cacert")
            .arg(self.dir.join("ca.crt"))
            .args(["-H", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
            .args([
                "-H",
                "Content-Type: application/merge-patch+json",
                "-X",
                "PATCH",
            ])
            .args([
                "--data",
                &serde_json::json!({"status": status}).to_string(),
                &url,
            ])
            .output()
            .expect("curl");
        assert!(
            o.status.success(),
            "PATCH {url}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// `kubectl apply -f -` of one object (JSON); panics with kubectl's words if refused.
    pub fn apply(&self, obj: &Value) {
        let (ok, out) = self.apply_result(obj);
        assert!(ok, "kubectl apply refused {obj}: {out}");
    }

    /// `kubectl apply -f -` of one object: (accepted, what kubectl said).
    pub fn apply_result(&self, obj: &Value) -> (bool, String) {
        self.apply_text(&obj.to_string())
    }

    /// `kubectl apply -f -` of a manifest (YAML or JSON).
    pub fn apply_text(&self, text: &str) -> (bool, String) {
        let mut c = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(self.bin.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.admin)
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl");
        use std::io::Write;
        c.stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .expect("kubectl stdin");
        let o = c.wait_with_output().expect("kubectl");
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }

    /// Every audit event (one JSON object per line of the audit log).
    pub fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("audit.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Audit events of `user` that the server refused (403).
    pub fn denied(&self, user: &str) -> Vec<String> {
        self.audit()
            .into_iter()
            .filter(|e| e["user"]["username"] == user && e["responseStatus"]["code"] == 403)
            .map(|e| format!("{} {}", e["verb"], e["requestURI"]))
            .collect()
    }

    /// Start kube-controller-manager with what a cluster's Node and ServiceAccount need: node
    /// IPAM (each Node gets a pod CIDR per family of `cluster_cidr`, a /24 and a /64), and the
    /// ServiceAccount token controller (each ServiceAccount gets a token Secret).
    pub fn start_controllers(&mut self, ns: &Netns, cluster_cidr: &str) {
        let p = |f: &str| self.dir.join(f).display().to_string();
        let kcm = spawn(
            &ns.name,
            &[
                &self
                    .bin
                    .join("kube-controller-manager")
                    .display()
                    .to_string(),
                &format!("--kubeconfig={}", self.admin.display()),
                "--controllers=nodeipam,serviceaccount,serviceaccount-token",
                "--allocate-node-cidrs=true",
                &format!("--cluster-cidr={cluster_cidr}"),
                "--node-cidr-mask-size-ipv4=24",
                "--node-cidr-mask-size-ipv6=64",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--feature-gates=IPv6DualStack=true",
                &format!("--service-account-private-key-file={}", p("sa.key")),
                &format!("--root-ca-file={}", p("ca.crt")),
                "--leader-elect=false",
                "--port=0",
                "--secure-port=0",
            ],
            &self.dir.join("controller-manager.log"),
        );
        self.children.push(kcm);
    }

    /// A kubeconfig with the real token the token controller issued to ServiceAccount
    /// `namespace/name` (waits for it).
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let token = loop {
            let (ok, secret) = self.kubectl(&[
                "get",
                "serviceaccount",
                name,
                "-n",
                namespace,
                "-o",
                "jsonpath={.secrets[0].name}",
            ]);
            if ok && !secret.trim().is_empty() {
                let (ok, b64) = self.kubectl(&[
                    "get",
                    "secret",
                    secret.trim(),
                    "-n",
                    namespace,
                    "-o",
                    "jsonpath={.data.token}",
                ]);
                if ok && !b64.trim().is_empty() {
                    let o = Command::new("base64")
                        .arg("-d")
                        .stdin(Stdio::piped())
                        .stdout(Stdio::piped())
                        .spawn()
                        .and_then(|mut c| {
                            use std::io::Write;
                            c.stdin.take().unwrap().write_all(b64.trim().as_bytes())?;
                            c.wait_with_output()
                        })
                        .expect("base64");
                    break String::from_utf8_lossy(&o.stdout).into_owned();
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no token for {namespace}/{name} after 60 s:\n{}",
                std::fs::read_to_string(self.dir.join("controller-manager.log"))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        let file = self.dir.join(format!("{namespace}-{name}.kubeconfig"));
        let text = kubeconfig(&self.server, &self.dir.join("ca.crt"), &token, namespace);
        std::fs::write(&file, text).unwrap();
        file
    }

    /// `deploy/twill.yaml` applied as the README says (CRDs, RBAC, the DaemonSet), its CRDs
    /// established before returning.
    pub fn install_twill(&self) {
        let manifest = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/twill.yaml"),
        )
        .expect("deploy/twill.yaml");
        let (ok, out) = self.apply_text(&manifest);
        assert!(ok, "kubectl apply -f deploy/twill.yaml: {out}");
        for crd in ["bgpconfigurations.twill.io", "bgppeers.twill.io"] {
            let (ok, out) = self.kubectl(&[
                "wait",
                "--for=condition=Established",
                "--timeout=30s",
                &format!("crd/{crd}"),
            ]);
            assert!(ok, "{crd}: {out}");
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("apiserver.log")).unwrap_or_default()
    }
}

impl Drop for Kube {
    fn drop(&mut self) {
        // The apiserver first, then etcd.
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
