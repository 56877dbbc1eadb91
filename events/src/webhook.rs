//! Webhook endpoints (R23): their events, the event types they subscribe to, and their URL.
//!
//! An endpoint's signing secret is in none of these: it is derived by the webhooks role from a
//! key only that role reads, the endpoint's id and its `rotation` (ADR 005).

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::ids::{EndpointId, InvalidId, UserId};

/// The longest endpoint URL.
pub const ENDPOINT_URL_BYTES_MAX: usize = 2048;
/// The most subscriptions an endpoint holds (every type once).
pub const SUBSCRIPTIONS_MAX: usize = 32;

/// A webhook event type, as Tailscale spells it (`nodeCreated`, …), plus the key lifecycle
/// (`keyCreated`, …) that authkeys adds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum WebhookType {
    /// A node joined (`NodeRegistered`).
    NodeCreated,
    /// A node joined unauthorized under device approval.
    NodeNeedsApproval,
    /// A node was approved (`NodeAuthorized{authorized: true}`).
    NodeApproved,
    /// A node's key expires in one day (scheduled by the webhooks role).
    NodeKeyExpiringInOneDay,
    /// A node's key expired (`NodeExpired`).
    NodeKeyExpired,
    /// A node was deleted (`NodeDeleted`).
    NodeDeleted,
    /// A node joined locked out by tailnet lock (`tailnetLockError`).
    NodeNeedsSignature,
    /// A node was signed by a trusted lock key (`NodeSigned`).
    NodeSigned,
    /// A user was added (`UserAdded`).
    UserCreated,
    /// A user's role changed (`UserRoleChanged`).
    UserRoleUpdated,
    /// A user was removed (`UserRemoved`).
    UserDeleted,
    /// A user was suspended (`UserSuspended`).
    UserSuspended,
    /// A user was restored (`UserRestored`).
    UserRestored,
    /// An auth key was generated (`KeyGenerated`; authkeys' extension).
    KeyCreated,
    /// An auth key registered a node (`KeyUsed`).
    KeyUsed,
    /// An auth key was revoked (`KeyRevoked`).
    KeyRevoked,
    /// An auth key reached its expiry (`KeyExpired`).
    KeyExpired,
}

impl WebhookType {
    /// Every type, in the order above.
    pub const ALL: [WebhookType; 17] = [
        Self::NodeCreated,
        Self::NodeNeedsApproval,
        Self::NodeApproved,
        Self::NodeKeyExpiringInOneDay,
        Self::NodeKeyExpired,
        Self::NodeDeleted,
        Self::NodeNeedsSignature,
        Self::NodeSigned,
        Self::UserCreated,
        Self::UserRoleUpdated,
        Self::UserDeleted,
        Self::UserSuspended,
        Self::UserRestored,
        Self::KeyCreated,
        Self::KeyUsed,
        Self::KeyRevoked,
        Self::KeyExpired,
    ];

    /// The type as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NodeCreated => "nodeCreated",
            Self::NodeNeedsApproval => "nodeNeedsApproval",
            Self::NodeApproved => "nodeApproved",
            Self::NodeKeyExpiringInOneDay => "nodeKeyExpiringInOneDay",
            Self::NodeKeyExpired => "nodeKeyExpired",
            Self::NodeDeleted => "nodeDeleted",
            Self::NodeNeedsSignature => "nodeNeedsSignature",
            Self::NodeSigned => "nodeSigned",
            Self::UserCreated => "userCreated",
            Self::UserRoleUpdated => "userRoleUpdated",
            Self::UserDeleted => "userDeleted",
            Self::UserSuspended => "userSuspended",
            Self::UserRestored => "userRestored",
            Self::KeyCreated => "keyCreated",
            Self::KeyUsed => "keyUsed",
            Self::KeyRevoked => "keyRevoked",
            Self::KeyExpired => "keyExpired",
        }
    }

    /// The type spelled `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for WebhookType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An endpoint's URL: `http` or `https`, a host, no user info, no fragment, no whitespace or
/// control characters, at most [`ENDPOINT_URL_BYTES_MAX`] bytes. Whether its host may be
/// reached (SSRF) is the webhooks role's check, at create and at every delivery.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EndpointUrl(String);

impl EndpointUrl {
    /// Validates a URL.
    pub fn parse(s: impl Into<String>) -> Result<Self, InvalidId> {
        let s: String = s.into();
        check_url(&s).map_err(|why| InvalidId::new("EndpointUrl", why))?;
        Ok(Self(s))
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `https` (else `http`).
    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }

    /// The host as written (an IPv6 literal without its brackets).
    pub fn host(&self) -> &str {
        let (host, _) = split_authority(authority(&self.0));
        host
    }

    /// The port, or the scheme's default.
    pub fn port(&self) -> u16 {
        let (_, port) = split_authority(authority(&self.0));
        port.and_then(|p| p.parse().ok())
            .unwrap_or(if self.is_https() { 443 } else { 80 })
    }
}

fn rest_of(s: &str) -> &str {
    s.strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s)
}

