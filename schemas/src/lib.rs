//! JSON Schemas (draft 2020-12) of everything authkeys writes to its log and of the NATS commands,
//! generated from the Rust types of `authkeys-events` and `authkeys_domain::wire` so that they
//! cannot say something the types do not.
//!
//! - [`documents`]: the list of every schema file, with its path under `schemas/`. The
//!   `gen-schemas` binary writes exactly these; the drift test compares them byte for byte.
//! - [`events`]: the documents themselves: one per event type (the envelope with that type's
//!   `data`, `type` and `version` pinned) and the generic envelope.
//! - [`text`]: the one spelling of a document on disk: pretty JSON, keys in a fixed order,
//!   trailing newline, whatever `serde_json` features the build happens to have.
//!
//! Command request schemas (`commands/<Type>Request.schema.json`) use the *deserialize* contract:
//! they describe what the service accepts. Reply schemas (`commands/<Type>ReplyOrError.schema.json`:
//! the subject's `{ok: true, …}` or `{ok: false, error}`) use the serialize contract, like events.
//!
//! Event schemas use schemars' *serialize* contract: they describe the canonical bytes authkeys
//! writes. Where a reader is more lenient than the writer (a `Timestamp` with an offset, `Tags`
//! unsorted or repeated, a `LogId` in uppercase) the schema is the stricter of the two.
//!
//! Invariant: no IO here; only the binaries touch files.

pub mod events;
pub mod text;

use authkeys_events::EventType;
use authkeys_protocol::lock::{
    LockDisableRequest, LockInitRequest, LockSignRequest, LockStatus, LockStatusRequest,
};
use authkeys_protocol::webhook::{
    CreateWebhookRequest, DeleteWebhookRequest, RotateWebhookRequest, UpdateWebhookRequest,
    WebhookIdReply,
};
use authkeys_protocol::{
    AccessTokenReply, AddUserRequest, AuthorizeNodeRequest, ChangeRoleRequest,
    ChangeSettingsRequest, ClientIdReply, ClientReply, CreateClientRequest, DeleteClientRequest,
    DeleteNodeRequest, DeletedReply, DeviceReply, ExpireNodeRequest, GenerateKeyRequest,
    IssueAccessTokenRequest, IssueTokenRequest, KeyReply, NodeStatusRequest, RegisterRequest,
    RemoveUserRequest, Reply, RestoreUserRequest, RevokeKeyRequest, RevokeTokenRequest,
    RevokedTokenReply, SetKeyExpiryRequest, SetTagsRequest, SettingsReply, SuspendUserRequest,
    TimerReply, TimerRequest, TokenReply, UserIdReply, UserReply,
};
use schemars::generate::{Contract, SchemaSettings};
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::Value;

/// The meta-schema every document declares in `$schema`.
pub const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// One schema file: where it lives under `schemas/` and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Path relative to the `schemas/` folder, `/`-separated (e.g. `events/KeyUsed.schema.json`).
    pub path: String,
    /// The schema.
    pub schema: Value,
}

impl Document {
    /// The exact bytes of the file: see [`text::to_json_text`].
    pub fn to_text(&self) -> String {
        text::to_json_text(&self.schema)
    }
}

/// Every schema document, in a stable order. To publish a new kind of schema, add its line here;
/// `gen-schemas` and the tests pick it up from this list.
pub fn documents() -> Vec<Document> {
    let mut docs = vec![Document {
        path: "envelope.schema.json".to_owned(),
        schema: events::envelope_schema(),
    }];
    docs.extend(EventType::ALL.iter().map(|&ty| Document {
        path: event_schema_path(ty),
        schema: events::event_schema(ty),
    }));
    // Commands go under `commands/`, one line each.
    docs.push(command_document::<RegisterRequest>());
    docs.push(command_document::<NodeStatusRequest>());
    docs.push(command_document::<GenerateKeyRequest>());
    docs.push(command_document::<RevokeKeyRequest>());
    docs.push(command_document::<AddUserRequest>());
    docs.push(command_document::<IssueTokenRequest>());
    docs.push(command_document::<RevokeTokenRequest>());
    docs.push(command_document::<CreateClientRequest>());
    docs.push(command_document::<DeleteClientRequest>());
    docs.push(command_document::<IssueAccessTokenRequest>());
    docs.push(command_document::<ChangeRoleRequest>());
    docs.push(command_document::<RemoveUserRequest>());
    docs.push(command_document::<SuspendUserRequest>());
    docs.push(command_document::<RestoreUserRequest>());
    docs.push(command_document::<SetTagsRequest>());
    docs.push(command_document::<SetKeyExpiryRequest>());
    docs.push(command_document::<ExpireNodeRequest>());
    docs.push(command_document::<AuthorizeNodeRequest>());
    docs.push(command_document::<DeleteNodeRequest>());
    docs.push(command_document::<ChangeSettingsRequest>());
    docs.push(command_document::<TimerRequest>());
    docs.push(command_document::<CreateWebhookRequest>());
    docs.push(command_document::<UpdateWebhookRequest>());
    docs.push(command_document::<RotateWebhookRequest>());
    docs.push(command_document::<DeleteWebhookRequest>());
    docs.push(command_document::<LockInitRequest>());
    docs.push(command_document::<LockSignRequest>());
    docs.push(command_document::<LockDisableRequest>());
    docs.push(command_document::<LockStatusRequest>());
    docs.push(reply_document::<Reply<DeviceReply>>());
    docs.push(reply_document::<Reply<KeyReply>>());
    docs.push(reply_document::<Reply<UserReply>>());
    docs.push(reply_document::<Reply<TokenReply>>());
    docs.push(reply_document::<Reply<RevokedTokenReply>>());
    docs.push(reply_document::<Reply<ClientReply>>());
    docs.push(reply_document::<Reply<ClientIdReply>>());
    docs.push(reply_document::<Reply<AccessTokenReply>>());
    docs.push(reply_document::<Reply<UserIdReply>>());
    docs.push(reply_document::<Reply<DeletedReply>>());
    docs.push(reply_document::<Reply<SettingsReply>>());
    docs.push(reply_document::<Reply<TimerReply>>());
    docs.push(reply_document::<Reply<WebhookIdReply>>());
    docs.push(reply_document::<Reply<LockStatus>>());
    docs
}

