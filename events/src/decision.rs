//! The seams between the rules and the log: what a command decides ([`Decision`], [`Proposed`],
//! [`Expected`]), the state the log keeps current for it ([`Aggregate`]), and the time source
//! ([`Clock`]) that roles inject.
//!
//! They live here, below both, so that the domain (which implements them) links no storage and
//! the log (which drives them) knows no rule.

use std::collections::HashMap;
use std::sync::Arc;

use crate::{Envelope, Event, StreamId, TailnetId, Timestamp};

/// An [`Aggregate::snapshot`] taken now and encoded when called.
pub type SnapshotLater = Box<dyn FnOnce() -> Vec<u8> + Send>;

/// The state the log's writer keeps current with every committed event, and that every decision
/// reads. The command service's domain state implements it; `()` is a log with no rules.
pub trait Aggregate: Send + 'static {
    /// What a decision returns when it refuses a command.
    type Rejection: Send + std::fmt::Debug + 'static;

    /// Folds one committed event in. Infallible and free of logic beyond bookkeeping.
    fn apply(&mut self, env: &Envelope);

    /// Names the encoding of [`Aggregate::snapshot`], and with it what `apply` folds: the log
    /// restores a snapshot only into an aggregate that names the same format, so a change to the
    /// state's shape **or to what `apply` does** must change it (old snapshots are then ignored
    /// and the state is folded again from seq 1). `None` (the default): this aggregate keeps no
    /// snapshots, and the log always folds every event at open.
    const SNAPSHOT_FORMAT: Option<&'static str> = None;

    /// The state as bytes that [`Aggregate::restore`] turns back into an equal state. Called by
    /// the log's writer, which waits for it: keep it a plain encoding.
    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }

    /// [`Aggregate::snapshot`] to run later, on another thread: what it needs is taken now
    /// (e.g. a copy of the state), so that the writer waits only for that, not for the encoding.
    /// By default the encoding itself is done now.
    fn snapshot_later(&self) -> SnapshotLater {
        let bytes = self.snapshot();
        Box::new(move || bytes)
    }

    /// The state [`Aggregate::snapshot`] wrote, or why the bytes are not one.
    fn restore(bytes: &[u8]) -> Result<Self, String>
    where
        Self: Sized,
    {
        let _ = bytes;
        Err("this aggregate keeps no snapshots".into())
    }
}

/// Keeps no snapshots: a log of `()` (the relay's and projections' tests, the benchmarks' floor)
/// verifies every event at open, as before snapshots existed.
impl Aggregate for () {
    type Rejection = std::convert::Infallible;
    fn apply(&mut self, _env: &Envelope) {}
}

/// What a proposed event expects of its stream's version (optimistic concurrency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// No expectation.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must be at exactly this version.
    Exactly(u64),
}

impl Expected {
    /// Whether a stream at version `current` (0: it does not exist) meets this expectation.
    pub fn admits(self, current: u64) -> bool {
        match self {
            Expected::Any => true,
            Expected::NoStream => current == 0,
            Expected::Exactly(v) => current == v,
        }
    }
}

/// An event a command wants to append, with what it expects of its stream.
#[derive(Debug, Clone)]
pub struct Proposed {
    /// The event.
    pub event: Event,
    /// Checked against the stream version, including earlier events of the same command.
    pub expected: Expected,
}

/// What a command decided: the tailnet its events belong to, and the events.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The tailnet of every event (decided too: a registration names only its key).
    pub tailnet: TailnetId,
    /// The events, in order; empty when nothing needs to change.
    pub events: Vec<Proposed>,
}

/// A stream that is not at the version an event of a decision expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionConflict {
    /// The stream.
    pub stream: StreamId,
    /// What the event expected.
    pub expected: Expected,
    /// Where the stream is (counting the decision's earlier events).
    pub actual: u64,
}

impl Decision {
    /// Each event with its stream and the version it brings that stream to, checking every
    /// event's expectation against `stored` (a stream's committed version, 0 if none) and the
    /// decision's earlier events. All or nothing: the first unmet expectation is the answer.
    pub fn versioned(
        self,
        stored: impl Fn(&StreamId) -> u64,
    ) -> Result<Vec<(Event, StreamId, u64)>, VersionConflict> {
        let mut versions: HashMap<StreamId, u64> = HashMap::new();
        let mut out = Vec::with_capacity(self.events.len());
        for p in self.events {
            let stream = p.event.stream(&self.tailnet);
            let current = versions
                .get(&stream)
                .copied()
                .unwrap_or_else(|| stored(&stream));
            if !p.expected.admits(current) {
                return Err(VersionConflict {
                    stream,
                    expected: p.expected,
                    actual: current,
                });
            }
            versions.insert(stream.clone(), current + 1);
            out.push((p.event, stream, current + 1));
        }
        Ok(out)
    }
}

/// Reads the current time; injected into every role (write and read side) so that tests
/// control it. Nothing in this crate reads one.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl Clock {
    /// A clock that reads `now()`.
    pub fn new(now: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock(now = {})", self.now())
    }
}

/// The wall clock, in UTC milliseconds: what the binary injects.
pub fn system_clock() -> Clock {
    Clock::new(|| {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp::from_unix_ms(ms).expect("the system clock is between 1970 and 9999")
    })
}
