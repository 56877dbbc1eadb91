//! The configuration audit log records of every event type, field by field, against
//! Tailscale's vocabulary (the `ConfigurationAuditLog` schema of Tailscale's OpenAPI
//! description, `tailscale/tailscale-client-go-v2`, `tools/openapi/spec/tailscale-v2-openapi.yaml`),
//! and the `actor`, `target` and `event` filters.
//!
//! Events are built from their JSON (as the log stores them), so that an optional field the
//! catalogue gains later does not break these tests; a new event type fails
//! `every_event_type_is_mapped_to_tailscale_event_names` until `records.rs` maps it.

use authkeys_audit::records::{
    AUTHKEYS_EVENTS, Filter, NOT_DEFERRED, Record, Recorder, TAILSCALE_EVENTS, event_names,
};
use authkeys_events::{Envelope, EventType};
use serde_json::{Value, json};

/// `ConfigurationAuditLog.action` in Tailscale's OpenAPI description.
const ACTIONS: &[&str] = &[
    "LOGIN",
    "LOGOUT",
    "CREATE",
    "UPDATE",
    "DELETE",
    "CANCEL",
    "REVOKE",
    "APPROVE",
    "SUSPEND",
    "RESTORE",
    "ENABLE",
    "DISABLE",
    "ACCEPT",
    "EXPIRED",
    "PUSH_USER",
    "PUSH_GROUP",
    "VERIFY",
    "JOIN_WAITLIST",
    "INVITE",
    "JOIN",
    "LEAVE",
    "RESEND",
    "MIGRATE_AUTH_PROVIDER",
];
/// `ConfigurationAuditLog.origin`.
const ORIGINS: &[&str] = &[
    "ADMIN_CONSOLE",
    "CONFIG_API",
    "CONTROL",
    "IDENTITY_PROVIDER",
    "NODE",
    "SUPPORT_REQUEST",
    "STRIPE",
    "SECURITY_NOTIFICATION",
    "LEGAL_NOTIFICATION",
];
/// `ConfigurationAuditLog.actor.type`.
const ACTOR_TYPES: &[&str] = &[
    "USER",
    "NODE",
    "AUTOMATED_WORKER",
    "OAUTH_CLIENT",
    "SCIM",
    "MULLVAD",
    "LOGSTREAM",
    "SECRET_SCANNER",
];
/// `ConfigurationAuditLog.target.type`.
const TARGET_TYPES: &[&str] = &[
    "TAILNET",
    "USER",
    "GROUP",
    "NODE",
    "API_KEY",
    "INVITE",
    "SHARE",
    "BILLING",
    "ADMIN_CONSOLE",
    "WEB_INTERFACE",
    "WEBHOOK_ENDPOINT",
    "FAILED_REQUEST",
];
/// `ConfigurationAuditLog.target.property`.
const PROPERTIES: &[&str] = &[
    "ACL",
    "ACL_TAGS",
    "ACCOUNT_EMAIL",
    "ADDRESS",
    "ALLOWED_IPS",
    "AUTO_APPROVED_ROUTES",
    "ATTRIBUTES",
    "BILLING_OWNER",
    "COLLECT_SERVICES",
    "COLLECT_POSTURE_IDENTITY",
    "MULLVAD_VPN",
    "DNS_CONFIG",
    "EMAIL",
    "EXIT_NODE",
    "FEATURE",
    "FILE_SHARING",
    "HTTPS",
    "KEY_EXPIRY_TIME",
    "KEY_EXPIRY",
    "LOG_EXIT_FLOWS",
    "LOGSTREAM_ENDPOINT",
    "MAGIC_DNS",
    "MACHINE_AUTH_NEEDED",
    "MACHINE_APPROVAL_NEEDED",
    "USER_APPROVAL_REQUIRED",
    "MACHINE_NAME",
    "MAX_KEY_DURATION",
    "NETWORK_FLOW_LOGGING",
    "GEOSTEERING",
    "NODE_SHARE",
    "TAILNET_INVITE",
    "PAYMENT_INFO",
    "POSTURE_IDENTITY",
    "POSTURE_INTEGRATION",
    "USER_ROLE",
    "SCIM",
    "SECURITY_EMAIL",
    "STRIPE_CUSTOMER_ID",
    "SUBSCRIPTION",
    "SUBSCRIBED_EVENTS",
    "SUPPORT_EMAIL",
    "SECRET",
    "TCD",
    "TKA",
    "AUTH_PROVIDER",
];

const TAILNET: &str = "T1";
const HASH: &str = "0101010101010101010101010101010101010101010101010101010101010101";
const LOCK_KEY: &str = "tlpub:d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c9778737";

fn time(seq: u64) -> String {
    format!("2026-11-27T10:{:02}:{:02}.000Z", seq / 60, seq % 60)
}

