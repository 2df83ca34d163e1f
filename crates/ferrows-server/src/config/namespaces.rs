//! Namespaces: the part of a channel name before `:`, and the options of
//! each (who may read and publish, presence, history).

use std::time::Duration;

use ferrows_hub::HistoryLimits;
use serde::{Deserialize, Serialize};

use super::settings::Namespaces;

/// Per-namespace options (the part of a channel name before `:`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NamespaceConfig {
    /// Anonymous clients may subscribe (and publish, with `publish`).
    pub anonymous: bool,
    /// Clients may publish (otherwise only the server API may).
    pub publish: bool,
    /// Only users whose token lists the channel may use it.
    pub protected: bool,
    /// Presence is tracked and can be queried.
    pub presence: bool,
    /// Subscribers get join/leave pushes (needs `presence`). Off by
    /// default: every join is pushed to every subscriber, so n clients
    /// joining one channel cost n² pushes (50 million for 10 000); turn it
    /// on for rooms of modest size (the demo's `chat` namespace has it).
    pub join_leave: bool,
    /// Publications kept per channel (0 keeps none: no recovery).
    pub history_size: usize,
    /// Seconds publications are kept.
    pub history_ttl: u64,
    /// Bytes of publications kept per channel.
    pub history_max_bytes: usize,
    /// The backend decides every subscribe into the namespace that the
    /// client's grants (token or connect proxy) do not name: the
    /// subscribe proxy (`proxy_subscribe_url`) is asked, in place of the
    /// `anonymous` and `protected` rules.
    pub proxy_subscribe: bool,
    /// Every client publication into the namespace goes to the publish
    /// proxy (`proxy_publish_url`) first, which may refuse or change it.
    pub proxy_publish: bool,
    /// The subscribe proxy of this namespace, instead of
    /// `proxy_subscribe_url`: a backend of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_subscribe_url: Option<ProxyUrl>,
    /// The publish proxy of this namespace, instead of `proxy_publish_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_publish_url: Option<ProxyUrl>,
}

/// The URL of a backend: `http` or `https`, with a host (checked as the
/// configuration is read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUrl(pub http::Uri);

impl ProxyUrl {
    /// `text` as a backend URL, or why it is not one.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url: http::Uri = text.parse().map_err(|e| format!("{text}: {e}"))?;
        if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none() {
            return Err(format!("{text} is not an http or https URL"));
        }
        Ok(Self(url))
    }
}

impl Serialize for ProxyUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for ProxyUrl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

impl Default for NamespaceConfig {
    fn default() -> Self {
        let history = HistoryLimits::default();
        Self {
            anonymous: true,
            publish: true,
            protected: false,
            presence: true,
            join_leave: false,
            history_size: history.max_count,
            history_ttl: history.max_age.as_secs(),
            history_max_bytes: history.max_bytes,
            proxy_subscribe: false,
            proxy_publish: false,
            proxy_subscribe_url: None,
            proxy_publish_url: None,
        }
    }
}

impl NamespaceConfig {
    /// Whether `user` (`""`: anonymous), whose token grants the channel
    /// patterns `granted`, may read `channel` of this namespace: subscribe,
    /// poll, read its history and presence.
    pub fn may_read(&self, user: &str, granted: &[String], channel: &str) -> bool {
        crate::auth::grants(granted, channel) || (!self.protected && (!user.is_empty() || self.anonymous))
    }

    /// Whether that user may also publish into `channel` (clients publish
    /// where the namespace allows it, or where their token grants it).
    pub fn may_publish(&self, user: &str, granted: &[String], channel: &str) -> bool {
        crate::auth::grants(granted, channel) || (self.publish && self.may_read(user, granted, channel))
    }

    /// The history bounds of the namespace's channels.
    pub fn history_limits(&self) -> HistoryLimits {
        HistoryLimits {
            max_count: self.history_size,
            max_bytes: self.history_max_bytes,
            max_age: Duration::from_secs(self.history_ttl),
        }
    }
}

impl Namespaces {
    /// Whether some namespace names a proxy URL of its own.
    pub fn any_proxy_url(&self) -> bool {
        std::iter::once(&self.default)
            .chain(self.named.values())
            .any(|n| n.proxy_subscribe_url.is_some() || n.proxy_publish_url.is_some())
    }

    /// Whether channels of namespaces not named are refused: as `strict`
    /// says, or, unset, when some namespaces are named.
    pub fn is_strict(&self) -> bool {
        self.strict.unwrap_or(!self.named.is_empty())
    }

    /// The options of `namespace`; `None` when namespaces are strict and
    /// this one is not among them.
    pub fn get(&self, namespace: &str) -> Option<&NamespaceConfig> {
        if let Some(config) = self.named.get(namespace) {
            return Some(config);
        }
        (namespace.is_empty() || !self.is_strict()).then_some(&self.default)
    }
}

/// Whether `channel` is a valid channel name: 1 to 255 bytes of
/// `[A-Za-z0-9_:.@$-]`.
pub fn is_valid_channel(channel: &str) -> bool {
    (1..=255).contains(&channel.len()) && channel.bytes().all(|b| b.is_ascii_alphanumeric() || b"_:.@$-".contains(&b))
}

/// The namespace of a channel: what precedes the first `:`.
pub fn namespace_of(channel: &str) -> &str {
    channel.split_once(':').map_or("", |(namespace, _)| namespace)
}
