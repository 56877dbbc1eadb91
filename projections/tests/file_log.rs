//! A view rebuilt from the log file directly (`file_log::rebuild_from_file`) is the view folded
//! from the log's events one by one, whatever the number of decoding threads and the batch size;
//! a row whose bytes do not match its hash, or that does not link, stops the rebuild at its seq;
//! the rebuilt rows written as a worker writes them load back as the same view.

use std::ops::ControlFlow;

use authkeys_events::Envelope;
use authkeys_log::{Log, LogConfig, LogReader, fixtures};
use authkeys_projections::file_log::rebuild_from_file_with;
use authkeys_projections::store::ViewStore;
use authkeys_projections::{KeysView, MachinesView, View};

/// A log of the fixture mix (about 600 events) in `dir`.
fn build(dir: &std::path::Path) -> std::path::PathBuf {
    let log = Log::open(LogConfig::in_dir(dir), ()).expect("open the log");
    for c in 0..20u64 {
        let events = (c * 12..c * 12 + 12)
            .flat_map(authkeys_projections::fixtures::step)
            .collect();
        log.append_blocking(fixtures::append_command(&format!("c{c}"), events))
            .expect("append");
    }
    log.close();
    dir.join("log.redb")
}

/// Every stored row, `(seq, hash ‖ body)`.
fn rows(path: &std::path::Path) -> Vec<(u64, Vec<u8>)> {
    let reader = LogReader::open(path).expect("open");
    let snap = reader.snapshot().expect("snapshot");
    let mut out = Vec::new();
    snap.for_each_event(1, |at, row| {
        out.push((at, row.to_vec()));
        ControlFlow::Continue(())
    })
    .expect("read");
    out
}

fn folded<V: View>(rows: &[(u64, Vec<u8>)]) -> V {
    let mut view = V::default();
    for (_, row) in rows {
        let (hash, body) = row.split_at(32);
        let hash = authkeys_events::Hash(hash.try_into().expect("32 bytes"));
        view.apply(&Envelope::decode_body(body, hash).expect("decodes"));
    }
    view
}

fn same_for_every_split<V: View>(path: &std::path::Path, rows: &[(u64, Vec<u8>)]) {
    let want = folded::<V>(rows).state_hash();
    let head = rows.len() as u64;
    for (workers, batch_rows) in [(0, 512), (1, 1), (2, 7), (3, 512)] {
        let (view, cp) = rebuild_from_file_with::<V>(path, None, workers, batch_rows)
            .expect("the untouched log rebuilds");
        assert_eq!(cp.seq, head, "{workers} threads, {batch_rows} a batch");
        assert_eq!(
            view.state_hash(),
            want,
            "{workers} threads, {batch_rows} a batch"
        );
        let (part, cp) = rebuild_from_file_with::<V>(path, Some(head / 2), workers, batch_rows)
            .expect("a prefix rebuilds");
        assert_eq!(cp.seq, head / 2);
        assert_eq!(
            part.state_hash(),
            folded::<V>(&rows[..(head / 2) as usize]).state_hash()
        );
    }
}

#[test]
fn a_view_rebuilt_from_the_file_is_the_view_folded_from_its_events() {
    // Proves: the pipelined file rebuild (rows read here, decoded on other threads, applied in
    // seq order) gives the same rows as a plain fold, for the machines and keys views, with no
    // decoding thread, one, two or three, batches of 1, 7 or 512 rows, and up to a seq.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = build(dir.path());
    let rows = rows(&path);
    assert!(rows.len() > 300, "{} events", rows.len());
    same_for_every_split::<MachinesView>(&path, &rows);
    same_for_every_split::<KeysView>(&path, &rows);
    // What a worker's rebuild writes (each row as it is encoded) loads back as the same view.
    let (view, cp) =
        authkeys_projections::rebuild_from_file::<KeysView>(&path, None).expect("rebuilds");
    let store_path = dir.path().join("view-keys.redb");
    let store = ViewStore::open(&store_path, KeysView::NAME).expect("opens");
    store.replace_with_view(&view, cp).expect("writes");
    let (loaded, loaded_cp) = store.load::<KeysView>().expect("loads");
    assert_eq!(loaded_cp, cp);
    assert_eq!(loaded.state_hash(), view.state_hash());
}

#[test]
fn a_row_that_does_not_match_its_hash_stops_the_rebuild_at_its_seq() {
    // Proves: a stored body changed after its hash was written (one byte), or a row dropped,
    // fails the rebuild naming that seq, whichever thread decoded it.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = build(dir.path());
    let rows = rows(&path);
    let reader = LogReader::open(&path).expect("open");
    let log_id = reader
        .snapshot()
        .expect("snapshot")
        .log_id()
        .expect("read")
        .expect("a log id");
    drop(reader);
    let bad = 200u64;
    let mut flipped = rows.clone();
    let row = &mut flipped[(bad - 1) as usize].1;
    let at = row.len() - 3;
    row[at] ^= 1;
    let mut dropped = rows.clone();
    dropped.remove((bad - 1) as usize);
    for (what, tampered) in [("a flipped byte", flipped), ("a dropped row", dropped)] {
        let copy = dir.path().join("tampered.redb");
        let _ = std::fs::remove_file(&copy);
        fixtures::write_raw_log(&copy, &[("log_id", log_id.0.to_vec())], &tampered, &[])
            .expect("write");
        for (workers, batch_rows) in [(0, 512), (2, 7)] {
            let err = rebuild_from_file_with::<MachinesView>(&copy, None, workers, batch_rows)
                .expect_err(what);
            assert!(
                format!("{err:#}").contains(&bad.to_string()),
                "{what}, {workers} threads: {err:#}"
            );
        }
    }
}
