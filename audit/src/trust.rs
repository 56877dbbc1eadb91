//! The pinned public key an auditor trusts: `--trusted-key` as 64 hex digits, as base64 of the
//! 32 key bytes, or as a file holding either.

use base64::Engine as _;
use ed25519_dalek::VerifyingKey;

use crate::Error;

/// Parses `text` (hex or base64 of the 32 bytes), or, when it names an existing file, that
/// file's contents (trimmed).
pub fn parse_trusted_key(text: &str) -> Result<VerifyingKey, Error> {
    let path = std::path::Path::new(text);
    let owned;
    let text = if path.is_file() {
        owned = std::fs::read_to_string(path).map_err(|e| {
            Error::BadInput(format!("read the trusted key file {}: {e}", path.display()))
        })?;
        owned.trim()
    } else {
        text.trim()
    };
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).map_err(|e| Error::BadInput(format!("trusted key: {e}")))?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
            .map_err(|_| {
                Error::BadInput(
                    "the trusted key must be an ed25519 public key: 64 hex digits or base64 of \
                     32 bytes (or a file holding one)"
                        .into(),
                )
            })?
    };
    let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        Error::BadInput(format!(
            "the trusted key is {} bytes; an ed25519 public key is 32",
            bytes.len()
        ))
    })?;
    VerifyingKey::from_bytes(&arr)
        .map_err(|_| Error::BadInput("the trusted key is not a valid ed25519 public key".into()))
}

/// The hex spelling of a public key, as `--trusted-key` takes it.
pub fn key_hex(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_base64_and_file_spell_the_same_key() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        let hex = key_hex(&key);
        assert_eq!(parse_trusted_key(&hex).expect("hex"), key);
        let b64 = base64::engine::general_purpose::STANDARD.encode(key.as_bytes());
        assert_eq!(parse_trusted_key(&b64).expect("base64"), key);
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("trusted.pub");
        std::fs::write(&file, format!("{hex}\n")).expect("write");
        assert_eq!(
            parse_trusted_key(file.to_str().expect("utf8")).expect("file"),
            key
        );
        for bad in ["", "zz", &hex[..62], "AAAA"] {
            assert!(
                matches!(parse_trusted_key(bad), Err(Error::BadInput(_))),
                "{bad}"
            );
        }
    }
}
