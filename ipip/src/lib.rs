//! Tunnel fallback (VXLAN / IPIP): filled by the ipip issue.
