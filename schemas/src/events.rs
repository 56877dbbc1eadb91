//! The event documents: the envelope with one type's `data`, and the generic envelope.
//!
//! The envelope is serialized by hand in `authkeys_events::envelope` (field order, `hash` last),
//! so its schema is assembled by hand here from the field types' own schemas; the golden-example
//! tests hold the two together (an envelope field added there and not here fails them).

use authkeys_events::{
    Actor, CommandId, EventId, EventType, Hash, Seq, StreamId, TailnetId, Timestamp,
};
use schemars::generate::Contract;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::{DRAFT_2020_12, generator};

/// Events are written by authkeys and read by everyone else, so their schemas describe the
/// canonical form that is written.
const CONTRACT: Contract = Contract::Serialize;

/// The document for events of type `ty`: the envelope, `type` and `version` pinned to `ty`'s,
/// `data` described by `ty`'s data type (under `$defs`, titled by its type name).
pub fn event_schema(ty: EventType) -> Value {
    let mut generator = generator(CONTRACT);
    let data = ty.data_schema(&mut generator);
    let fields = EnvelopeFields {
        ty: json!({
            "description": "The event type.",
            "const": ty.as_str(),
        }),
        version: json!({
            "description": "The schema version of `data`.",
            "type": "integer",
            "const": ty.version(),
        }),
        data: with_description(data, "The event's data.").to_value(),
    };
    document(
        &mut generator,
        ty.as_str(),
        &format!(
            "A {ty} event (data version {v}) in its envelope, exactly as the log serves it.",
            v = ty.version()
        ),
        fields,
    )
}

/// The generic envelope: every field, `type` one of the known event names, `data` any object
/// (checked against `events/<type>.schema.json`).
pub fn envelope_schema() -> Value {
    let mut generator = generator(CONTRACT);
    let names: Vec<&str> = EventType::ALL.iter().map(|ty| ty.as_str()).collect();
    let fields = EnvelopeFields {
        ty: json!({
            "description": "The event type; `data` follows `events/<type>.schema.json`.",
            "type": "string",
            "enum": names,
        }),
        version: field::<u16>(
            &mut generator,
            "The schema version of `data` for this type.",
        ),
        data: json!({
            "description": "The event's data, as described by the schema of its `type`.",
            "type": "object",
        }),
    };
    document(
        &mut generator,
        "Envelope",
        "Every event travels in this envelope: position, identity, provenance, data and hash \
         chain links.",
        fields,
    )
}

/// The parts of the envelope that differ between the generic and the per-type documents.
struct EnvelopeFields {
    ty: Value,
    version: Value,
    data: Value,
}

/// The envelope object in wire order (as `authkeys_events::envelope` writes it), every field
/// required, nothing else allowed, wrapped as a root document with its definitions.
fn document(
    generator: &mut SchemaGenerator,
    title: &str,
    description: &str,
    fields: EnvelopeFields,
) -> Value {
    let properties: Vec<(&str, Value)> = vec![
        (
            "seq",
            field::<Seq>(generator, "Global position, gapless from 1."),
        ),
        (
            "id",
            field::<EventId>(generator, "Unique event id; the `Nats-Msg-Id`."),
        ),
        ("type", fields.ty),
        ("version", fields.version),
        (
            "tailnet",
            field::<TailnetId>(generator, "The tailnet it belongs to."),
        ),
        (
            "stream",
            field::<StreamId>(generator, "The stream of its aggregate, `kind/id`."),
        ),
        (
            "streamVersion",
            field::<u64>(generator, "Position within the stream, from 1."),
        ),
        (
            "time",
            field::<Timestamp>(generator, "When it was committed."),
        ),
        ("actor", field::<Actor>(generator, "Who caused it.")),
        (
            "commandId",
            field::<CommandId>(generator, "The command that produced it."),
        ),
        ("data", fields.data),
        (
            "prevHash",
            field::<Hash>(
                generator,
                "The previous event's hash; 32 zero bytes for seq 1.",
            ),
        ),
        (
            "hash",
            field::<Hash>(
                generator,
                "blake3(prevHash ‖ seq as u64 little-endian ‖ the stored envelope bytes without \
                 `hash`).",
            ),
        ),
    ];
    let required: Vec<&str> = properties.iter().map(|(name, _)| *name).collect();
    let properties: Map<String, Value> = properties
        .into_iter()
        .map(|(name, schema)| (name.to_owned(), schema))
        .collect();
    json!({
        "$schema": DRAFT_2020_12,
        "title": title,
        "description": description,
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
        "$defs": generator.take_definitions(true),
    })
}

/// `T`'s schema (usually a `$ref`) with the envelope field's own description beside it.
fn field<T: JsonSchema>(generator: &mut SchemaGenerator, description: &str) -> Value {
    with_description(generator.subschema_for::<T>(), description).to_value()
}

fn with_description(mut schema: Schema, description: &str) -> Schema {
    schema.insert("description".to_owned(), description.into());
    schema
}
