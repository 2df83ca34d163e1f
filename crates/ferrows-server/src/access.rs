//! Who may read and publish a channel: the namespace's rules, the
//! client's grants, and, where the namespace says so, the application's
//! backend (the subscribe and publish proxies). One place for WebSocket
//! sessions and HTTP clients alike.

use bytes::Bytes;
use ferrows_hub::protocol::proxy::{
    Caller, ProxyAnswer, ProxyKind, ProxyResult, PublishRequest, PublishResult, SubscribeRequest, SubscribeResult,
};
use ferrows_hub::protocol::{Data, Error, payload::DataRef};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::auth::grants;
use crate::config::NamespaceConfig;
use crate::state::AppState;

/// Who asks to read or publish: what the rules and the backend see.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asker<'a> {
    /// Its client id.
    pub(crate) client: &'a str,
    /// Its user (`""`: anonymous).
    pub(crate) user: &'a str,
    /// The channel patterns its token or the connect proxy granted.
    pub(crate) grants: &'a [String],
    /// What the connect proxy said to keep.
    pub(crate) meta: Option<&'a RawValue>,
}

impl<'a> Asker<'a> {
    /// As a proxy request names it.
    pub(crate) fn caller(&self) -> Caller<'a> {
        Caller { client: self.client, user: self.user, meta: self.meta }
    }
}

/// Why something was refused: an error for the client, or the backend's
/// word that its connection ends.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Answered with this error.
    Error(Error),
    /// The backend closes the connection (its `disconnect`).
    Disconnect {
        /// In 4500-4999.
        code: u16,
        /// Its reason.
        reason: String,
    },
}

impl From<Error> for Refusal {
    fn from(error: Error) -> Self {
        Self::Error(error)
    }
}

impl Refusal {
    /// As an HTTP client gets it (it has no connection to close: a
    /// disconnect is a refusal with the backend's reason).
    pub(crate) fn into_error(self) -> Error {
        match self {
            Self::Error(error) => error,
            Self::Disconnect { reason, .. } => Error::PermissionDenied(format!("refused by the backend: {reason}")),
        }
    }
}

impl AppState {
    /// The options of `channel`'s namespace if `asker` may subscribe to it
    /// (or stream, poll it, read its history and presence): granted, or
    /// the backend agrees where the namespace has `proxy_subscribe`, or
    /// the namespace's rules allow it.
    pub(crate) async fn readable(&self, asker: &Asker<'_>, channel: &str) -> Result<&NamespaceConfig, Refusal> {
        let namespace = self.channel_namespace(channel)?;
        if grants(asker.grants, channel) {
            return Ok(namespace);
        }
        if namespace.proxy_subscribe {
            let request = SubscribeRequest { caller: asker.caller(), channel };
            let url = namespace.proxy_subscribe_url.as_ref().map(|url| &url.0);
            self.decide_at::<SubscribeResult>(ProxyKind::Subscribe, url, &request).await?;
            return Ok(namespace);
        }
        if namespace.may_read(asker.user, asker.grants, channel) {
            Ok(namespace)
        } else {
            Err(Error::PermissionDenied(format!("not allowed: {channel}")).into())
        }
    }

    /// The options of `channel`'s namespace and the data to publish if
    /// `asker` may publish `data` into it: where the namespace has
    /// `proxy_publish`, as the backend decides (it may change the data);
    /// elsewhere granted, or readable in a namespace that takes client
    /// publications.
    pub(crate) async fn publishable(
        &self,
        asker: &Asker<'_>,
        channel: &str,
        data: Bytes,
    ) -> Result<(&NamespaceConfig, Bytes), Refusal> {
        let namespace = self.channel_namespace(channel)?;
        if namespace.proxy_publish {
            let data = Data(data);
            let request = PublishRequest { caller: asker.caller(), channel, data: DataRef(Some(&data)) };
            let url = namespace.proxy_publish_url.as_ref().map(|url| &url.0);
            let decided = self.decide_at::<PublishResult>(ProxyKind::Publish, url, &request).await?;
            return Ok((namespace, decided.data.map_or(data.0, |changed| changed.0)));
        }
        let namespace = self.readable(asker, channel).await?;
        if grants(asker.grants, channel) || namespace.publish {
            Ok((namespace, data))
        } else {
            Err(Error::PermissionDenied(format!("clients may not publish into {channel}")).into())
        }
    }

    /// Asks `kind`'s proxy: its result, or the refusal it answered (error
    /// 111 when it gave no usable answer).
    pub(crate) async fn decide<R: ProxyResult>(&self, kind: ProxyKind, request: &impl Serialize) -> Result<R, Refusal> {
        self.decide_at(kind, None, request).await
    }

    /// Asks `kind`'s proxy at `url` (a namespace's own), else at its
    /// configured URL.
    pub(crate) async fn decide_at<R: ProxyResult>(
        &self,
        kind: ProxyKind,
        url: Option<&http::Uri>,
        request: &impl Serialize,
    ) -> Result<R, Refusal> {
        let Some(backend) = &self.backend else {
            return Err(Error::NotFound(format!("no {} proxy is configured", kind.name())).into());
        };
        match backend.ask::<R>(kind, url, request).await? {
            ProxyAnswer::Result(result) => Ok(result),
            ProxyAnswer::Error(error) => Err(Refusal::Error(error)),
            ProxyAnswer::Disconnect { code, reason } => Err(Refusal::Disconnect { code, reason }),
        }
    }
}
