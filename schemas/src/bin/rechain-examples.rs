//! Re-links the golden examples under `schemas/examples/events/` into one valid little log.
//!
//! Reads every example, orders them by the `seq` they carry (ties by file name), renumbers them
//! 1..=n, sets each `prevHash` to the previous example's hash (zero for the first) and `hash` to
//! [`Envelope::compute_hash`], and writes each back as [`Envelope::to_json`] plus a newline. So to
//! add an example: write its envelope with any `seq` (where it belongs in the story), any hash,
//! and run `cargo run -p authkeys-schemas --bin rechain-examples`. Every example must decode as
//! an [`Envelope`]; nothing is written unless all do.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, bail};
use authkeys_events::{Envelope, Hash, Seq};

fn main() -> anyhow::Result<()> {
    if std::env::args().len() > 1 {
        bail!("usage: rechain-examples (no arguments)");
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/events");

    let mut examples = Vec::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("list {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("list {}", dir.display()))?
            .path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let bytes = fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        let env = Envelope::from_json(bytes.trim_ascii_end())
            .with_context(|| format!("decode {}", path.display()))?;
        examples.push((path, env));
    }
    examples.sort_by(|(pa, a), (pb, b)| (a.seq, pa).cmp(&(b.seq, pb)));

    let mut prev = Hash::ZERO;
    let mut seq = Seq::FIRST;
    for (_, env) in &mut examples {
        env.seq = seq;
        env.prev_hash = prev;
        env.hash = env.compute_hash();
        prev = env.hash;
        seq = seq.next();
    }

    for (path, env) in &examples {
        let mut text = env.to_json();
        text.push(b'\n');
        fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    }
    eprintln!("rechain-examples: {} examples, head {prev}", examples.len());
    Ok(())
}