fn owner() -> Value {
    json!({"type": "user", "id": "u1", "loginName": "owner@example.com"})
}
fn admin() -> Value {
    // No login name in the envelope: the record takes it from the user's `UserAdded`.
    json!({"type": "user", "id": "u2"})
}
fn registrar() -> Value {
    json!({"type": "registrar", "id": "ra"})
}
fn system(id: &str) -> Value {
    json!({"type": "system", "id": id})
}
fn oauth() -> Value {
    json!({"type": "oauth", "id": "kClient1"})
}

fn node_key() -> String {
    format!("nodekey:{}", "ab".repeat(32))
}

/// An envelope of `ty` at `seq` by `actor`, in command `group`, from its JSON.
fn env(seq: u64, group: &str, actor: Value, ty: &str, data: Value) -> Envelope {
    let version = EventType::parse(ty).expect("a catalogue type").version();
    let text = json!({
        "seq": seq,
        "id": format!("e{seq:032x}"),
        "type": ty,
        "version": version,
        "tailnet": TAILNET,
        "stream": format!("tailnet/{TAILNET}"),
        "streamVersion": 1,
        "time": time(seq),
        "actor": actor,
        "commandId": group,
        "data": data,
        "prevHash": "00".repeat(32),
        "hash": format!("{seq:064x}"),
    });
    let mut env = Envelope::from_json(&serde_json::to_vec(&text).expect("json"))
        .unwrap_or_else(|e| panic!("{ty}: {e}"));
    env.stream = env.event.stream(&env.tailnet);
    env
}

