//! `cluster:` as the daemon runs it (checked by `config::build`).

/// One member of the tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCfg {
    /// `host:port` of its OTLP/gRPC receiver: where the others forward its traces' spans,
    /// and its name in the ring.
    pub otlp: String,
    /// `host:port` of its support API (for the tier-wide API, not built yet).
    pub api: Option<String>,
}

/// `cluster: { self, peers }`: a static member list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterCfg {
    /// This member's `otlp` as `peers` lists it.
    pub me: String,
    /// Every member, this one included.
    pub peers: Vec<PeerCfg>,
    /// `cluster.tls`: members forward and ask each other over TLS with these client
    /// settings (their receivers and support APIs serve TLS); None: plaintext.
    pub tls: Option<crate::export::config::TlsCfg>,
}
