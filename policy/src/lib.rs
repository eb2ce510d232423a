//! NetworkPolicy enforcement: filled by a later issue.
