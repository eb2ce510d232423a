//! A pod: a network namespace wired to its node's `cni0` bridge by the reference `bridge` and
//! `host-local` CNI plugins, exactly as flannel's and Twill's CNI configuration asks them to.

use crate::netns::{Netns, TempDir};
use std::io::Write;
use std::process::{Command, Stdio};

/// Where Debian's containernetworking-plugins package puts the plugins.
pub const CNI_PATH: &str = "/usr/lib/cni";

pub struct Pod {
    pub ns: Netns,
    pub ip: String,
    _ipam: TempDir,
}

impl Pod {
    /// Run the bridge plugin's ADD inside `node` for a new pod namespace, with `pod_cidr` for
    /// host-local and `mtu` for the veth.
    pub fn add(node: &Netns, pod_cidr: &str, mtu: u32) -> Pod {
        let ns = Netns::new("pod");
        let ipam = TempDir::new("ipam");
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "twill",
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": true,
            "ipMasq": false,
            "mtu": mtu,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": pod_cidr}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": ipam.path.display().to_string(),
            }
        });
        let mut child = Command::new("ip")
            .args(["netns", "exec", &node.name, &format!("{CNI_PATH}/bridge")])
            .env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", &ns.name)
            .env("CNI_NETNS", ns.path())
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", CNI_PATH)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the bridge CNI plugin");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(conf.to_string().as_bytes())
            .expect("write CNI config");
        let out = child.wait_with_output().expect("bridge plugin");
        assert!(
            out.status.success(),
            "bridge plugin ADD failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let result: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("CNI result JSON");
        let ip = result["ips"][0]["address"]
            .as_str()
            .expect("an address in the CNI result")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        Pod {
            ns,
            ip,
            _ipam: ipam,
        }
    }

    /// `ping -c 1 -W 1` to `ip`, optionally with DF set and a payload size; true if answered.
    pub fn ping(&self, ip: &str, df_size: Option<u32>) -> bool {
        let size = df_size.map(|s| s.to_string());
        let mut args = vec!["ping", "-c", "1", "-W", "1"];
        if let Some(s) = &size {
            args.extend_from_slice(&["-M", "do", "-s", s]);
        }
        args.push(ip);
        self.ns.try_exec(&args).status.success()
    }
}
