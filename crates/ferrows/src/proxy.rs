//! Tunnelling through an HTTP proxy with `CONNECT` (RFC 9110 section 9.3.6).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::BytesMut;
use ferrows_proto::config::HandshakeLimits;
use ferrows_proto::handshake::parse_response;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::error::{Error, Result};
use crate::handshake_io::read_head;

/// An HTTP proxy, `http://[user:password@]host[:port]` (port 80 when left
/// out, as for any `http://` URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    host: String,
    port: u16,
    authorization: Option<String>,
}

/// Which proxy a client uses. Proxies are opt-in: the default is none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ProxySetting {
    /// Connect directly.
    #[default]
    None,
    /// Read `HTTPS_PROXY` (for `wss://`) or `HTTP_PROXY` (for `ws://`), then
    /// `ALL_PROXY`, in upper or lower case, honouring `NO_PROXY`.
    FromEnv,
    /// Always this proxy.
    Url(Proxy),
}

impl Proxy {
    /// Parses a proxy URL (`http://` only; credentials become a Basic
    /// `Proxy-Authorization`).
    pub fn new(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| (!url.contains("://")).then_some(url))
            .ok_or_else(|| Error::Url(format!("{url}: only http:// proxies are supported")))?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((user, host)) => (Some(user), host),
            None => (None, authority),
        };
        let (host, port) =
            split_host_port(hostport, 80).ok_or_else(|| Error::Url(format!("{url}: bad proxy address")))?;
        let authorization = userinfo.map(|u| format!("Basic {}", BASE64.encode(u)));
        Ok(Self { host, port, authorization })
    }

    /// The proxy the environment asks for to reach `host` (see
    /// [`ProxySetting::FromEnv`]).
    pub fn from_env(host: &str, tls: bool) -> Option<Self> {
        let var = |name: &str| {
            std::env::var(name).ok().or_else(|| std::env::var(name.to_lowercase()).ok()).filter(|v| !v.is_empty())
        };
        if let Some(no_proxy) = var("NO_PROXY") {
            let host = host.to_ascii_lowercase();
            let excluded = no_proxy.split(',').map(str::trim).filter(|p| !p.is_empty()).any(|pattern| {
                let pattern = pattern.trim_start_matches('.').to_ascii_lowercase();
                pattern == "*" || host == pattern || host.ends_with(&format!(".{pattern}"))
            });
            if excluded {
                return None;
            }
        }
        let url = if tls { var("HTTPS_PROXY") } else { var("HTTP_PROXY") }.or_else(|| var("ALL_PROXY"))?;
        Self::new(&url).ok()
    }

    /// Opens a TCP connection to the proxy and asks it for a tunnel to
    /// `host:port`; on a 2xx answer the stream is the tunnel.
    pub(crate) async fn tunnel(&self, host: &str, port: u16, limits: &HandshakeLimits) -> Result<TcpStream> {
        let mut tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
        tcp.set_nodelay(true)?;
        let target = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(auth) = &self.authorization {
            request.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
        }
        request.push_str("\r\n");
        tcp.write_all(request.as_bytes()).await?;
        let mut buf = BytesMut::with_capacity(512);
        let response = read_head(&mut tcp, &mut buf, limits, parse_response).await?;
        if !response.status().is_success() {
            return Err(Error::Io(std::io::Error::other(format!("proxy refused CONNECT: {}", response.status()))));
        }
        if !buf.is_empty() {
            return Err(Error::Io(std::io::Error::other("proxy sent data before the tunnel opened")));
        }
        Ok(tcp)
    }
}

/// Splits `host[:port]` or `[v6]:port`.
fn split_host_port(text: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => Some((host.to_owned(), port.parse().ok()?)),
        Some(_) => None,
        None if !text.is_empty() => Some((text.to_owned(), default_port)),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proxy_urls() {
        let p = Proxy::new("http://user:pw@proxy.local:3128").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("proxy.local", 3128));
        assert_eq!(p.authorization.as_deref(), Some("Basic dXNlcjpwdw=="));
        let p = Proxy::new("http://[::1]:8080/").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("::1", 8080));
        assert_eq!(Proxy::new("proxy").unwrap().port, 80);
        assert!(Proxy::new("socks5://x:1").is_err());
        assert!(Proxy::new("http://x:notaport").is_err());
    }
}
