//! Secret key files kept beside, never inside, the log file.
//!
//! A key file holds 32 random bytes as 64 hex digits and a newline. It is created once, mode 0600,
//! with `create_new` so that two processes can never both create it; later opens only read it.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::Path;

use crate::LogError;

/// Reads a 32-byte key file, or creates it with fresh randomness if it does not exist and
/// `create` is set.
pub fn load_or_create_key(path: &Path, create: bool) -> Result<[u8; 32], LogError> {
    match std::fs::File::open(path) {
        Ok(mut f) => {
            let mut text = String::new();
            Read::by_ref(&mut f)
                .take(1024)
                .read_to_string(&mut text)
                .map_err(|e| LogError::io(format!("read key file {}", path.display()), e))?;
            let mut key = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut key).map_err(|_| {
                LogError::Config(format!(
                    "key file {} does not hold 64 hex digits",
                    path.display()
                ))
            })?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => create_key(path),
        Err(e) => Err(LogError::io(format!("open key file {}", path.display()), e)),
    }
}

fn create_key(path: &Path) -> Result<[u8; 32], LogError> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key)
        .map_err(|e| LogError::Config(format!("no randomness for a new key: {e}")))?;
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| LogError::io(format!("create key file {}", path.display()), e))?;
    f.write_all(format!("{}\n", hex::encode(key)).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| LogError::io(format!("write key file {}", path.display()), e))?;
    if let Some(dir) = path.parent() {
        // Make the new directory entry durable too.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_0600_once_then_reads_the_same_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("signing.key");
        assert!(load_or_create_key(&path, false).is_err());
        let k1 = load_or_create_key(&path, true).expect("creates");
        let k2 = load_or_create_key(&path, true).expect("reads");
        assert_eq!(k1, k2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "nothex").expect("overwrite");
        assert!(load_or_create_key(&path, true).is_err());
    }
}
