//! The domain's commands through the real log: a clock the test moves, a log in a temp dir, and
//! commands as the command service hands them to the log.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use authkeys_domain::{Command, Rejection, State, decide};
use authkeys_events::{CommandId, Timestamp};
use authkeys_log::{Log, LogConfig};

use crate::support::{T0_MS, actor_of};

/// A clock the test moves by hand.
#[derive(Debug, Clone)]
pub struct TestClock(Arc<AtomicI64>);

impl TestClock {
    /// Starting at [`T0_MS`].
    pub fn new() -> Self {
        Self(Arc::new(AtomicI64::new(T0_MS)))
    }

    /// Now.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_unix_ms(self.0.load(Ordering::SeqCst)).expect("in range")
    }

    /// Moves forward by `ms`.
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// As the log's clock.
    pub fn as_clock(&self) -> authkeys_log::Clock {
        let t = Arc::clone(&self.0);
        authkeys_log::Clock::new(move || {
            Timestamp::from_unix_ms(t.load(Ordering::SeqCst)).expect("the test clock is in range")
        })
    }
}

impl Default for TestClock {
    fn default() -> Self {
        Self::new()
    }
}

/// Opens a domain log in `dir` with `clock`.
pub fn open_log(dir: &Path, clock: &TestClock) -> Log<State> {
    let mut config = LogConfig::in_dir(dir);
    config.clock = clock.as_clock();
    Log::open(config, State::default()).expect("the log opens")
}

/// A fresh command id.
pub fn next_command_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    format!("cmd-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Appends `cmd` to `log` under a fresh command id.
pub fn append(
    log: &Log<State>,
    cmd: Command,
) -> Result<authkeys_log::Committed, authkeys_log::AppendError<Rejection>> {
    log.append_blocking(log_command(cmd, &next_command_id()))
}

/// `cmd` as the command service hands it to the log: the decision is the domain's `decide`.
pub fn log_command(cmd: Command, command_id: &str) -> authkeys_log::Append<State> {
    let scope = match &cmd {
        Command::Admin { tailnet, .. } => tailnet.to_string(),
        Command::CreateTailnet { .. } => "bootstrap".into(),
        _ => "registrar-1".into(),
    };
    authkeys_log::Append {
        scope,
        command_id: CommandId::parse(command_id).expect("valid command id"),
        actor: actor_of(&cmd),
        fingerprint: *blake3::hash(format!("{cmd:?}").as_bytes()).as_bytes(),
        answer: None,
        decide: Box::new(move |s: &State, now| decide(s, &cmd, now)),
    }
}
