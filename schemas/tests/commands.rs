//! The NATS command schemas under `schemas/commands/` and their golden examples under
//! `schemas/examples/commands/`: each example satisfies its schema *and* the Rust type, byte for
//! byte; request examples also pass the service's field validation; mutated copies are refused by
//! both.

mod common;

use std::collections::BTreeSet;

use authkeys_domain::secret::{self, SecretKind};
use authkeys_protocol::lock::{
    LockDisableRequest, LockInitRequest, LockSignRequest, LockStatus, LockStatusRequest,
};
use authkeys_protocol::webhook::{
    CreateWebhookRequest, DeleteWebhookRequest, RotateWebhookRequest, UpdateWebhookRequest,
    WebhookIdReply,
};
use authkeys_protocol::{
    self, AccessTokenReply, AddUserRequest, AuthorizeNodeRequest, ChangeRoleRequest,
    ChangeSettingsRequest, ClientIdReply, ClientReply, CreateClientRequest, DeleteClientRequest,
    DeleteNodeRequest, DeletedReply, DeviceReply, ExpireNodeRequest, GenerateKeyRequest,
    IssueAccessTokenRequest, IssueTokenRequest, KeyReply, NodeStatusRequest, RegisterRequest,
    RemoveUserRequest, Reply, RestoreUserRequest, RevokeKeyRequest, RevokeTokenRequest,
    RevokedTokenReply, SetKeyExpiryRequest, SetTagsRequest, SettingsReply, SuspendUserRequest,
    TimerReply, TimerRequest, TokenReply, UserIdReply, UserReply,
};
use authkeys_schemas::COMMAND_EXAMPLES_DIR;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Decodes as `T` the way the service does, runs `check` on it, and re-encodes it.
fn through<T: DeserializeOwned + Serialize>(
    bytes: &[u8],
    check: impl Fn(&T) -> Result<(), String>,
) -> Result<Vec<u8>, String> {
    let v: T = authkeys_protocol::decode(bytes).map_err(|e| e.to_string())?;
    check(&v)?;
    serde_json::to_vec(&v).map_err(|e| e.to_string())
}

fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<(), String> {
    r.map(drop).map_err(|e| e.to_string())
}

fn none<T>(_: &T) -> Result<(), String> {
    Ok(())
}

/// Returns [`through`] with the type's `parse` as the check when `title` names one of the types.
macro_rules! through_parse {
    ($title:expr, $bytes:expr, [$($t:ident),* $(,)?]) => {
        match $title {
            $(stringify!($t) => return through($bytes, |r: &$t| ok(r.parse())),)*
            _ => {}
        }
    };
}

/// The example through the Rust type of its schema's title: decoded, validated (requests) and
/// re-encoded.
fn round_trip(title: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
    // The requests that only need the service's own validation.
    through_parse! { title, bytes, [
        NodeStatusRequest, GenerateKeyRequest, RevokeKeyRequest, AddUserRequest,
        IssueTokenRequest, SetTagsRequest, SetKeyExpiryRequest, ExpireNodeRequest,
        AuthorizeNodeRequest, DeleteNodeRequest, ChangeSettingsRequest, TimerRequest,
        ChangeRoleRequest, RemoveUserRequest, SuspendUserRequest, RestoreUserRequest,
        RevokeTokenRequest, CreateClientRequest, DeleteClientRequest, LockInitRequest,
        LockSignRequest, LockDisableRequest, UpdateWebhookRequest, RotateWebhookRequest,
        DeleteWebhookRequest,
    ] }
    match title {
        "RegisterRequest" => through(bytes, |r: &RegisterRequest| {
            let parsed = r.parse().map_err(|e| e.to_string())?;
            // The example's key is a real one: form and checksum hold.
            if !parsed.auth_key.is_well_formed() {
                return Err("authKey is not a well-formed auth key".into());
            }
            Ok(())
        }),
        "LockStatusRequest" => through(bytes, |r: &LockStatusRequest| {
            r.parse()
                .token
                .map(drop)
                .ok_or("token: not a well-formed API token".into())
        }),
        "LockStatusOrError" => through(bytes, none::<Reply<LockStatus>>),
        "TimerReplyOrError" => through(bytes, none::<Reply<TimerReply>>),
        "DeviceReplyOrError" => through(bytes, none::<Reply<DeviceReply>>),
        "KeyReplyOrError" => through(bytes, |r: &Reply<KeyReply>| match r {
            Reply::Ok(k) => match &k.key.key {
                Some(text) => ok(secret::parse(SecretKind::Auth, text)),
                None => Ok(()),
            },
            Reply::Err(_) => Ok(()),
        }),
        "UserReplyOrError" => through(bytes, |r: &Reply<UserReply>| match r {
            Reply::Ok(u) => match &u.api_key {
                Some(text) => ok(secret::parse(SecretKind::Api, text)),
                None => Ok(()),
            },
            Reply::Err(_) => Ok(()),
        }),
        "RevokedTokenReplyOrError" => through(bytes, none::<Reply<RevokedTokenReply>>),
        "ClientReplyOrError" => through(bytes, none::<Reply<ClientReply>>),
        "ClientIdReplyOrError" => through(bytes, none::<Reply<ClientIdReply>>),
        "AccessTokenReplyOrError" => through(bytes, none::<Reply<AccessTokenReply>>),
        "IssueAccessTokenRequest" => through(bytes, |r: &IssueAccessTokenRequest| {
            r.parse().map(drop).map_err(|e| e.to_string())
        }),
        "TokenReplyOrError" => through(bytes, |r: &Reply<TokenReply>| match r {
            Reply::Ok(t) => match &t.api_key {
                Some(text) => ok(secret::parse(SecretKind::Api, text)),
                None => Ok(()),
            },
            Reply::Err(_) => Ok(()),
        }),
        "DeletedReplyOrError" => through(bytes, none::<Reply<DeletedReply>>),
        "UserIdReplyOrError" => through(bytes, none::<Reply<UserIdReply>>),
        "SettingsReplyOrError" => through(bytes, none::<Reply<SettingsReply>>),
        "WebhookIdReplyOrError" => through(bytes, none::<Reply<WebhookIdReply>>),
        "CreateWebhookRequest" => through(bytes, |r: &CreateWebhookRequest| {
            let id = authkeys_events::EndpointId::parse("wH00k7Ex4mple").map_err(|e| e.why)?;
            ok(r.parse(id))
        }),
        other => Err(format!("no Rust type for {other}")),
    }
}

