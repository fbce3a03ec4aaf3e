//! The tier-wide support API: a member asks the others' support APIs (`cluster.peers[].api`)
//! and merges what they answer, so support can ask any member. Requests to members carry
//! `scope=member` (answer for yourself, do not ask further) and the caller's
//! `Authorization` header (the same token on every member). A member that does not answer
//! within [`TIMEOUT`], answers with an error, or has no `api` listed is reported in
//! `partial`, never waited for longer.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::export::ExportError;

/// How long a member's answer is waited for.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// Bodies larger than this are not read (a lookup answers at most 1000 rows).
const MAX_ANSWER: usize = 16 << 20;

/// The query parameter that asks a member to answer for itself only.
pub const MEMBER_ONLY: &str = "scope=member";

/// An HTTP client for the members' support APIs: HTTPS with `cluster.tls`.
#[derive(Clone)]
pub enum Asker {
    Plain(Client<HttpConnector, Full<Bytes>>),
    Tls(Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>),
}

impl Asker {
    /// Plaintext without `tls`; with it, HTTPS with its CA, client certificate and server
    /// name.
    pub fn new(tls: Option<&crate::export::config::TlsCfg>) -> Result<Asker, ExportError> {
        let builder = Client::builder(TokioExecutor::new());
        let Some(t) = tls else {
            return Ok(Asker::Plain(builder.build_http()));
        };
        let err = |e: crate::tls::TlsError| ExportError::Config {
            name: "cluster".into(),
            reason: e.message(),
        };
        let config = crate::tls::client_config(t).map_err(err)?;
        let connector =
            crate::tls::https_connector(config, t.server_name_override.as_deref(), false, TIMEOUT)
                .map_err(err)?;
        Ok(Asker::Tls(builder.build(connector)))
    }

    fn scheme(&self) -> &'static str {
        match self {
            Asker::Plain(_) => "http",
            Asker::Tls(_) => "https",
        }
    }
}

/// What one member answered: its HTTP status and JSON body, or why it did not.
pub type Answer = Result<(u16, Value), String>;

impl Asker {
    /// GET `path_and_query` (with [`MEMBER_ONLY`] added) from every member in `members`
    /// (name, api), concurrently; answers in the same order.
    pub async fn get_all(
        &self,
        members: &[(String, Option<String>)],
        path_and_query: &str,
        auth: Option<&http::HeaderValue>,
    ) -> Vec<Answer> {
        let asks = members
            .iter()
            .map(|(_, api)| self.get(api.as_deref(), path_and_query, auth));
        futures_util::future::join_all(asks).await
    }

    /// GET from one member.
    pub async fn get(
        &self,
        api: Option<&str>,
        path_and_query: &str,
        auth: Option<&http::HeaderValue>,
    ) -> Answer {
        self.call(http::Method::GET, api, path_and_query, auth, None)
            .await
    }

    /// POST a JSON body to one member.
    pub async fn post(
        &self,
        api: Option<&str>,
        path: &str,
        auth: Option<&http::HeaderValue>,
        body: &Value,
    ) -> Answer {
        self.call(http::Method::POST, api, path, auth, Some(body))
            .await
    }

    /// POST the same JSON body to every member in `members`, concurrently.
    pub async fn post_all(
        &self,
        members: &[(String, Option<String>)],
        path: &str,
        auth: Option<&http::HeaderValue>,
        body: &Value,
    ) -> Vec<Answer> {
        let asks = members
            .iter()
            .map(|(_, api)| self.post(api.as_deref(), path, auth, body));
        futures_util::future::join_all(asks).await
    }

    async fn call(
        &self,
        method: http::Method,
        api: Option<&str>,
        path_and_query: &str,
        auth: Option<&http::HeaderValue>,
        body: Option<&Value>,
    ) -> Answer {
        let api = api.ok_or("no api address in cluster.peers")?;
        let sep = if path_and_query.contains('?') {
            '&'
        } else {
            '?'
        };
        let uri = format!(
            "{}://{api}{path_and_query}{sep}{MEMBER_ONLY}",
            self.scheme()
        );
        let mut req = http::Request::builder().method(method).uri(&uri);
        if let Some(a) = auth {
            req = req.header(http::header::AUTHORIZATION, a);
        }
        let body = match body {
            Some(v) => {
                req = req.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let ask = async {
            let res = match self {
                Asker::Plain(c) => c.request(req).await,
                Asker::Tls(c) => c.request(req).await,
            }
            .map_err(|e| e.to_string())?;
            let status = res.status().as_u16();
            let body = http_body_util::Limited::new(res.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            Ok((status, v))
        };
        match tokio::time::timeout(TIMEOUT, ask).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {TIMEOUT:?}")),
        }
    }
}
