//! Writes every schema document of [`authkeys_schemas::documents`] under `schemas/`, and removes
//! `*.schema.json` files there that no document names any more. Examples are not touched.
//!
//! Run as `make schemas` (`cargo run -q -p authkeys-schemas --bin gen-schemas`).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    if std::env::args().len() > 1 {
        bail!(
            "usage: gen-schemas (no arguments; writes under {})",
            root().display()
        );
    }
    let root = root();
    let docs = authkeys_schemas::documents();

    let mut written = 0;
    let mut dirs = BTreeSet::new();
    for doc in &docs {
        let path = root.join(&doc.path);
        let dir = path.parent().context("a document path has a folder")?;
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        dirs.insert(dir.to_path_buf());
        let text = doc.to_text();
        if fs::read(&path).ok().as_deref() != Some(text.as_bytes()) {
            fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
            written += 1;
        }
    }

    let wanted: BTreeSet<PathBuf> = docs.iter().map(|d| root.join(&d.path)).collect();
    let mut removed = 0;
    for dir in &dirs {
        for stale in schema_files(dir)?.difference(&wanted) {
            fs::remove_file(stale).with_context(|| format!("remove {}", stale.display()))?;
            eprintln!("removed stale {}", stale.display());
            removed += 1;
        }
    }

    eprintln!(
        "gen-schemas: {} documents, {written} written, {removed} removed",
        docs.len()
    );
    Ok(())
}

/// The `schemas/` folder of this crate.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `*.schema.json` files directly in `dir`.
fn schema_files(dir: &Path) -> anyhow::Result<BTreeSet<PathBuf>> {
    let mut files = BTreeSet::new();
    for entry in fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("list {}", dir.display()))?
            .path();
        let is_schema = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".schema.json"));
        if is_schema && path.is_file() {
            files.insert(path);
        }
    }
    Ok(files)
}