/// `(file name, title, bytes)` of every command example.
fn examples() -> Vec<(String, String, Vec<u8>)> {
    common::file_names(COMMAND_EXAMPLES_DIR, ".json")
        .into_iter()
        .map(|name| {
            let title = name
                .split('.')
                .next()
                .expect("split yields at least one piece")
                .to_owned();
            let bytes = common::read(&format!("{COMMAND_EXAMPLES_DIR}/{name}"));
            (name, title, bytes)
        })
        .collect()
}

fn schema_path(title: &str) -> String {
    format!("commands/{title}.schema.json")
}

#[test]
fn c01_every_command_document_has_an_example_and_every_example_a_document() {
    // Examples are named `<Title>[.<variant>].json`; each title is a command document, and each
    // command document has at least one example.
    let documents: BTreeSet<String> = authkeys_schemas::documents()
        .into_iter()
        .filter(|d| d.path.starts_with("commands/"))
        .map(|d| d.path)
        .collect();
    let titles: BTreeSet<String> = examples()
        .into_iter()
        .map(|(_, title, _)| schema_path(&title))
        .collect();
    assert_eq!(titles, documents);
}

#[test]
fn c02_examples_validate_against_their_schema() {
    // Every example passes its schema with `format` checked.
    for (name, title, bytes) in examples() {
        let json: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let validator = common::validator(&common::read_json(&schema_path(&title)));
        let errors = common::errors(&validator, &json);
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
}

#[test]
fn c03_examples_round_trip_through_the_rust_types_byte_for_byte() {
    // Each file is exactly the Rust type's encoding of what it decodes to, plus one newline; request
    // examples pass every field check of `parse`, and the secrets shown are well-formed.
    for (name, title, bytes) in examples() {
        let json = bytes
            .strip_suffix(b"\n")
            .unwrap_or_else(|| panic!("{name}: the file must end in one newline"));
        let again = round_trip(&title, json).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            again == json,
            "{name}: re-serializes differently:\n file: {}\n rust: {}",
            String::from_utf8_lossy(json),
            String::from_utf8_lossy(&again)
        );
    }
}

#[test]
fn c04_mutated_examples_are_refused_by_the_schema_and_the_rust_type() {
    // Non-vacuity: each mutation is refused by the schema (at the given place) and by the Rust
    // side (decode or field validation).
    type Mutate = fn(&mut Value);
    let cases: &[(&str, Mutate, &str)] = &[
        (
            "RegisterRequest.json",
            |v| v["nodeKey"] = json!("nodekey:AB"),
            "/nodeKey",
        ),
        ("RegisterRequest.json", |v| v["extra"] = json!(1), ""),
        (
            "RegisterRequest.json",
            |v| {
                v.as_object_mut().expect("object").remove("hostname");
            },
            "",
        ),
        (
            "GenerateKeyRequest.json",
            |v| v["expirySeconds"] = json!(7_776_001),
            "/expirySeconds",
        ),
        (
            "GenerateKeyRequest.json",
            |v| {
                v["capabilities"]["devices"]["create"]["tags"] = json!(["Tag:x"]);
            },
            "/capabilities/devices/create/tags/0",
        ),
        (
            "AddUserRequest.json",
            |v| v["role"] = json!("root"),
            "/role",
        ),
        (
            "ChangeSettingsRequest.json",
            |v| v["devicesKeyDurationDays"] = json!(0),
            "/devicesKeyDurationDays",
        ),
        (
            "SetTagsRequest.json",
            |v| v["nodeId"] = json!("k123"),
            "/nodeId",
        ),
        (
            "TimerRequest.json",
            |v| v["due"]["kind"] = json!("keyExpiryX"),
            "/due",
        ),
        (
            "TimerRequest.ephemeral.json",
            |v| v["due"]["disconnectedAt"] = json!("yesterday"),
            "/due",
        ),
        ("DeviceReplyOrError.json", |v| v["ok"] = json!(false), ""),
        (
            "DeviceReplyOrError.invalid_key.json",
            |v| v["error"]["code"] = json!("teapot"),
            "",
        ),
    ];
    for (name, mutate, at) in cases {
        let title = name.split('.').next().expect("a title");
        let mut v = common::read_json(&format!("{COMMAND_EXAMPLES_DIR}/{name}"));
        let before = v.clone();
        mutate(&mut v);
        assert_ne!(v, before, "{name}: the mutation changed nothing");
        let validator = common::validator(&common::read_json(&schema_path(title)));
        let errors = common::errors(&validator, &v);
        assert!(
            errors.iter().any(|(path, _)| path == at),
            "{name}: schema did not refuse at {at:?}: {errors:?}"
        );
        let bytes = serde_json::to_vec(&v).expect("serializes");
        assert!(
            round_trip(title, &bytes).is_err(),
            "{name}: the Rust side accepted {v}"
        );
    }
}
