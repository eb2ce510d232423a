//! Route programmer: filled by the felix-lite issue.