/// Every event type, in an order a tailnet could have them, with the records each must make.
fn scenario() -> Vec<(Envelope, Vec<Value>)> {
    let user = |id: &str, login: &str| json!({"id": id, "type": "USER", "loginName": login, "displayName": login});
    let (o, ad) = (
        user("u1", "owner@example.com"),
        user("u2", "admin@example.com"),
    );
    let worker = |id: &str| json!({"id": id, "type": "AUTOMATED_WORKER"});
    let node_actor = json!({"id": "n1", "type": "NODE"});
    let tailnet = |property: Option<&str>| {
        let mut t = json!({"id": TAILNET, "name": "example.com", "type": "TAILNET"});
        if let Some(p) = property {
            t["property"] = json!(p);
        }
        t
    };
    let node = |property: Option<&str>| {
        let mut t = json!({"id": "n1", "name": "web-1", "type": "NODE", "isEphemeral": true});
        if let Some(p) = property {
            t["property"] = json!(p);
        }
        t
    };
    let key = |property: Option<&str>| {
        let mut t = json!({"id": "kAuth1", "name": "ci pool", "type": "API_KEY"});
        if let Some(p) = property {
            t["property"] = json!(p);
        }
        t
    };
    let token = json!({"id": "tOwner1", "name": "API access token of owner@example.com", "type": "API_KEY"});
    // (origin, actor, target, action, old, new, actionDetails)
    let r = |origin: &str,
             actor: &Value,
             target: Value,
             action: &str,
             old: Option<Value>,
             new: Option<Value>,
             details: Option<&str>| {
        let mut v = json!({
            "origin": origin, "actor": actor, "target": target, "action": action,
        });
        if let Some(x) = old {
            v["old"] = x;
        }
        if let Some(x) = new {
            v["new"] = x;
        }
        if let Some(d) = details {
            v["actionDetails"] = json!(d);
        }
        v
    };
    let settings =
        json!({"devicesApprovalOn": false, "devicesKeyDurationDays": 180, "tailnetLockOn": false});
    let nk = node_key();
    let mut seq = 0;
    let mut next = || {
        seq += 1;
        seq
    };
    vec![
        (
            env(
                next(),
                "cBoot",
                system("bootstrap"),
                "TailnetCreated",
                json!({"name": "example.com", "settings": settings}),
            ),
            vec![r(
                "CONTROL",
                &worker("bootstrap"),
                tailnet(None),
                "CREATE",
                None,
                Some(settings.clone()),
                None,
            )],
        ),
        (
            env(
                next(),
                "cBoot",
                system("bootstrap"),
                "UserAdded",
                json!({"userId": "u1", "loginName": "owner@example.com", "role": "owner"}),
            ),
            vec![r(
                "CONTROL",
                &worker("bootstrap"),
                json!({"id": "u1", "name": "owner@example.com", "type": "USER"}),
                "CREATE",
                None,
                Some(json!({"role": "owner"})),
                None,
            )],
        ),
        (
            env(
                next(),
                "cBoot",
                system("bootstrap"),
                "ApiTokenIssued",
                json!({"tokenId": "tOwner1", "userId": "u1", "secretHash": HASH, "expires": time(100)}),
            ),
            vec![r(
                "CONTROL",
                &worker("bootstrap"),
                token.clone(),
                "CREATE",
                None,
                Some(json!({"keyType": "api", "userId": "u1", "expires": time(100)})),
                None,
            )],
        ),
        (
            env(
                next(),
                "cAddUser",
                owner(),
                "UserAdded",
                json!({"userId": "u2", "loginName": "admin@example.com", "role": "admin"}),
            ),
            vec![r(
                "CONFIG_API",
                &o,
                json!({"id": "u2", "name": "admin@example.com", "type": "USER"}),
                "CREATE",
                None,
                Some(json!({"role": "admin"})),
                None,
            )],
        ),
        (
            env(
                next(),
                "cRole",
                owner(),
                "UserRoleChanged",
                json!({"userId": "u2", "previousRole": "admin", "role": "it-admin"}),
            ),
            vec![r(
                "CONFIG_API",
                &o,
                json!({"id": "u2", "name": "admin@example.com", "type": "USER", "property": "USER_ROLE"}),
                "UPDATE",
                Some(json!("admin")),
                Some(json!("it-admin")),
                None,
            )],
        ),
        (
            env(
                next(),
                "cKey",
                admin(),
                "KeyGenerated",
                json!({
                    "keyId": "kAuth1", "userId": "u2", "description": "ci pool", "reusable": true,
                    "ephemeral": true, "preauthorized": false, "tags": ["tag:ci"], "expirySeconds": 3600,
                    "expires": time(90), "secretHash": HASH,
                }),
            ),
            vec![r(
                "CONFIG_API",
                &ad,
                key(None),
                "CREATE",
                None,
                Some(json!({
                    "keyType": "auth", "description": "ci pool", "userId": "u2", "expirySeconds": 3600,
                    "expires": time(90),
                    "capabilities": {"devices": {"create": {
                        "reusable": true, "ephemeral": true, "preauthorized": false, "tags": ["tag:ci"],
                    }}},
                })),
                None,
            )],
        ),
        (
            env(
                next(),
                "cLock",
                admin(),
                "TailnetLockEnabled",
                json!({"trustedKeys": [LOCK_KEY], "disablementHash": "00".repeat(32)}),
            ),
            vec![r(
                "CONFIG_API",
                &ad,
                tailnet(Some("TKA")),
                "ENABLE",
                None,
                Some(json!({"trustedKeys": [LOCK_KEY]})),
                None,
            )],
        ),
        (
            env(
                next(),
                "cReg",
                registrar(),
                "NodeRegistered",
                json!({
                    "nodeId": "n1", "nodeKey": nk, "hostname": "web-1", "name": "web-1", "os": "linux",
                    "userId": "u2", "tags": ["tag:ci"], "authKeyId": "kAuth1", "ephemeral": true,
                    "authorized": true, "keyExpiryDisabled": true, "expires": null,
                    "tailnetLockError": null,
                    "addresses": {"ipv4": "100.64.0.1", "ipv6": "fd7a:115c:a1e0::1"},
                }),
            ),
            vec![r(
                "NODE",
                &node_actor,
                node(None),
                "CREATE",
                None,
                Some(json!({
                    "hostname": "web-1", "os": "linux", "userId": "u2", "tags": ["tag:ci"],
                    "authKeyId": "kAuth1", "isEphemeral": true, "authorized": true,
                    "keyExpiryDisabled": true, "expires": null,
                    "addresses": ["100.64.0.1", "fd7a:115c:a1e0::1"],
                })),
                Some("registrar ra"),
            )],
        ),
        (
            env(
                next(),
                "cReg",
                registrar(),
                "KeyUsed",
                json!({"keyId": "kAuth1", "nodeId": "n1", "nodeKey": nk, "uses": 1}),
            ),
            vec![],
        ),
        (
            env(
                next(),
                "cUp",
                registrar(),
                "NodeConnected",
                json!({"nodeId": "n1"}),
            ),
            vec![],
        ),
        (
            env(
                next(),
                "cDown",
                registrar(),
                "NodeDisconnected",
                json!({"nodeId": "n1"}),
            ),
            vec![],
        ),
        (
            env(
                next(),
                "cReauth",
                registrar(),
                "NodeReauthenticated",
                json!({
                    "nodeId": "n1", "authKeyId": "kAuth1", "hostname": "web-1", "userId": "u2",
                    "tags": ["tag:ci"], "keyExpiryDisabled": false, "expires": time(200),
                }),
            ),
            vec![r(
                "NODE",
                &node_actor,
                node(Some("KEY_EXPIRY_TIME")),
                "UPDATE",
                None,
                Some(json!(time(200))),
                Some("re-authenticated with auth key kAuth1; tags: tag:ci; registrar ra"),
            )],
        ),
        (
            env(
                next(),
                "cReauth",
                registrar(),
                "NodeAuthorized",
                json!({"nodeId": "n1", "authorized": true}),
            ),
            vec![r(
                "NODE",
                &node_actor,
                node(None),
                "APPROVE",
                None,
                None,
                Some("registrar ra"),
            )],
        ),
        (
            env(
                next(),
                "cDeauth",
                admin(),
                "NodeAuthorized",
                json!({"nodeId": "n1", "authorized": false}),
            ),
            vec![r("CONFIG_API", &ad, node(None), "REVOKE", None, None, None)],
        ),
        (
            env(
                next(),
                "cTags",
                admin(),
                "TagsChanged",
                json!({"nodeId": "n1", "previousTags": ["tag:ci"], "tags": ["tag:db", "tag:web"]}),
            ),
            vec![r(
                "CONFIG_API",
                &ad,
                node(Some("ACL_TAGS")),
                "UPDATE",
                Some(json!(["tag:ci"])),
                Some(json!(["tag:db", "tag:web"])),
                None,
            )],
        ),
        (
            env(
                next(),
                "cKeyOff",
                admin(),
                "NodeKeyExpirySet",
                json!({"nodeId": "n1", "keyExpiryDisabled": true, "expires": null}),
            ),
            vec![r(
                "CONFIG_API",
                &ad,
                node(Some("KEY_EXPIRY")),
                "DISABLE",
                None,
                None,
                None,
            )],
        ),
        (
            env(
                next(),
                "cKeyOn",
                admin(),
                "NodeKeyExpirySet",
                json!({"nodeId": "n1", "keyExpiryDisabled": false, "expires": time(200)}),
            ),
            vec![r(
                "CONFIG_API",
                &ad,
                node(Some("KEY_EXPIRY")),
                "ENABLE",
                None,
                None,
                None,
            )],
        ),
        (
            env(
                next(),
                "cTimer1",
                system("timers"),
                "NodeExpired",
                json!({"nodeId": "n1", "expiredAt": time(17)}),
            ),
            vec![r(
                "CONTROL",
                &worker("timers"),
                node(Some("KEY_EXPIRY_TIME")),
                "EXPIRED",
                None,
                Some(json!(time(17))),
                None,
            )],
        ),
        (
            env(
                next(),
                "cSignNode",
                admin(),
                "NodeSigned",
                json!({"nodeId": "n1", "nodeKey": format!("nodekey:{}", "ab".repeat(32)),
                    "lockKey": LOCK_KEY, "signature": "cd".repeat(64)}),
            ),
            vec![r(
                "CONFIG_API",
                &ad,
                node(Some("TKA")),
                "UPDATE",
                None,
                Some(json!({"lockKey": LOCK_KEY})),
                None,
            )],
        ),
        (
            env(
                next(),
                "cLockKeys",
                admin(),
                "TrustedLockKeysChanged",
                json!({"trustedKeys": [LOCK_KEY], "generation": 1, "signer": LOCK_KEY,
                    "signature": "cd".repeat(64)}),
            ),
            vec![r(
                "CONFIG_API",
                &ad,
                tailnet(Some("TKA")),
                "UPDATE",
                None,
                Some(json!({"trustedKeys": [LOCK_KEY], "signer": LOCK_KEY})),
                None,
            )],
        ),
        (
            env(next(), "cUnlock", admin(), "TailnetLockDisabled", json!({})),
            vec![r(
                "CONFIG_API",
                &ad,
                tailnet(Some("TKA")),
                "DISABLE",
                None,
                None,
                None,
            )],
        ),
        (
            env(
                next(),
                "cTimer2",
                system("timers"),
                "NodeDeleted",
                json!({"nodeId": "n1", "reason": "ephemeral-inactive"}),
            ),
            vec![r(
                "CONTROL",
                &worker("timers"),
                node(None),
                "DELETE",
                None,
                None,
                Some("reason: ephemeral-inactive"),
            )],
        ),
        (
            env(
                next(),
                "cRevoke",
                admin(),
                "KeyRevoked",
                json!({"keyId": "kAuth1"}),
            ),
            vec![r("CONFIG_API", &ad, key(None), "REVOKE", None, None, None)],
        ),
        (
            env(
                next(),
                "cTimer3",
                system("timers"),
                "KeyExpired",
                json!({"keyId": "kAuth1", "expiredAt": time(90)}),
            ),
            vec![r(
                "CONTROL",
                &worker("timers"),
                key(None),
                "EXPIRED",
                None,
                Some(json!({"expires": time(90)})),
                None,
            )],
        ),
        (
            env(
                next(),
                "cRevokeToken",
                owner(),
                "ApiTokenRevoked",
                json!({"tokenId": "tOwner1"}),
            ),
            vec![r("CONFIG_API", &o, token, "REVOKE", None, None, None)],
        ),
        (
            env(
                next(),
                "cSettings",
                owner(),
                "TailnetSettingsChanged",
                json!({
                    "devicesApprovalOn": true, "devicesKeyDurationDays": 30, "tailnetLockOn": true,
                    "kept": {"usersApprovalOn": true, "networkFlowLoggingOn": false,
                        "postureIdentityCollectionOn": true, "httpsEnabled": false,
                        "devicesAutoUpdatesOn": true, "routeSelection": "regional-routing",
                        "usersRoleAllowedToJoinExternalTailnets": "admin",
                        "aclsExternallyManagedOn": true, "aclsExternalLink": "https://example.com/acl"},
                }),
            ),
            vec![
                r(
                    "CONFIG_API",
                    &o,
                    tailnet(Some("MACHINE_APPROVAL_NEEDED")),
                    "ENABLE",
                    None,
                    None,
                    None,
                ),
                r(
                    "CONFIG_API",
                    &o,
                    tailnet(Some("MAX_KEY_DURATION")),
                    "UPDATE",
                    Some(json!(180)),
                    Some(json!(30)),
                    None,
                ),
                r(
                    "CONFIG_API",
                    &o,
                    tailnet(Some("TKA")),
                    "ENABLE",
                    None,
                    None,
                    None,
                ),
                r(
                    "CONFIG_API",
                    &o,
                    tailnet(Some("USER_APPROVAL_REQUIRED")),
                    "ENABLE",
                    None,
                    None,
                    None,
                ),
                r(
                    "CONFIG_API",
                    &o,
                    tailnet(Some("NETWORK_FLOW_LOGGING")),
                    "DISABLE",
                    None,
                    None,
                    None,
                ),
                r(
                    "CONFIG_API",
                    &o,
                    tailnet(Some("COLLECT_POSTURE_IDENTITY")),
                    "ENABLE",
                    None,
                    None,
                    None,
                ),
                r(
                    "CONFIG_API",
                    &o,
                    tailnet(Some("HTTPS")),
                    "DISABLE",
                    None,
                    None,
                    None,
                ),
                r(
                    "CONFIG_API",
                    &o,
                    tailnet(None),
                    "UPDATE",
                    None,
                    Some(json!({"devicesAutoUpdatesOn": true})),
                    None,
                ),
                r(
                    "CONFIG_API",
                    &o,
                    tailnet(None),
                    "UPDATE",
                    None,
                    Some(json!({"usersRoleAllowedToJoinExternalTailnets": "admin"})),
                    None,
                ),
                r(
                    "CONFIG_API",
                    &o,
                    tailnet(None),
                    "UPDATE",
                    None,
                    Some(json!({"routeSelection": "regional-routing"})),
                    None,
                ),
                r(
                    "CONFIG_API",
                    &o,
                    tailnet(None),
                    "UPDATE",
                    None,
                    Some(json!({"aclsExternallyManagedOn": true})),
                    None,
                ),
                r(
                    "CONFIG_API",
                    &o,
                    tailnet(None),
                    "UPDATE",
                    None,
                    Some(json!({"aclsExternalLink": "https://example.com/acl"})),
                    None,
                ),
            ],
        ),
        (
            env(
                next(),
                "cSettings2",
                owner(),
                "TailnetSettingsChanged",
                json!({"devicesApprovalOn": false, "devicesKeyDurationDays": 7, "tailnetLockOn": false}),
            ),
            vec![
                r(
                    "CONFIG_API",
                    &o,
                    tailnet(Some("MACHINE_APPROVAL_NEEDED")),
                    "DISABLE",
                    None,
                    None,
                    None,
                ),
                r(
                    "CONFIG_API",
                    &o,
                    tailnet(Some("MAX_KEY_DURATION")),
                    "UPDATE",
                    Some(json!(30)),
                    Some(json!(7)),
                    None,
                ),
                r(
                    "CONFIG_API",
                    &o,
                    tailnet(Some("TKA")),
                    "DISABLE",
                    None,
                    None,
                    None,
                ),
            ],
        ),
        (
            env(
                next(),
                "cOauth",
                oauth(),
                "KeyGenerated",
                json!({
                    "keyId": "kAuth2", "userId": "u2", "description": "", "reusable": false,
                    "ephemeral": false, "preauthorized": true, "tags": [], "expirySeconds": 60,
                    "expires": time(300), "secretHash": HASH,
                }),
            ),
            vec![r(
                "CONFIG_API",
                &json!({"id": "kClient1", "type": "OAUTH_CLIENT"}),
                json!({"id": "kAuth2", "type": "API_KEY"}),
                "CREATE",
                None,
                Some(json!({
                    "keyType": "auth", "description": "", "userId": "u2", "expirySeconds": 60,
                    "expires": time(300),
                    "capabilities": {"devices": {"create": {
                        "reusable": false, "ephemeral": false, "preauthorized": true, "tags": [],
                    }}},
                })),
                None,
            )],
        ),
        (
            env(
                next(),
                "cSuspend",
                owner(),
                "UserSuspended",
                json!({"userId": "u2"}),
            ),
            vec![r(
                "CONFIG_API",
                &o,
                json!({"id": "u2", "name": "admin@example.com", "type": "USER"}),
                "SUSPEND",
                None,
                None,
                None,
            )],
        ),
        (
            env(
                next(),
                "cRestore",
                owner(),
                "UserRestored",
                json!({"userId": "u2"}),
            ),
            vec![r(
                "CONFIG_API",
                &o,
                json!({"id": "u2", "name": "admin@example.com", "type": "USER"}),
                "RESTORE",
                None,
                None,
                None,
            )],
        ),
        (
            env(
                next(),
                "cRemove",
                owner(),
                "UserRemoved",
                json!({"userId": "u2"}),
            ),
            vec![r(
                "CONFIG_API",
                &o,
                json!({"id": "u2", "name": "admin@example.com", "type": "USER"}),
                "DELETE",
                None,
                None,
                None,
            )],
        ),
        (
            env(
                next(),
                "cClient",
                owner(),
                "OAuthClientCreated",
                json!({
                    "clientId": "kClient9", "principal": "uClient9", "secretHash": HASH,
                    "scopes": ["auth_keys", "devices:core:read"], "tags": ["tag:ci"],
                    "description": "ci",
                }),
            ),
            vec![r(
                "CONFIG_API",
                &o,
                json!({"id": "kClient9", "name": "ci", "type": "API_KEY"}),
                "CREATE",
                None,
                Some(json!({
                    "keyType": "client", "description": "ci",
                    "scopes": ["auth_keys", "devices:core:read"], "tags": ["tag:ci"],
                })),
                None,
            )],
        ),
        (
            env(
                next(),
                "cToken",
                json!({"type": "system", "id": "oauth"}),
                "AccessTokenIssued",
                json!({
                    "tokenId": "tAccess9", "clientId": "kClient9", "secretHash": HASH,
                    "expires": time(59), "scopes": ["auth_keys"],
                }),
            ),
            vec![],
        ),
        (
            env(
                next(),
                "cDeleteClient",
                owner(),
                "OAuthClientDeleted",
                json!({"clientId": "kClient9"}),
            ),
            vec![r(
                "CONFIG_API",
                &o,
                json!({"id": "kClient9", "name": "ci", "type": "API_KEY"}),
                "REVOKE",
                None,
                None,
                None,
            )],
        ),
        // R23: webhook endpoints; the target's name is the URL, no record holds a secret.
        (
            env(
                next(),
                "cHook",
                owner(),
                "WebhookCreated",
                json!({
                    "endpointId": "wHook1", "endpointUrl": "https://hooks.example.com/a",
                    "providerType": "", "subscriptions": ["nodeCreated"], "creator": "u1",
                }),
            ),
            vec![r(
                "CONFIG_API",
                &o,
                json!({"id": "wHook1", "name": "https://hooks.example.com/a", "type": "WEBHOOK_ENDPOINT"}),
                "CREATE",
                None,
                Some(json!({
                    "endpointUrl": "https://hooks.example.com/a", "providerType": "",
                    "subscriptions": ["nodeCreated"],
                })),
                None,
            )],
        ),
        (
            env(
                next(),
                "cHookSubs",
                owner(),
                "WebhookUpdated",
                json!({"endpointId": "wHook1", "subscriptions": ["userCreated"]}),
            ),
            vec![r(
                "CONFIG_API",
                &o,
                json!({
                    "id": "wHook1", "name": "https://hooks.example.com/a",
                    "type": "WEBHOOK_ENDPOINT", "property": "SUBSCRIBED_EVENTS",
                }),
                "UPDATE",
                None,
                Some(json!(["userCreated"])),
                None,
            )],
        ),
        (
            env(
                next(),
                "cHookRotate",
                owner(),
                "WebhookSecretRotated",
                json!({"endpointId": "wHook1", "rotation": 1}),
            ),
            vec![r(
                "CONFIG_API",
                &o,
                json!({
                    "id": "wHook1", "name": "https://hooks.example.com/a",
                    "type": "WEBHOOK_ENDPOINT", "property": "SECRET",
                }),
                "UPDATE",
                None,
                None,
                None,
            )],
        ),
        (
            env(
                next(),
                "cHookDelete",
                owner(),
                "WebhookDeleted",
                json!({"endpointId": "wHook1"}),
            ),
            vec![r(
                "CONFIG_API",
                &o,
                json!({"id": "wHook1", "name": "https://hooks.example.com/a", "type": "WEBHOOK_ENDPOINT"}),
                "DELETE",
                None,
                None,
                None,
            )],
        ),
    ]
}

