//! Encapsulation settings, named as in Calico's IPPool (`vxlanMode` / `ipipMode`).

use serde::Deserialize;
use std::fmt;
use std::str::FromStr;

/// When to encapsulate traffic to another node's pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
pub enum EncapMode {
    /// Every node-to-node path, on-link or not.
    Always,
    /// Only towards nodes outside every local subnet; on-link nodes get flannel host-gw routes.
    #[default]
    CrossSubnet,
    /// Never: off-link next hops are routed through the kernel's table (a BGP fabric carries them).
    Never,
}

/// Which tunnel carries encapsulated traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
pub enum EncapType {
    #[default]
    #[serde(rename = "VXLAN")]
    Vxlan,
    #[serde(rename = "IPIP")]
    Ipip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
pub struct Encap {
    #[serde(rename = "type", default)]
    pub kind: EncapType,
    #[serde(default)]
    pub mode: EncapMode,
}

/// The VXLAN device's parameters; defaults as Calico's (VNI 4096, the IANA port 4789).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanConfig {
    pub device: String,
    pub vni: u32,
    pub port: u16,
}

impl Default for VxlanConfig {
    fn default() -> VxlanConfig {
        VxlanConfig {
            device: "twill.vxlan".into(),
            vni: 4096,
            port: 4789,
        }
    }
}

/// A value that names no mode or type; says which values exist.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{value} is not one of {expected}")]
pub struct BadName {
    pub value: String,
    pub expected: &'static str,
}

impl FromStr for EncapMode {
    type Err = BadName;
    fn from_str(s: &str) -> Result<Self, BadName> {
        match s {
            "Always" => Ok(EncapMode::Always),
            "CrossSubnet" => Ok(EncapMode::CrossSubnet),
            "Never" => Ok(EncapMode::Never),
            _ => Err(BadName {
                value: s.into(),
                expected: "Always, CrossSubnet, Never",
            }),
        }
    }
}

impl FromStr for EncapType {
    type Err = BadName;
    fn from_str(s: &str) -> Result<Self, BadName> {
        match s {
            "VXLAN" => Ok(EncapType::Vxlan),
            "IPIP" => Ok(EncapType::Ipip),
            _ => Err(BadName {
                value: s.into(),
                expected: "VXLAN, IPIP",
            }),
        }
    }
}

impl fmt::Display for EncapMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EncapMode::Always => "Always",
            EncapMode::CrossSubnet => "CrossSubnet",
            EncapMode::Never => "Never",
        })
    }
}

impl fmt::Display for EncapType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EncapType::Vxlan => "VXLAN",
            EncapType::Ipip => "IPIP",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_calicos() {
        assert_eq!("CrossSubnet".parse(), Ok(EncapMode::CrossSubnet));
        assert_eq!("IPIP".parse(), Ok(EncapType::Ipip));
        let e = "crosssubnet".parse::<EncapMode>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "crosssubnet is not one of Always, CrossSubnet, Never"
        );
        assert_eq!(Encap::default().mode, EncapMode::CrossSubnet);
        assert_eq!(Encap::default().kind, EncapType::Vxlan);
    }
}