/// Where the schema of events of type `ty` lives under `schemas/`.
pub fn event_schema_path(ty: EventType) -> String {
    format!("events/{ty}.schema.json")
}

/// Where the golden example of type `ty` lives under `schemas/`.
pub fn event_example_path(ty: EventType) -> String {
    format!("examples/events/{ty}.json")
}

/// The standalone schema of a command type `T`, at `commands/<name>.schema.json`. Commands are
/// input, so this describes what the Rust type *accepts* (schemars' deserialize contract).
pub fn command_document<T: JsonSchema>() -> Document {
    Document {
        path: format!("commands/{}.schema.json", T::schema_name()),
        schema: root_schema_for::<T>(Contract::Deserialize),
    }
}

/// The standalone schema of a command reply type `T`, at `commands/<name>.schema.json`. Replies
/// are output, so this describes what the service *writes* (schemars' serialize contract).
pub fn reply_document<T: JsonSchema>() -> Document {
    Document {
        path: format!("commands/{}.schema.json", T::schema_name()),
        schema: root_schema_for::<T>(Contract::Serialize),
    }
}

/// Where the golden examples of commands live under `schemas/`: `<Title>[.<variant>].json`
/// validates against `commands/<Title>.schema.json`.
pub const COMMAND_EXAMPLES_DIR: &str = "examples/commands";

/// A generator for draft 2020-12 under the given contract.
pub(crate) fn generator(contract: Contract) -> SchemaGenerator {
    SchemaSettings::draft2020_12()
        .with(|s| s.contract = contract)
        .into_generator()
}

/// `T`'s schema as a document of its own: `$schema`, `title` (always the type's name, where
/// schemars would take a doc comment's `# heading`), its definitions under `$defs`.
pub fn root_schema_for<T: JsonSchema>(contract: Contract) -> Value {
    let mut schema = generator(contract).into_root_schema_for::<T>().to_value();
    if let Value::Object(map) = &mut schema {
        map.insert("title".to_owned(), T::schema_name().into_owned().into());
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_documents_are_standalone_roots() {
        // The one-line path produces a rooted, titled 2020-12 document for a request and a reply.
        let doc = command_document::<RegisterRequest>();
        assert_eq!(doc.path, "commands/RegisterRequest.schema.json");
        assert_eq!(doc.schema["$schema"], DRAFT_2020_12);
        assert_eq!(doc.schema["title"], "RegisterRequest");
        assert_eq!(doc.schema["additionalProperties"], false);
        assert!(doc.to_text().ends_with("}\n"));
        let reply = reply_document::<Reply<DeviceReply>>();
        assert_eq!(reply.path, "commands/DeviceReplyOrError.schema.json");
        assert_eq!(reply.schema["title"], "DeviceReplyOrError");
    }

    #[test]
    fn every_event_type_has_exactly_one_document() {
        let docs = documents();
        for &ty in EventType::ALL {
            let path = event_schema_path(ty);
            assert_eq!(docs.iter().filter(|d| d.path == path).count(), 1, "{path}");
        }
        let commands = docs
            .iter()
            .filter(|d| d.path.starts_with("commands/"))
            .count();
        assert_eq!(commands, 43, "29 requests and 14 replies");
        assert_eq!(docs.len(), EventType::ALL.len() + 1 + commands);
    }
}
