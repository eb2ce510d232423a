//! Lab harness: network namespaces, real BGP daemons, cleanup guards.
