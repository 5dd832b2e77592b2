//! SSRF-safe image download over HTTP/1.1 (hyper) and TLS (rustls + ring).

use std::future::{poll_fn, Future};
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{header, Request};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::addr::is_allowed;
use crate::{ImageError, UrlError};

/// What [`fetch`] may download and how long it may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPolicy {
    /// Permit loopback, private, link-local and other non-public unicast
    /// destinations (tests, closed networks). Unspecified, multicast and
    /// broadcast addresses stay refused.
    pub allow_private: bool,
    /// Time limit for the whole download, redirects included.
    pub timeout: Duration,
    /// Largest accepted body in bytes.
    pub max_bytes: usize,
    /// Most redirects followed.
    pub max_redirects: u32,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        FetchPolicy {
            allow_private: false,
            timeout: Duration::from_secs(5),
            max_bytes: 3_000_000,
            max_redirects: 3,
        }
    }
}

/// Downloads `url` under `policy` and returns the body.
///
/// Errors: [`ImageError::InvalidUrl`] for a refused URL (scheme, port,
/// address, credentials), an unreachable host, a non-2xx answer or too many
/// redirects; [`ImageError::Timeout`] when the whole exchange outlasts
/// `policy.timeout`; [`ImageError::TooLarge`] as soon as the body exceeds
/// `policy.max_bytes`.
pub async fn fetch(url: &str, policy: &FetchPolicy) -> Result<Vec<u8>, ImageError> {
    let allow_private = policy.allow_private;
    fetch_checked(url, policy, &|ip| is_allowed(ip, allow_private)).await
}

/// [`fetch`] with the address check supplied, so tests can admit one
/// loopback address and refuse another.
async fn fetch_checked(
    url: &str,
    policy: &FetchPolicy,
    allowed: &(dyn Fn(IpAddr) -> bool + Sync),
) -> Result<Vec<u8>, ImageError> {
    tokio::time::timeout(policy.timeout, follow(url, policy, allowed))
        .await
        .unwrap_or(Err(ImageError::Timeout))
}

async fn follow(
    url: &str,
    policy: &FetchPolicy,
    allowed: &(dyn Fn(IpAddr) -> bool + Sync),
) -> Result<Vec<u8>, ImageError> {
    let mut target = Target::parse(url)?;
    let mut redirects = 0;
    loop {
        match get_once(&target, policy, allowed).await? {
            Outcome::Body(body) => return Ok(body),
            Outcome::Redirect(location) => {
                if redirects >= policy.max_redirects {
                    return Err(UrlError::TooManyRedirects(policy.max_redirects).into());
                }
                redirects += 1;
                target = Target::parse(&target.join(&location))?;
            }
        }
    }
}

/// A validated request target: scheme and port already checked.
#[derive(Debug)]
struct Target {
    https: bool,
    /// Host without IPv6 brackets.
    host: String,
    port: u16,
    /// `host[:port]` as written, for the Host header.
    authority: String,
    path_and_query: String,
}

fn port_allowed(port: u16) -> bool {
    port == 80 || port == 443 || (10_000..=12_000).contains(&port)
}

/// Whether `s` starts with an RFC 3986 scheme followed by `:`.
fn scheme_of(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

impl Target {
    fn parse(url: &str) -> Result<Target, UrlError> {
        let url = url.trim();
        // The fragment never goes on the wire.
        let url = url.split('#').next().unwrap_or(url);
        let https = match scheme_of(url) {
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            Some(_) => return Err(UrlError::Scheme),
            None => return Err(UrlError::Malformed),
        };
        let uri: hyper::Uri = url.parse().map_err(|_| UrlError::Malformed)?;
        let authority = uri.authority().ok_or(UrlError::Malformed)?;
        if authority.as_str().contains('@') {
            return Err(UrlError::Userinfo);
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        if !port_allowed(port) {
            return Err(UrlError::Port(port));
        }
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(UrlError::Malformed);
        }
        let path_and_query = match uri.path_and_query().map(|p| p.as_str()) {
            Some(p) if p.starts_with('/') => p.to_owned(),
            Some(p) => format!("/{p}"),
            None => "/".to_owned(),
        };
        Ok(Target {
            https,
            host: host.to_owned(),
            port,
            authority: authority.as_str().to_owned(),
            path_and_query,
        })
    }

    /// Resolves a `Location` header against this target. Dot segments are
    /// left for the server to interpret; the result is re-validated anyway.
    fn join(&self, location: &str) -> String {
        let location = location.trim();
        let scheme = if self.https { "https" } else { "http" };
        if scheme_of(location).is_some() {
            location.to_owned()
        } else if let Some(rest) = location.strip_prefix("//") {
            format!("{scheme}://{rest}")
        } else if location.starts_with('/') {
            format!("{scheme}://{}{location}", self.authority)
        } else {
            let path = self
                .path_and_query
                .split('?')
                .next()
                .unwrap_or(&self.path_and_query);
            let base = if location.starts_with('?') {
                path
            } else {
                &path[..path.rfind('/').map_or(0, |i| i + 1)]
            };
            format!("{scheme}://{}{base}{location}", self.authority)
        }
    }
}

enum Outcome {
    Body(Vec<u8>),
    Redirect(String),
}

/// Resolves once and checks every address; the caller connects only to
/// addresses from this list, so a second DNS answer can never be used.
async fn resolve(
    target: &Target,
    allowed: &(dyn Fn(IpAddr) -> bool + Sync),
) -> Result<Vec<SocketAddr>, UrlError> {
    let addrs: Vec<SocketAddr> = match target.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, target.port)],
        Err(_) => tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|_| UrlError::Resolve)?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(UrlError::Resolve);
    }
    // One bad address refuses the host: picking only the good ones would let
    // an attacker-controlled name probe internal hosts whenever the good ones
    // fail to connect.
    if let Some(bad) = addrs.iter().find(|a| !allowed(a.ip())) {
        return Err(UrlError::ForbiddenAddress(bad.ip()));
    }
    Ok(addrs)
}