fn authority(s: &str) -> &str {
    let rest = rest_of(s);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

/// `host[:port]` or `[v6][:port]` → host and port text.
fn split_authority(a: &str) -> (&str, Option<&str>) {
    if let Some(v6) = a.strip_prefix('[') {
        return match v6.split_once(']') {
            Some((host, rest)) => (host, rest.strip_prefix(':')),
            None => (v6, None),
        };
    }
    match a.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (a, None),
    }
}

fn check_url(s: &str) -> Result<(), String> {
    if s.len() > ENDPOINT_URL_BYTES_MAX {
        return Err(format!("must be at most {ENDPOINT_URL_BYTES_MAX} bytes"));
    }
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return Err("must be an http:// or https:// URL".into());
    }
    if !s.starts_with("https://") && !s.starts_with("http://") {
        return Err("the scheme must be written in lower case".into());
    }
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must not contain spaces or control characters".into());
    }
    if s.contains('#') {
        return Err("must not have a fragment".into());
    }
    let a = authority(s);
    if a.contains('@') {
        return Err("must not carry user info".into());
    }
    let (host, port) = split_authority(a);
    if host.is_empty() {
        return Err("must name a host".into());
    }
    let bracketed = a.starts_with('[');
    if bracketed {
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("the bracketed host must be an IPv6 address".into());
        }
    } else if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err("the host may hold letters, digits, '.', '-' and '_' only".into());
    }
    if let Some(p) = port
        && p.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err("the port must be 1 to 65535".into());
    }
    Ok(())
}

impl TryFrom<String> for EndpointUrl {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, InvalidId> {
        Self::parse(s)
    }
}

impl From<EndpointUrl> for String {
    fn from(v: EndpointUrl) -> String {
        v.0
    }
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for EndpointUrl {
    fn schema_name() -> Cow<'static, str> {
        "EndpointUrl".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^https?://[^@/?#\\s]+([/?][^#\\s]*)?$",
            "maxLength": ENDPOINT_URL_BYTES_MAX,
        })
    }
}

/// How the events are formatted for the endpoint: Tailscale's provider types. authkeys sends
/// the generic JSON array to every one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderType {
    /// The generic format (Tailscale's `""`).
    #[default]
    #[serde(rename = "")]
    Generic,
    /// Slack.
    Slack,
    /// Mattermost.
    Mattermost,
    /// Google Chat.
    Googlechat,
    /// Discord.
    Discord,
}

impl ProviderType {
    /// As the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Generic => "",
            Self::Slack => "slack",
            Self::Mattermost => "mattermost",
            Self::Googlechat => "googlechat",
            Self::Discord => "discord",
        }
    }

    /// The provider spelled `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Generic,
            Self::Slack,
            Self::Mattermost,
            Self::Googlechat,
            Self::Discord,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

/// A webhook endpoint was created (R23). Its first secret is rotation 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookCreated {
    /// Its id.
    pub endpoint_id: EndpointId,
    /// Where events are POSTed.
    pub endpoint_url: EndpointUrl,
    /// Tailscale's provider type.
    pub provider_type: ProviderType,
    /// The event types it receives.
    pub subscriptions: Vec<WebhookType>,
    /// Who created it.
    pub creator: UserId,
}

/// A webhook endpoint's subscriptions changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookUpdated {
    /// Which endpoint.
    pub endpoint_id: EndpointId,
    /// The event types it receives now.
    pub subscriptions: Vec<WebhookType>,
}

/// A webhook endpoint's secret was rotated: deliveries from now on are signed with the secret
/// of this rotation; the previous one verifies nothing new.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSecretRotated {
    /// Which endpoint.
    pub endpoint_id: EndpointId,
    /// How many rotations so far (1 after the first): an input of the secret's derivation.
    pub rotation: u32,
}

/// A webhook endpoint was deleted: nothing more is delivered to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookDeleted {
    /// Which endpoint.
    pub endpoint_id: EndpointId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls_are_http_with_a_host_and_no_user_info() {
        for ok in [
            "https://example.com/hook",
            "http://10.0.0.1:8080/x?y=1",
            "https://[::1]:9/",
            "http://localhost",
        ] {
            assert!(EndpointUrl::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ftp://example.com",
            "https://",
            "https://user:pw@example.com/",
            "https://example.com/#frag",
            "https://exa mple.com/",
            "https://example.com:0/",
            "https://example.com:99999/",
            "https://[nothex]/",
            "javascript:alert(1)",
        ] {
            assert!(EndpointUrl::parse(bad).is_err(), "{bad}");
        }
        let u = EndpointUrl::parse("https://[::1]:9/").expect("valid");
        assert_eq!((u.host(), u.port()), ("::1", 9));
        let u = EndpointUrl::parse("http://example.com/a").expect("valid");
        assert_eq!((u.host(), u.port()), ("example.com", 80));
    }

    #[test]
    fn webhook_types_round_trip() {
        for t in WebhookType::ALL {
            assert_eq!(WebhookType::parse(t.as_str()), Some(t));
            let json = serde_json::to_string(&t).expect("serializes");
            assert_eq!(json, format!("\"{t}\""));
        }
        assert_eq!(ProviderType::parse(""), Some(ProviderType::Generic));
        assert_eq!(
            serde_json::to_string(&ProviderType::Generic).expect("serializes"),
            "\"\""
        );
    }
}
