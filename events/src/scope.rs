//! OAuth scopes (R19): what an OAuth client's access tokens may do, as Tailscale spells them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One scope of an OAuth client or federated identity.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum Scope {
    /// Everything below.
    #[serde(rename = "all")]
    All,
    /// Generate, list and revoke auth keys.
    #[serde(rename = "auth_keys")]
    AuthKeys,
    /// List auth keys.
    #[serde(rename = "auth_keys:read")]
    AuthKeysRead,
    /// Read and change devices.
    #[serde(rename = "devices:core")]
    DevicesCore,
    /// Read devices.
    #[serde(rename = "devices:core:read")]
    DevicesCoreRead,
    /// Read the configuration audit log.
    #[serde(rename = "logs:configuration:read")]
    LogsConfigurationRead,
    /// Read users.
    #[serde(rename = "users:read")]
    UsersRead,
    /// Manage webhooks.
    #[serde(rename = "webhooks")]
    Webhooks,
    /// Read webhooks.
    #[serde(rename = "webhooks:read")]
    WebhooksRead,
    /// Manage OAuth clients and federated identities.
    #[serde(rename = "oauth_keys")]
    OauthKeys,
}

impl Scope {
    /// Every scope, in the order above.
    pub const ALL: [Scope; 10] = [
        Scope::All,
        Scope::AuthKeys,
        Scope::AuthKeysRead,
        Scope::DevicesCore,
        Scope::DevicesCoreRead,
        Scope::LogsConfigurationRead,
        Scope::UsersRead,
        Scope::Webhooks,
        Scope::WebhooksRead,
        Scope::OauthKeys,
    ];

    /// The scope as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::All => "all",
            Scope::AuthKeys => "auth_keys",
            Scope::AuthKeysRead => "auth_keys:read",
            Scope::DevicesCore => "devices:core",
            Scope::DevicesCoreRead => "devices:core:read",
            Scope::LogsConfigurationRead => "logs:configuration:read",
            Scope::UsersRead => "users:read",
            Scope::Webhooks => "webhooks",
            Scope::WebhooksRead => "webhooks:read",
            Scope::OauthKeys => "oauth_keys",
        }
    }

    /// The scope spelled `s`.
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }

    /// Whether holding `self` allows what `needed` allows: `all` allows everything, and a
    /// scope allows its own `:read`.
    pub fn grants(self, needed: Scope) -> bool {
        self == needed
            || self == Scope::All
            || matches!(
                (self, needed),
                (Scope::AuthKeys, Scope::AuthKeysRead)
                    | (Scope::DevicesCore, Scope::DevicesCoreRead)
                    | (Scope::Webhooks, Scope::WebhooksRead)
            )
    }

    /// Whether any of `held` allows `needed`.
    pub fn any_grants(held: &[Scope], needed: Scope) -> bool {
        held.iter().any(|s| s.grants(needed))
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_and_grant_their_reads() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).expect("serializes");
            assert_eq!(json, format!("\"{s}\""));
            assert!(s.grants(s) && Scope::All.grants(s));
        }
        assert!(Scope::AuthKeys.grants(Scope::AuthKeysRead));
        assert!(!Scope::AuthKeysRead.grants(Scope::AuthKeys));
        assert!(!Scope::DevicesCore.grants(Scope::AuthKeys));
        assert!(Scope::any_grants(
            &[Scope::UsersRead, Scope::DevicesCore],
            Scope::DevicesCoreRead
        ));
        assert_eq!(Scope::parse("devices"), None);
    }
}