/// A record as JSON, with the fields every record has checked and then removed.
fn own_part(env: &Envelope, record: &Record) -> Value {
    let mut v = serde_json::to_value(record).expect("serializes");
    let o = v.as_object_mut().expect("an object");
    assert_eq!(o.remove("type"), Some(json!("CONFIG")));
    assert_eq!(o.remove("deferredAt"), Some(json!(NOT_DEFERRED)));
    assert_eq!(o.remove("eventTime"), Some(json!(env.time.to_string())));
    assert_eq!(
        o.remove("eventGroupID"),
        Some(json!(env.command_id.as_str()))
    );
    assert_eq!(o.remove("seq"), Some(json!(env.seq.get())));
    assert_eq!(o.remove("hash"), Some(json!(env.hash.to_hex())));
    v
}

#[test]
fn every_event_type_makes_exactly_its_records() {
    let mut recorder = Recorder::default();
    let mut covered = std::collections::BTreeSet::new();
    for (env, want) in scenario() {
        covered.insert(env.event_type());
        let got = recorder.records(&env);
        let got: Vec<Value> = got.iter().map(|r| own_part(&env, r)).collect();
        assert_eq!(
            got,
            want,
            "{} (seq {}):\n got  {:#}\n want {:#}",
            env.event_type(),
            env.seq,
            Value::from(got.clone()),
            Value::from(want.clone())
        );
    }
    let all: std::collections::BTreeSet<_> = EventType::ALL.iter().copied().collect();
    assert_eq!(covered, all, "the scenario covers every event type");
}

