//! `authkeys audit replay`: a view (keys page or machines) as it stood after a given seq or at a
//! given time, folded from seq 1 with the projections' own pure `apply`, so its `state_hash`
//! is comparable with a live view's at the same seq.

use std::ops::ControlFlow;

use authkeys_events::{Hash, Timestamp};
use authkeys_projections::{KeysView, MachinesView, View};
use serde::Serialize;

use crate::Error;

/// Where to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// After this seq (inclusive).
    Seq(u64),
    /// After the last event at or before this time.
    Time(Timestamp),
    /// The head.
    Now,
}

impl Until {
    /// `SEQ` (digits), `TIME` (RFC 3339) or `now`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("now") {
            return Ok(Self::Now);
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse()
                .map(Self::Seq)
                .map_err(|_| Error::BadInput(format!("--until {s}: seq out of range")));
        }
        Timestamp::parse(s).map(Self::Time).map_err(|e| {
            Error::BadInput(format!(
                "--until must be a seq (digits), an RFC 3339 time or `now`: {e}"
            ))
        })
    }
}

/// Which view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewName {
    /// The keys page (`view-keys`).
    Keys,
    /// The machines view (`view-machines`).
    Machines,
}

impl ViewName {
    /// `keys` or `machines`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "keys" => Ok(Self::Keys),
            "machines" => Ok(Self::Machines),
            other => Err(Error::BadInput(format!(
                "--view {other:?}: the views are `keys` and `machines`"
            ))),
        }
    }
}

/// A replayed view.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Replayed {
    /// `keys` or `machines`.
    pub view: &'static str,
    /// The last event applied (0: none).
    pub seq: u64,
    /// Its time.
    pub time: Option<Timestamp>,
    /// The view's state hash (as the live view computes it).
    pub state_hash: Hash,
    /// Every row, key order: `(stored key, row)`.
    pub rows: Vec<Row>,
}

/// One row of a view.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The stored key.
    pub key: String,
    /// The row as stored (JSON).
    pub row: serde_json::Value,
}

struct Fold<V> {
    view: V,
    until: Until,
    seq: u64,
    time: Option<Timestamp>,
}

async fn replay_view<V: View>(source: &crate::Source, until: Until) -> Result<Fold<V>, Error> {
    let acc = Fold {
        view: V::default(),
        until,
        seq: 0,
        time: None,
    };
    source
        .fold(acc, |f, env| {
            let past = match f.until {
                Until::Seq(s) => env.seq.get() > s,
                Until::Time(t) => env.time > t,
                Until::Now => false,
            };
            if past {
                return ControlFlow::Break(());
            }
            f.view.apply(env);
            f.seq = env.seq.get();
            f.time = Some(env.time);
            ControlFlow::Continue(())
        })
        .await
}

fn rows<V: View>(view: &V) -> Vec<Row> {
    let mut out = Vec::new();
    view.for_each_row(&mut |k, v| {
        out.push(Row {
            key: k.to_owned(),
            row: serde_json::from_slice(v)
                .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(v).into())),
        });
    });
    out
}

/// Replays `view` from `source` up to `until`.
pub async fn replay(
    source: &crate::Source,
    until: Until,
    view: ViewName,
) -> Result<Replayed, Error> {
    if let Until::Seq(0) = until {
        return Err(Error::BadInput("--until: seqs start at 1".into()));
    }
    let (name, seq, time, state_hash, rows) = match view {
        ViewName::Keys => {
            let f = replay_view::<KeysView>(source, until).await?;
            ("keys", f.seq, f.time, f.view.state_hash(), rows(&f.view))
        }
        ViewName::Machines => {
            let f = replay_view::<MachinesView>(source, until).await?;
            (
                "machines",
                f.seq,
                f.time,
                f.view.state_hash(),
                rows(&f.view),
            )
        }
    };
    if let Until::Seq(s) = until
        && seq < s
    {
        return Err(Error::BadInput(format!(
            "--until {s}: the log ends at seq {seq}"
        )));
    }
    Ok(Replayed {
        view: name,
        seq,
        time,
        state_hash,
        rows,
    })
}
