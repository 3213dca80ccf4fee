//! azure_core's `HttpClient` on airlock's reqwest client (rustls with the ring provider, no
//! redirects followed). azure_core built without its `reqwest` feature has no transport of its
//! own and panics when none is given: every azure_identity credential built in `credential`
//! gets this one through `client_options()`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use azure_core::error::{Error, ErrorKind};
use azure_core::http::headers::{HeaderName, HeaderValue, Headers};
use azure_core::http::{
    AsyncRawResponse, Body, ClientOptions, ExponentialRetryOptions, HttpClient, Method, Request,
    RetryOptions, Transport,
};

/// The Azure Instance Metadata Service: answers within milliseconds on an Azure VM and not at
/// all elsewhere, so requests to it get a short timeout (as other Azure SDKs probe it).
const IMDS_HOST: &str = "169.254.169.254";
const IMDS_TIMEOUT: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A reqwest client for Azure endpoints.
#[derive(Clone, Debug)]
pub struct ReqwestTransport {
    client: reqwest::Client,
}

impl ReqwestTransport {
    pub fn new() -> Result<ReqwestTransport, reqwest::Error> {
        crate::registry::ensure_crypto_provider();
        let client = crate::registry::tls::client_builder()
            .user_agent(concat!("airlock/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(ReqwestTransport { client })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

/// Client options for an azure_identity credential: this transport and a short retry
/// (the chain moves on to the next credential rather than waiting a minute on one).
pub fn client_options(t: &ReqwestTransport, cloud: crate::config::AzureCloud) -> ClientOptions {
    ClientOptions {
        transport: Some(Transport::new(Arc::new(t.clone()))),
        retry: RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: azure_core::time::Duration::milliseconds(200),
            max_retries: 2,
            max_total_elapsed: azure_core::time::Duration::seconds(15),
            max_delay: azure_core::time::Duration::seconds(5),
        }),
        cloud: super::identity_cloud(cloud),
        ..ClientOptions::default()
    }
}

fn method(m: Method) -> reqwest::Method {
    match m {
        Method::Delete => reqwest::Method::DELETE,
        Method::Get => reqwest::Method::GET,
        Method::Head => reqwest::Method::HEAD,
        Method::Patch => reqwest::Method::PATCH,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        // Method is non-exhaustive.
        #[allow(unreachable_patterns)]
        _ => reqwest::Method::GET,
    }
}

#[async_trait::async_trait]
impl HttpClient for ReqwestTransport {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let url = request.url().clone();
        let mut req = self.client.request(method(request.method()), url.clone());
        for (name, value) in request.headers().iter() {
            req = req.header(name.as_str(), value.as_str());
        }
        req = match request.body() {
            Body::Bytes(b) => req.body(b.clone()),
            #[allow(unreachable_patterns)]
            _ => {
                return Err(Error::with_message(
                    ErrorKind::Other,
                    "streamed request bodies are not supported by airlock's transport",
                ));
            }
        };
        let timeout = if url.host_str() == Some(IMDS_HOST) {
            IMDS_TIMEOUT
        } else {
            REQUEST_TIMEOUT
        };
        let resp = req.timeout(timeout).send().await.map_err(|e| {
            let kind = if e.is_connect() {
                ErrorKind::Connection
            } else {
                ErrorKind::Io
            };
            let e = crate::registry::error::redact_url(e);
            Error::with_error(kind, e, "request to an Azure endpoint failed")
        })?;
        let status = resp.status().as_u16();
        let headers: HashMap<HeaderName, HeaderValue> = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    HeaderName::from(k.as_str().to_owned()),
                    HeaderValue::from(v.to_str().ok()?.to_owned()),
                ))
            })
            .collect();
        let body = resp.bytes().await.map_err(|e| {
            Error::with_error(
                ErrorKind::Io,
                crate::registry::error::redact_url(e),
                "reading an Azure response failed",
            )
        })?;
        Ok(AsyncRawResponse::from_bytes(
            status.into(),
            Headers::from(headers),
            body,
        ))
    }
}