#[test]
fn every_event_type_is_mapped_to_tailscale_event_names() {
    for t in EventType::ALL {
        let names = event_names(*t).unwrap_or_else(|| panic!("{t} has no mapping in records.rs"));
        for name in names {
            assert!(
                TAILSCALE_EVENTS.contains(name) || AUTHKEYS_EVENTS.contains(name),
                "{t}: {name} is neither Tailscale's nor a documented authkeys event name"
            );
        }
    }
    for name in AUTHKEYS_EVENTS {
        assert!(!TAILSCALE_EVENTS.contains(name), "{name} is Tailscale's");
    }
    // The event names the issue names are Tailscale's, and no dotted name is an action.
    for name in [
        "USER.UPDATE.USER_ROLE",
        "USER.DELETE",
        "USER.SUSPEND",
        "USER.RESTORE",
        "TAILNET.ENABLE.MACHINE_APPROVAL_NEEDED",
        "TAILNET.DISABLE.MACHINE_APPROVAL_NEEDED",
        "TAILNET.UPDATE.MAX_KEY_DURATION",
        "TAILNET.ENABLE.TKA",
        "TAILNET.DISABLE.TKA",
    ] {
        assert!(TAILSCALE_EVENTS.contains(&name), "{name}");
    }
}

#[test]
fn every_record_speaks_tailscale_vocabulary() {
    let mut recorder = Recorder::default();
    for (env, _) in scenario() {
        let names = event_names(env.event_type()).expect("mapped");
        for r in recorder.records(&env) {
            assert!(ACTIONS.contains(&r.action), "{r:?}");
            assert!(ORIGINS.contains(&r.origin), "{r:?}");
            assert!(ACTOR_TYPES.contains(&r.actor.actor_type), "{r:?}");
            assert!(TARGET_TYPES.contains(&r.target.target_type), "{r:?}");
            assert!(
                r.target.property.is_none_or(|p| PROPERTIES.contains(&p)),
                "{r:?}"
            );
            assert!(
                names.contains(&r.event().as_str()),
                "{}: {} not among {names:?}",
                env.event_type(),
                r.event()
            );
        }
    }
}