async fn connect(addrs: &[SocketAddr]) -> Result<TcpStream, UrlError> {
    for addr in addrs {
        if let Ok(stream) = TcpStream::connect(addr).await {
            return Ok(stream);
        }
    }
    Err(UrlError::Connect)
}

fn tls_connector() -> Result<TlsConnector, UrlError> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        // An explicit provider: relying on the process default would panic if
        // another crate in the binary enabled a second rustls backend.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    });
    match config {
        Ok(c) => Ok(TlsConnector::from(Arc::clone(c))),
        Err(e) => Err(UrlError::Tls(e.clone())),
    }
}

async fn get_once(
    target: &Target,
    policy: &FetchPolicy,
    allowed: &(dyn Fn(IpAddr) -> bool + Sync),
) -> Result<Outcome, ImageError> {
    let addrs = resolve(target, allowed).await?;
    let tcp = connect(&addrs).await?;
    if target.https {
        let name = ServerName::try_from(target.host.clone()).map_err(|_| UrlError::Malformed)?;
        let tls = tls_connector()?
            .connect(name, tcp)
            .await
            .map_err(|e| UrlError::Tls(e.to_string()))?;
        exchange(TokioIo::new(tls), target, policy).await
    } else {
        exchange(TokioIo::new(tcp), target, policy).await
    }
}

fn http_err(e: impl std::fmt::Display) -> ImageError {
    UrlError::Http(e.to_string()).into()
}

/// One GET on a fresh connection; the connection is driven in this task
/// (not spawned) so that a timeout drops the socket with everything else.
async fn exchange<I>(io: I, target: &Target, policy: &FetchPolicy) -> Result<Outcome, ImageError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(http_err)?;
    let request = Request::get(target.path_and_query.as_str())
        .header(header::HOST, target.authority.as_str())
        .header(header::USER_AGENT, "facegate")
        .header(header::ACCEPT, "image/jpeg, image/png, */*;q=0.5")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(http_err)?;
    let max_bytes = policy.max_bytes;
    let work = async move {
        let response = sender.send_request(request).await.map_err(http_err)?;
        let status = response.status();
        if matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.trim().is_empty())
                .ok_or(UrlError::BadRedirect)?;
            return Ok(Outcome::Redirect(location.to_owned()));
        }
        if !status.is_success() {
            return Err(UrlError::Status(status.as_u16()).into());
        }
        let too_large = ImageError::TooLarge { max_bytes };
        let declared = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > max_bytes as u64) {
            return Err(too_large);
        }
        let mut body = response.into_body();
        let mut buf = Vec::with_capacity(declared.map_or(0, |n| n as usize));
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(http_err)?.into_data() {
                if buf.len() + data.len() > max_bytes {
                    return Err(too_large);
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(Outcome::Body(buf))
    };
    drive(conn, work).await
}

/// Polls the request future `work` to completion while also polling the
/// connection `conn` that feeds it (until `conn` finishes).
async fn drive<C: Future, W: Future>(conn: C, work: W) -> W::Output {
    let mut conn = pin!(conn);
    let mut work = pin!(work);
    let mut conn_done = false;
    poll_fn(move |cx| {
        if let Poll::Ready(out) = work.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        if !conn_done && conn.as_mut().poll(cx).is_ready() {
            conn_done = true;
            // The connection's end may have completed the request (with a
            // body or an error); look again rather than wait for a wake-up.
            return work.as_mut().poll(cx);
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests;
