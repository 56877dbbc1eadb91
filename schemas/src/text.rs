//! The on-disk spelling of a schema document.
//!
//! `serde_json` orders object keys alphabetically, or by insertion if any crate in the build
//! turns on its `preserve_order` feature; a checked-in file must not depend on which. So keys are
//! ordered here, explicitly: in a schema object `$schema`, `$id`, `title`, `description`, `$ref`,
//! `type` come first and `$defs` last, the rest alphabetically; in name maps (`properties`,
//! `$defs`) and in instance data (`const`, `enum`, …) purely alphabetically.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

/// Pretty JSON (two-space indent), keys in the fixed order above, one trailing newline.
pub fn to_json_text(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(&Ordered {
        value: schema,
        role: Role::Schema,
    })
    .expect("a JSON value with string keys always serializes");
    text.push('\n');
    text
}

/// What an object in the document is, which decides how its keys are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A schema: keywords.
    Schema,
    /// A map from names to schemas (`properties`, `$defs`, …).
    Names,
    /// Instance data (`const`, `enum`, `default`, `examples`) or a list of names (`required`).
    Data,
}

impl Role {
    /// The role of the value under `key` in an object of this role.
    fn child(self, key: &str) -> Role {
        match self {
            Role::Schema => match key {
                "properties" | "$defs" | "patternProperties" | "dependentSchemas" => Role::Names,
                "const" | "enum" | "default" | "examples" | "required" | "dependentRequired" => {
                    Role::Data
                }
                _ => Role::Schema,
            },
            Role::Names => Role::Schema,
            Role::Data => Role::Data,
        }
    }

    /// Sort key of `key` among its siblings.
    fn rank(self, key: &str) -> u8 {
        if self != Role::Schema {
            return 1;
        }
        match key {
            "$schema" => 0,
            "$id" => 1,
            "title" => 2,
            "description" => 3,
            "$ref" => 4,
            "type" => 5,
            "$defs" => 7,
            _ => 6,
        }
    }
}

struct Ordered<'a> {
    value: &'a Value,
    role: Role,
}

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.value {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by_key(|(k, _)| (self.role.rank(k), k.as_str()));
                let mut out = s.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    let role = self.role.child(key);
                    out.serialize_entry(key, &Ordered { value, role })?;
                }
                out.end()
            }
            Value::Array(items) => {
                let mut out = s.serialize_seq(Some(items.len()))?;
                for value in items {
                    out.serialize_element(&Ordered {
                        value,
                        role: self.role,
                    })?;
                }
                out.end()
            }
            other => other.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keywords_lead_defs_trail_and_names_sort_plainly() {
        let doc = json!({
            "$defs": {"B": {"type": "integer", "title": "B"}, "A": {"const": {"z": 1, "title": 2}}},
            "type": "object",
            "properties": {"title": {"type": "string"}, "description": {"type": "string"}},
            "title": "X",
            "$schema": "s",
        });
        let text = to_json_text(&doc);
        let order: Vec<usize> = [
            "\"$schema\"",
            "\"title\": \"X\"",
            "\"type\": \"object\"",
            "\"properties\"",
            "\"description\": {",
            "\"title\": {",
            "\"$defs\"",
            "\"A\"",
            "\"title\": 2",
            "\"z\": 1",
            "\"B\"",
            "\"title\": \"B\"",
            "\"type\": \"integer\"",
        ]
        .iter()
        .map(|needle| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{needle} in {text}"))
        })
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert!(text.ends_with("}\n") && !text.ends_with("\n\n"));
    }
}