#[test]
fn records_of_an_event_folded_again_are_the_same() {
    // The gateway folds names up to the head, then makes a window's records from the same
    // recorder: a record must not see events after its own (the key duration before a change).
    let events: Vec<Envelope> = scenario().into_iter().map(|(e, _)| e).collect();
    let mut first = Recorder::default();
    let once: Vec<Vec<Record>> = events.iter().map(|e| first.records(e)).collect();
    let mut ahead = Recorder::default();
    for e in &events {
        ahead.fold(e);
    }
    let again: Vec<Vec<Record>> = events.iter().map(|e| ahead.records(e)).collect();
    assert_eq!(once, again);
}

fn all_records() -> Vec<Record> {
    let mut recorder = Recorder::default();
    scenario()
        .iter()
        .flat_map(|(e, _)| recorder.records(e))
        .collect()
}

fn kept(filters: &[(&str, &str)]) -> Vec<(u64, String)> {
    let mut f = Filter::default();
    for (k, v) in filters {
        assert!(f.add(k, v), "{k} is a filter");
    }
    all_records()
        .iter()
        .filter(|r| f.matches(r))
        .map(|r| (r.seq, r.event()))
        .collect()
}

#[test]
fn filters_narrow_by_actor_target_and_event() {
    let all = all_records();
    let total = all.len();
    assert_eq!(kept(&[]).len(), total);
    assert!(Filter::default().is_empty());

    // actor: an exact id…
    let by_admin = kept(&[("actor", "u2")]);
    assert_eq!(
        by_admin.len(),
        all.iter().filter(|r| r.actor.id == "u2").count()
    );
    assert!(!by_admin.is_empty() && by_admin.len() < total);
    assert!(
        kept(&[("actor", "admin@example.com")]).is_empty(),
        "ids only"
    );
    assert!(kept(&[("actor", "U2")]).is_empty(), "ids match exactly");
    // …or `~search` on login or display name, ignoring case.
    assert_eq!(kept(&[("actor", "~ADMIN@")]), by_admin);
    assert_eq!(
        kept(&[("actor", "~example.com")]).len(),
        all.iter().filter(|r| r.actor.actor_type == "USER").count()
    );
    // A node acted for by a registrar is the node; a service is its name.
    let by_node = kept(&[("actor", "n1")]);
    assert_eq!(
        by_node,
        vec![
            (8, "NODE.CREATE".to_owned()),
            (12, "NODE.UPDATE.KEY_EXPIRY_TIME".to_owned()),
            (13, "NODE.APPROVE".to_owned()),
        ]
    );
    assert!(kept(&[("actor", "ra")]).is_empty());
    assert_eq!(kept(&[("actor", "timers")]).len(), 3);
    // Values of one parameter are alternatives.
    assert_eq!(
        kept(&[("actor", "n1"), ("actor", "timers")]).len(),
        by_node.len() + 3
    );

    // target: any part of the id or name, ignoring case.
    let web = kept(&[("target", "WEB-")]);
    assert_eq!(
        web.len(),
        all.iter().filter(|r| r.target.id == "n1").count()
    );
    assert_eq!(kept(&[("target", "n1")]), web);
    assert_eq!(
        kept(&[("target", "auth1")]).len(),
        all.iter().filter(|r| r.target.id == "kAuth1").count()
    );
    assert_eq!(
        kept(&[("target", "example.com")]).len(),
        all.iter()
            .filter(|r| r.target.name.contains("example.com"))
            .count()
    );
    assert!(kept(&[("target", "nothing-like-it")]).is_empty());

    // event: exact event names.
    assert_eq!(
        kept(&[("event", "API_KEY.CREATE")]),
        vec![
            (3, "API_KEY.CREATE".to_owned()),
            (6, "API_KEY.CREATE".to_owned()),
            (28, "API_KEY.CREATE".to_owned()),
            (32, "API_KEY.CREATE".to_owned()),
        ]
    );
    assert_eq!(
        kept(&[
            ("event", "TAILNET.UPDATE.MAX_KEY_DURATION"),
            ("event", "USER.UPDATE.USER_ROLE")
        ]),
        vec![
            (5, "USER.UPDATE.USER_ROLE".to_owned()),
            (26, "TAILNET.UPDATE.MAX_KEY_DURATION".to_owned()),
            (27, "TAILNET.UPDATE.MAX_KEY_DURATION".to_owned()),
        ]
    );
    // The verb alone or the old dotted action names are not event names: nothing matches.
    for unknown in [
        "UPDATE",
        "NODE.UPDATE",
        "USER.UPDATE.ROLE",
        "node.create",
        "NoSuchEvent",
    ] {
        assert!(kept(&[("event", unknown)]).is_empty(), "{unknown}");
    }

    // Parameters combine: every one given must match.
    assert_eq!(
        kept(&[
            ("actor", "u2"),
            ("target", "n1"),
            ("event", "NODE.UPDATE.ACL_TAGS")
        ]),
        vec![(15, "NODE.UPDATE.ACL_TAGS".to_owned())]
    );
    assert!(kept(&[("actor", "u1"), ("event", "NODE.UPDATE.ACL_TAGS")]).is_empty());

    // Empty values are no filter; other parameters are not filters.
    assert_eq!(
        kept(&[("actor", ""), ("target", ""), ("event", "")]).len(),
        total
    );
    assert!(!Filter::default().add("start", "2026-01-01T00:00:00Z"));
}
