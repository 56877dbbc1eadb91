//! Helpers shared by the schema tests: where the checked-in files are, how to read them, and one
//! way to build a validator (draft 2020-12, `format` checked, nothing fetched).

// Each test binary uses a different subset of these.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use authkeys_events::EventType;
use jsonschema::Validator;
use serde_json::Value;

/// The `schemas/` folder.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The bytes of a checked-in file, by its path under `schemas/`.
pub fn read(path: &str) -> Vec<u8> {
    let full = root().join(path);
    fs::read(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
}

/// A checked-in file parsed as JSON.
pub fn read_json(path: &str) -> Value {
    serde_json::from_slice(&read(path)).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// The names of the files directly in `dir` (under `schemas/`) whose names end in `suffix`.
pub fn file_names(dir: &str, suffix: &str) -> BTreeSet<String> {
    let full = root().join(dir);
    fs::read_dir(&full)
        .unwrap_or_else(|e| panic!("list {}: {e}", full.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .filter_map(|p| file_name(&p))
        .filter(|n| n.ends_with(suffix))
        .collect()
}

fn file_name(p: &Path) -> Option<String> {
    p.file_name()?.to_str().map(str::to_owned)
}

/// A draft 2020-12 validator that checks `format` (so `date-time` is enforced, not just noted)
/// and resolves nothing outside the document (the crate is built without resolvers).
pub fn validator(schema: &Value) -> Validator {
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("schema does not compile: {e}"))
}

/// The validator of the checked-in schema of `ty`.
pub fn event_validator(ty: EventType) -> Validator {
    validator(&read_json(&authkeys_schemas::event_schema_path(ty)))
}

/// The validator of the checked-in generic envelope schema.
pub fn envelope_validator() -> Validator {
    validator(&read_json("envelope.schema.json"))
}

/// `(instance path, message)` of every error `validator` finds in `instance`.
pub fn errors(validator: &Validator, instance: &Value) -> Vec<(String, String)> {
    validator
        .iter_errors(instance)
        .map(|e| (e.instance_path().to_string(), e.to_string()))
        .collect()
}

/// A golden example: its type, its exact bytes, and the bytes parsed as JSON.
pub struct Example {
    pub ty: EventType,
    pub bytes: Vec<u8>,
    pub json: Value,
}

/// Every golden example, in catalogue order.
pub fn examples() -> Vec<Example> {
    EventType::ALL
        .iter()
        .map(|&ty| {
            let path = authkeys_schemas::event_example_path(ty);
            let bytes = read(&path);
            let json =
                serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{path}: not JSON: {e}"));
            Example { ty, bytes, json }
        })
        .collect()
}
