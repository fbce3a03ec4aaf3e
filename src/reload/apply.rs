//! Part of `reload`: [`Daemon::reload`], what a valid new config changes in a running
//! daemon. Everything is checked before anything is applied, so a refused reload leaves
//! the running settings whole.

use crate::api::Settings;
use crate::config::{Config, SupportCfg};
use crate::daemon::Daemon;
use crate::policy::Policies;

use super::certs::CertError;
use super::{restart, ReloadError, Reloaded};

impl Daemon {
    /// Applies what can change while running: the sampling policies (and
    /// `sample_on_first_match`), the support settings that have a live form (see
    /// [`live_support_keys`]), and the certificate files of every `tls:` block (read again;
    /// a server block may name new files). `started` is the config the daemon was started with: what
    /// differs from it in restart-only keys is named in [`Reloaded::needs_restart`].
    pub fn reload(&self, started: &Config, new: &Config) -> Result<Reloaded, ReloadError> {
        let ts = &new.tail_sampling;
        let policies = Policies::for_config(ts).map_err(ReloadError::Policies)?;
        let names = policies.names();
        let certificates = self
            .certs
            .stage_all(Some(new))
            .map_err(ReloadError::Certificates)?;
        self.buffer.set_policies(policies);
        let certificates = certificates.commit();
        let applied = {
            let mut running = self.support.lock();
            let applied = live_support_keys(&running, &new.support);
            self.apply_support(&new.support);
            *running = new.support.clone();
            applied
        };
        Ok(Reloaded {
            policies: names,
            applied,
            certificates,
            needs_restart: restart::needs_restart(started, new),
        })
    }

    /// Reads the certificate files of every `tls:` block again (as a reload does, without
    /// a config file): all in force, or none with every problem.
    pub fn reload_certificates(&self) -> Result<Vec<String>, ReloadError> {
        let staged = self
            .certs
            .stage_all(None)
            .map_err(ReloadError::Certificates)?;
        Ok(staged.commit())
    }

    /// Reads again the certificate files that changed since they were last read (a poll
    /// between reloads), each block on its own: the blocks now in force with new files,
    /// and the problems of those refused (they keep the certificate they have).
    pub fn reload_changed_certificates(&self) -> (Vec<String>, Vec<CertError>) {
        self.certs.reload_changed()
    }

    /// Puts the live support settings of `new` in force: the API's token, rate limit and
    /// trace URL for the next request, `watch_for` for the next complaint, the index's
    /// attributes for the spans that arrive from now on, the index's and the rescue
    /// buffer's bounds at their next eviction.
    fn apply_support(&self, new: &SupportCfg) {
        if let Some(api) = &self.api_settings {
            let previous = api.get();
            api.set(Settings::from_config(new, Some(&previous)));
        }
        self.desk.set_watch_for(new.complaints.watch_for);
        if let Some(index) = self.buffer.index() {
            index.set_bounds(
                new.index.retention,
                new.index.max_traces,
                new.index.max_bytes,
            );
            let attributes = &new.index.attributes;
            if !attributes.is_empty() {
                index.set_attributes(attributes);
            }
        }
        if let Some(rescue) = self.buffer.rescue_buffer() {
            let c = &new.complaints;
            rescue.set_limits(c.rescue_window, c.rescue_max_bytes);
        }
        self.desk
            .set_max_rescue_traces(new.complaints.max_rescue_traces);
        if let (Some(archive), Some(a)) = (self.buffer.archive(), &new.archive) {
            archive.set_bounds(a.retention, a.max_bytes);
        }
    }
}

/// The live support keys whose values differ between `a` and `b` (names only: the token's
/// value never leaves the config).
pub fn live_support_keys(a: &SupportCfg, b: &SupportCfg) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |key, differs: bool| {
        if differs {
            out.push(key);
        }
    };
    check(
        "support.api.auth_token",
        a.api.auth_token != b.api.auth_token,
    );
    check(
        "support.api.max_requests_per_second",
        a.api.max_requests_per_second != b.api.max_requests_per_second,
    );
    check("support.trace_url", a.trace_url != b.trace_url);
    check(
        "support.index.attributes",
        a.index.attributes != b.index.attributes
            && !a.index.attributes.is_empty()
            && !b.index.attributes.is_empty(),
    );
    check(
        "support.index.retention",
        a.index.retention != b.index.retention,
    );
    check(
        "support.index.max_traces",
        a.index.max_traces != b.index.max_traces,
    );
    check(
        "support.index.max_bytes",
        a.index.max_bytes != b.index.max_bytes,
    );
    if let (Some(x), Some(y)) = (&a.archive, &b.archive) {
        check("support.archive.retention", x.retention != y.retention);
        check("support.archive.max_bytes", x.max_bytes != y.max_bytes);
    }
    let (a, b) = (&a.complaints, &b.complaints);
    check("support.complaints.watch_for", a.watch_for != b.watch_for);
    check(
        "support.complaints.rescue_window",
        a.rescue_window != b.rescue_window,
    );
    check(
        "support.complaints.rescue_max_bytes",
        a.rescue_max_bytes != b.rescue_max_bytes,
    );
    check(
        "support.complaints.max_rescue_traces",
        a.max_rescue_traces != b.max_rescue_traces,
    );
    out
}
