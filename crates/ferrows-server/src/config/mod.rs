//! Configuration of the server: every setting declared once
//! ([`settings`](self::SETTINGS): field, type, default and why, TOML key,
//! flag, environment variable), filled in this order, each over the one
//! before: the defaults, the TOML file (`ferrows serve` without one reads
//! the demo's, `demo/serve.toml`), the environment (`FERROWS_*`), the
//! flags. The last two are the command line's (`cli` feature): the
//! library takes a [`Config`] as it is.

pub(crate) mod declare;
mod file;
mod namespaces;
mod settings;
#[cfg(test)]
mod tests;
pub(crate) mod value;

use std::net::SocketAddr;
use std::path::Path;

use ferrows_hub::broker::RedisOptions;

use crate::auth::AuthConfig;
pub use declare::Setting;
pub use namespaces::{NamespaceConfig, ProxyUrl, is_valid_channel, namespace_of};
pub use settings::*;

/// Which broker carries publications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BrokerKind {
    /// In this process (one node).
    #[default]
    Memory,
    /// Redis pub/sub and history (several nodes form one service).
    Redis,
}

impl Config {
    /// The demo's configuration: the defaults and `demo/serve.toml` (its
    /// namespaces: `chat` with join and leave pushes, any other allowed).
    pub fn demo() -> Self {
        let mut config = Self::default();
        config.apply_toml(file::DEMO_CONFIG, "the demo's configuration").expect("the demo's configuration is valid");
        config
    }

    /// The defaults and the TOML file at `path`, or the demo's
    /// configuration when there is none: what `ferrows serve` starts
    /// from before the environment and its flags.
    pub fn load(path: Option<&Path>) -> Result<Self, String> {
        match path {
            Some(path) => {
                let mut config = Self::default();
                config.apply_file(path)?;
                Ok(config)
            }
            None => Ok(Self::demo()),
        }
    }

    /// Checks what no single setting can: that `tls_cert` and `tls_key`
    /// go together, that key files can be read, that proxy URLs are
    /// `http` or `https` with a host, and that namespaces using a proxy
    /// have its URL.
    pub fn check(&self) -> Result<(), String> {
        self.server.tls()?;
        self.auth.keys()?;
        self.proxy.check()?;
        let namespaces = std::iter::once(("(default)", &self.namespaces.default))
            .chain(self.namespaces.named.iter().map(|(name, config)| (name.as_str(), config)));
        for (name, namespace) in namespaces {
            if namespace.proxy_subscribe
                && namespace.proxy_subscribe_url.is_none()
                && self.proxy.subscribe_url.is_none()
            {
                return Err(format!("namespace {name}: proxy_subscribe needs a proxy_subscribe_url"));
            }
            if namespace.proxy_publish && namespace.proxy_publish_url.is_none() && self.proxy.publish_url.is_none() {
                return Err(format!("namespace {name}: proxy_publish needs a proxy_publish_url"));
            }
        }
        Ok(())
    }

    /// The options of `namespace`; `None` when namespaces are strict and
    /// this one is not among them.
    pub fn namespace(&self, namespace: &str) -> Option<&NamespaceConfig> {
        self.namespaces.get(namespace)
    }
}

impl ServerSettings {
    /// The address to listen on.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// The TLS certificate and key files, when both are set.
    pub fn tls(&self) -> Result<Option<(&Path, &Path)>, String> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
            (None, None) => Ok(None),
            _ => Err("tls_cert and tls_key go together".into()),
        }
    }
}

impl AuthSettings {
    /// What the token verifier needs: the secret, and the public keys read
    /// from their files.
    pub fn keys(&self) -> Result<AuthConfig, String> {
        let read = |path: &Option<std::path::PathBuf>| {
            path.as_ref().map(|p| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))).transpose()
        };
        Ok(AuthConfig {
            hmac_secret: self.token_hmac_secret.clone().filter(|s| !s.is_empty()),
            rsa_public_key: read(&self.token_rsa_public_key)?,
            ecdsa_public_key: read(&self.token_ecdsa_public_key)?,
            allow_anonymous: self.allow_anonymous,
        })
    }
}

impl ProxySettings {
    /// The URL of `kind`'s proxy, if there is one.
    pub fn url(&self, kind: ferrows_hub::protocol::proxy::ProxyKind) -> Option<&http::Uri> {
        use ferrows_hub::protocol::proxy::ProxyKind;
        match kind {
            ProxyKind::Connect => self.connect_url.as_ref(),
            ProxyKind::Refresh => self.refresh_url.as_ref(),
            ProxyKind::Subscribe => self.subscribe_url.as_ref(),
            ProxyKind::Publish => self.publish_url.as_ref(),
            ProxyKind::Rpc => self.rpc_url.as_ref(),
        }
    }

    /// Whether any proxy is configured.
    pub fn any(&self) -> bool {
        ferrows_hub::protocol::proxy::ProxyKind::ALL.into_iter().any(|kind| self.url(kind).is_some())
    }

    fn check(&self) -> Result<(), String> {
        for kind in ferrows_hub::protocol::proxy::ProxyKind::ALL {
            let Some(url) = self.url(kind) else { continue };
            if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none() {
                return Err(format!("proxy_{}_url: {url} is not an http or https URL", kind.name()));
            }
        }
        if let Some(path) = &self.ca_file {
            std::fs::metadata(path).map_err(|e| format!("proxy_ca_file {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

impl BrokerSettings {
    /// The options of the Redis broker.
    pub fn redis_options(&self) -> RedisOptions {
        RedisOptions {
            prefix: self.redis_prefix.clone(),
            presence_ttl: self.redis_presence_ttl,
            reconnect_min: self.redis_reconnect_min,
            reconnect_max: self.redis_reconnect_max,
            command_timeout: self.redis_command_timeout,
            min_replicas: self.redis_min_replicas,
        }
    }
}
