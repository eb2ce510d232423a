//! The host's neighbour tables, sized for a lab. The kernel keeps one neighbour table for all
//! network namespaces, limited by the host's `gc_thresh3` (1,024 by default): a 40-node lab
//! on one subnet needs more (every node resolves every other, plus the tunnel's entries and
//! the pods), and when the table is full new entries fail silently — sessions sat in Connect
//! with no error anywhere. `lab up` raises the limits when the topology needs it and `lab down`
//! puts back what it found, unless someone changed them since.

use super::LabError;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One family's limits (`gc_thresh1`, `gc_thresh2`, `gc_thresh3`) as found and as set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizing {
    pub family: String,
    pub found: [u64; 3],
    pub set: [u64; 3],
}

fn file(family: &str, k: usize) -> PathBuf {
    PathBuf::from(format!(
        "/proc/sys/net/{family}/neigh/default/gc_thresh{}",
        k + 1
    ))
}

/// Entries a topology may need at once, with room to spare: every node resolving every
/// other (one segment, the worst case) and its tunnel's entry for each, each pod its gateway
/// and its node the pod.
pub fn needed(nodes: usize, pods: usize) -> u64 {
    (2 * (2 * nodes * nodes + 2 * pods)) as u64
}

/// Raise `gc_thresh3` (and `gc_thresh2`, the soft limit, to ¾ of it) to `needed` in both
/// families where they are lower; what was changed, to put back.
pub fn raise(needed: u64) -> Result<Vec<Sizing>, LabError> {
    let mut out = Vec::new();
    for family in ["ipv4", "ipv6"] {
        let mut found = [0u64; 3];
        for (k, v) in found.iter_mut().enumerate() {
            let p = file(family, k);
            let text = std::fs::read_to_string(&p).map_err(|source| LabError::Io {
                path: p.display().to_string(),
                source,
            })?;
            *v = text.trim().parse().unwrap_or(0);
        }
        if found[2] >= needed {
            continue;
        }
        let set = [found[0], found[1].max(needed * 3 / 4), needed];
        // gc_thresh3 first: the kernel wants thresh2 ≤ thresh3.
        for k in [2, 1] {
            let p = file(family, k);
            std::fs::write(&p, set[k].to_string()).map_err(|source| LabError::Io {
                path: p.display().to_string(),
                source,
            })?;
        }
        out.push(Sizing {
            family: family.into(),
            found,
            set,
        });
    }
    Ok(out)
}

/// Put back what `raise` found, where the limits are still what it set.
pub fn restore(sizings: &[Sizing]) {
    for s in sizings {
        let now: Vec<u64> = (0..3)
            .map(|k| {
                std::fs::read_to_string(file(&s.family, k))
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                    .unwrap_or(0)
            })
            .collect();
        if now[..] != s.set[..] {
            continue;
        }
        // gc_thresh2 first, so thresh2 ≤ thresh3 holds on the way down.
        for k in [1, 2] {
            let _ = std::fs::write(file(&s.family, k), s.found[k].to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn forty_nodes_on_one_subnet_need_more_than_the_default_table() {
        assert!(super::needed(40, 0) > 1024);
        assert!(
            super::needed(4, 8) < 1024,
            "small labs leave the host alone"
        );
    }
}
