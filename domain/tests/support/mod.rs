//! Given/when/then for the rules of authkeys.
//!
//! ```text
//! given().tailnet().user(ALICE, Role::Admin)
//!     .key(ALICE, "kOne", KeyOpts::one_off())
//!     .registered("kOne", 1, "n1")
//!     .when(register("kOne", 2, "n2"))
//!     .then_rejected(Rejection::InvalidKey);
//! ```
//!
//! Every `given` step that is a command runs through the real [`decide`] and folds the events it
//! decided into [`State`] in envelopes like the log's (gapless `seq`, chained hashes, per-stream
//! versions checked against each event's `Expected`, `time` = the injected now). Time is injected:
//! [`at`] turns seconds after [`T0_MS`] into a [`Timestamp`]; nothing reads a clock.
//!
//! Mint are deterministic per key id ([`issued`]), so a registration needs only the key id;
//! [`register_with_secret`] presents any other text.
//!
//! Shared by several test binaries; each uses a part of it.
#![allow(dead_code)]

use std::collections::HashMap;

use authkeys_domain::lock::LockOp;
use authkeys_domain::secret::{self, Issued, SecretKind};
use authkeys_domain::{AdminOp, Command, KeyRequest, NewToken, Rejection, State, decide};
use authkeys_events::PreSignature;
use authkeys_events::lock::LockPrivateKey;
use authkeys_events::{
    Actor, ActorType, CommandId, Description, Envelope, Event, EventId, EventType, ExpirySeconds,
    Hash, Hostname, KeyId, LoginName, NodeId, NodeKey, Role, Seq, StreamId, Tags, TailnetId,
    TailnetName, Timestamp, TokenId, UserId,
};
use authkeys_events::{Decision, Expected};

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

/// The instant every scenario starts at (2027-01-15T08:00:00Z).
pub const T0_MS: i64 = 1_800_000_000_000;
/// Seconds in a day.
pub const DAY: i64 = 86_400;

/// `secs` seconds after [`T0_MS`].
pub fn at(secs: i64) -> Timestamp {
    at_ms(secs * 1000)
}

/// `ms` milliseconds after [`T0_MS`].
pub fn at_ms(ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(T0_MS + ms).expect("scenario times are in range")
}

// ---------------------------------------------------------------------------------------------
// Identifiers
// ---------------------------------------------------------------------------------------------

/// The hashing key of secrets in every scenario.
pub const HASHING_KEY: [u8; 32] = [0x48; 32];

/// The tailnet [`Given::tailnet`] creates.
pub const TAILNET: &str = "T1";
/// Its Owner.
pub const OWNER: &str = "uOwner";
/// Conventional users for [`Given::user`].
pub const ALICE: &str = "uAlice";
/// Another user.
pub const BOB: &str = "uBob";

/// A tailnet id.
pub fn tid(s: &str) -> TailnetId {
    TailnetId::parse(s).expect("valid tailnet id")
}

/// The tailnet of [`Given::tailnet`].
pub fn t1() -> TailnetId {
    tid(TAILNET)
}

/// A user id.
pub fn uid(s: &str) -> UserId {
    UserId::parse(s).expect("valid user id")
}

/// A key id.
pub fn kid(s: &str) -> KeyId {
    KeyId::parse(s).expect("valid key id")
}

/// A node id.
pub fn nid(s: &str) -> NodeId {
    NodeId::parse(s).expect("valid node id")
}

/// Node key number `n`: `nodekey:` and 64 lowercase hex digits, distinct for every `n`.
pub fn node_key(n: u64) -> NodeKey {
    NodeKey::parse(format!(
        "nodekey:{}",
        blake3::hash(&n.to_le_bytes()).to_hex()
    ))
    .expect("64 lowercase hex digits")
}

/// Tags from text; panics on invalid tags (use `Tags::parse` to test refusal).
pub fn tags(t: &[&str]) -> Tags {
    Tags::parse(t).expect("valid tags")
}

/// The tag names as text, in order.
pub fn tag_names(t: &Tags) -> Vec<&str> {
    t.iter().map(|t| t.as_str()).collect()
}

/// The secret of key `key_id` in every scenario: 32 "random" bytes derived from the id.
pub fn issued(key_id: &str) -> Issued {
    issue_with(key_id, b"the secret")
}

/// A different secret for the same key id (a wrong secret with a valid checksum).
pub fn issue_with(key_id: &str, salt: &[u8]) -> Issued {
    let mut h = blake3::Hasher::new();
    h.update(salt);
    h.update(key_id.as_bytes());
    let random: [u8; 32] = *h.finalize().as_bytes();
    secret::issue(SecretKind::Auth, key_id, &random, &HASHING_KEY)
}

/// What the service does with a presented key: checks its form and checksum, then hashes it.
pub fn presented(text: &str) -> (KeyId, Hash) {
    let p = secret::parse(SecretKind::Auth, text).expect("a well-formed key");
    (kid(&p.id), p.hash(&HASHING_KEY))
}

/// An API token for a new user.
pub fn new_token(user: &str) -> NewToken {
    let token_id = TokenId::parse(format!("t{}", &user[1..])).expect("valid token id");
    NewToken {
        token_id,
        secret_hash: Hash(*blake3::hash(user.as_bytes()).as_bytes()),
        expires: at(365 * DAY),
    }
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

/// `authkeys admin bootstrap` of tailnet `tailnet` named `name` with Owner `owner`.
pub fn create_tailnet(tailnet: &str, name: &str, owner: &str) -> Command {
    Command::CreateTailnet {
        tailnet_id: tid(tailnet),
        name: TailnetName::parse(name).expect("valid tailnet name"),
        owner_id: uid(owner),
        owner_login: LoginName::parse(format!("{}@example.com", &owner[1..])).expect("valid login"),
        token: new_token(owner),
    }
}

/// `actor` does `op` in [`TAILNET`].
pub fn admin(actor: &str, op: AdminOp) -> Command {
    admin_in(TAILNET, actor, op)
}

/// `actor` does `op` in `tailnet`.
pub fn admin_in(tailnet: &str, actor: &str, op: AdminOp) -> Command {
    Command::Admin {
        tailnet: tid(tailnet),
        actor: uid(actor),
        op,
    }
}

/// Add user `id` with `role`.
/// `ChangeRole` of `user` to `role`.
pub fn change_role(user: &str, role: Role) -> AdminOp {
    AdminOp::ChangeRole {
        user_id: uid(user),
        role,
    }
}

pub fn add_user(id: &str, role: Role) -> AdminOp {
    AdminOp::AddUser {
        user_id: uid(id),
        login_name: LoginName::parse(format!("{}@example.com", &id[1..])).expect("valid login"),
        role,
        token: new_token(id),
    }
}

/// What a key is asked to be, with the API's defaults (one-off, 90 days, untagged).
#[derive(Debug, Clone)]
pub struct KeyOpts {
    /// R01.
    pub reusable: bool,
    /// R02.
    pub ephemeral: bool,
    /// R03.
    pub preauthorized: bool,
    /// R05.
    pub tags: Tags,
    /// R08.
    pub expiry_seconds: u32,
}

impl KeyOpts {
    /// A one-off key (the default).
    pub fn one_off() -> Self {
        Self {
            reusable: false,
            ephemeral: false,
            preauthorized: false,
            tags: Tags::default(),
            expiry_seconds: ExpirySeconds::MAX.get(),
        }
    }

    /// A reusable key.
    pub fn reusable() -> Self {
        Self {
            reusable: true,
            ..Self::one_off()
        }
    }

    /// Ephemeral.
    pub fn ephemeral(mut self) -> Self {
        self.ephemeral = true;
        self
    }

    /// Pre-approved.
    pub fn preauthorized(mut self) -> Self {
        self.preauthorized = true;
        self
    }

    /// Tagged.
    pub fn tags(mut self, t: &[&str]) -> Self {
        self.tags = tags(t);
        self
    }

    /// Lifetime in seconds.
    pub fn expiry_secs(mut self, secs: u32) -> Self {
        self.expiry_seconds = secs;
        self
    }

    /// The request.
    pub fn request(&self) -> KeyRequest {
        KeyRequest {
            description: Description::parse("test key").expect("valid description"),
            expiry_seconds: ExpirySeconds::new(self.expiry_seconds).expect("1 s to 90 days"),
            reusable: self.reusable,
            ephemeral: self.ephemeral,
            preauthorized: self.preauthorized,
            tags: self.tags.clone(),
        }
    }
}

/// Generate key `key_id` (its secret is [`issued`]`(key_id)`).
pub fn generate(key_id: &str, opts: &KeyOpts) -> AdminOp {
    AdminOp::GenerateKey {
        key_id: kid(key_id),
        secret_hash: issued(key_id).secret_hash,
        request: opts.request(),
    }
}

/// Revoke key `key_id`.
pub fn revoke(key_id: &str) -> AdminOp {
    AdminOp::RevokeKey {
        key_id: kid(key_id),
    }
}

/// A registrar registers node key `nk` with key `key_id` and its right secret; a new node would
/// get `new_node`.
pub fn register(key_id: &str, nk: u64, new_node: &str) -> Command {
    register_with_secret(&issued(key_id).text, nk, new_node)
}

/// A registrar registers node key `nk` presenting `text` as the auth key.
pub fn register_with_secret(text: &str, nk: u64, new_node: &str) -> Command {
    let (key_id, presented_hash) = presented(text);
    Command::Register {
        key_id,
        presented_hash,
        node_key: node_key(nk),
        hostname: Hostname::parse(format!("host-{nk}")).expect("valid hostname"),
        os: "linux".into(),
        new_node_id: nid(new_node),
        presigned: None,
    }
}

/// [`register`] with a key pre-signed by `signer` over `signed_for`'s id (R04).
pub fn register_presigned(
    key_id: &str,
    nk: u64,
    new_node: &str,
    signer: &LockPrivateKey,
    signed_for: &str,
) -> Command {
    let mut cmd = register(key_id, nk, new_node);
    if let Command::Register { presigned, .. } = &mut cmd {
        *presigned = Some(PreSignature::make(signer, &kid(signed_for)));
    }
    cmd
}

/// Lock key number `n` (R04).
pub fn lock_key(n: u8) -> LockPrivateKey {
    LockPrivateKey::from_seed([n; 32])
}

/// `authkeys lock …` by `user`, with the token [`new_token`] gave them.
pub fn lock(user: &str, op: LockOp) -> Command {
    let token = new_token(user);
    Command::Lock {
        token_id: token.token_id,
        presented_hash: token.secret_hash,
        op,
    }
}

/// The disablement secret of the lock tests.
pub const DISABLE_SECRET: [u8; 32] = [0xd1; 32];

/// Turn the lock on trusting `keys`.
pub fn lock_enable(keys: &[&LockPrivateKey]) -> LockOp {
    LockOp::Enable {
        trusted_keys: keys.iter().map(|k| k.public()).collect(),
        disablement_hash: authkeys_events::lock::disablement_hash(&DISABLE_SECRET),
    }
}

/// Who a command's events are attributed to, as the command service attributes them.
pub fn actor_of(cmd: &Command) -> Actor {
    match cmd {
        Command::Admin { actor, .. } => Actor {
            actor_type: ActorType::User,
            id: actor.to_string(),
            login_name: None,
        },
        Command::Register { .. }
        | Command::NodeConnected { .. }
        | Command::NodeDisconnected { .. } => Actor {
            actor_type: ActorType::Registrar,
            id: "registrar-1".into(),
            login_name: None,
        },
        _ => Actor::system("bootstrap"),
    }
}

// ---------------------------------------------------------------------------------------------
// Given / when / then
// ---------------------------------------------------------------------------------------------

/// A history: the state folded so far, the envelopes that made it, and the current time.
#[derive(Debug, Clone)]
pub struct Given {
    state: State,
    history: Vec<Envelope>,
    streams: HashMap<StreamId, u64>,
    prev_hash: Hash,
    now: Timestamp,
    commands: u64,
}

/// An empty history at [`T0_MS`].
pub fn given() -> Given {
    Given {
        state: State::default(),
        history: Vec::new(),
        streams: HashMap::new(),
        prev_hash: Hash::ZERO,
        now: at(0),
        commands: 0,
    }
}

/// A log-level refusal: a decision whose stream expectations do not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConflict(pub String);

impl Given {
    /// Creates [`TAILNET`] with Owner [`OWNER`].
    pub fn tailnet(self) -> Self {
        self.command(create_tailnet(TAILNET, "example.com", OWNER))
    }

    /// The Owner adds user `id` with `role` to [`TAILNET`].
    pub fn user(self, id: &str, role: Role) -> Self {
        self.command(admin(OWNER, add_user(id, role)))
    }

    /// `by` generates key `key_id` in [`TAILNET`].
    pub fn key(self, by: &str, key_id: &str, opts: KeyOpts) -> Self {
        self.command(admin(by, generate(key_id, &opts)))
    }

    /// Node key `nk` registers (or re-authenticates) with key `key_id`; a new node is `node`.
    pub fn registered(self, key_id: &str, nk: u64, node: &str) -> Self {
        self.command(register(key_id, nk, node))
    }

    /// R17: from now on [`TAILNET`] hands out addresses from the first `size` offsets of
    /// 100.64.0.0/10 only (offset 0 is reserved), forgetting every address it knew: call it
    /// right after [`Given::tailnet`], to show exhaustion and reuse after quarantine.
    pub fn address_pool(mut self, size: u32) -> Self {
        self.state
            .tailnets
            .get_mut(&t1())
            .expect("the tailnet exists")
            .addresses = authkeys_domain::addresses::AddressPool::with_size(size);
        self
    }

    /// From now on it is `secs` after [`T0_MS`]. Time never goes backwards.
    pub fn at(mut self, secs: i64) -> Self {
        let t = at(secs);
        assert!(t >= self.now, "time goes forward: {t} < {}", self.now);
        self.now = t;
        self
    }

    /// From now on it is `ms` milliseconds after [`T0_MS`].
    pub fn at_ms(mut self, ms: i64) -> Self {
        let t = at_ms(ms);
        assert!(t >= self.now, "time goes forward: {t} < {}", self.now);
        self.now = t;
        self
    }

    /// Runs `cmd` at the current time; it must be accepted.
    pub fn command(self, cmd: Command) -> Self {
        let then = self.when(cmd);
        match &then.outcome {
            Outcome::Accepted(_) => then.and(),
            other => panic!("given: {:?} was not accepted: {other:?}", then.cmd),
        }
    }

    /// Folds `event` of `tailnet` as if the log held it (for events no command produces yet,
    /// such as turning tailnet lock on).
    pub fn event(mut self, tailnet: &str, event: impl Into<Event>) -> Self {
        let decision = Decision {
            tailnet: tid(tailnet),
            events: vec![authkeys_events::Proposed {
                event: event.into(),
                expected: Expected::Any,
            }],
        };
        let envs = self
            .envelopes(decision, Actor::system("test"))
            .expect("Expected::Any always holds");
        self.fold(envs);
        self
    }

    /// Folds several events of `tailnet`.
    pub fn events(self, tailnet: &str, events: impl IntoIterator<Item = Event>) -> Self {
        events.into_iter().fold(self, |g, e| g.event(tailnet, e))
    }

    /// The state so far.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Every envelope so far.
    pub fn history(&self) -> &[Envelope] {
        &self.history
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Decides `cmd` at the current time.
    pub fn when(self, cmd: Command) -> Then {
        let decided = decide(&self.state, &cmd, self.now);
        let outcome = match decided {
            Err(r) => Outcome::Rejected(r),
            Ok(decision) => match self.envelopes(decision, actor_of(&cmd)) {
                Ok(envs) => Outcome::Accepted(envs),
                Err(c) => Outcome::Conflict(c),
            },
        };
        Then {
            given: self,
            cmd,
            outcome,
        }
    }

    /// Decides `cmd` at `secs` after [`T0_MS`].
    pub fn when_at(self, secs: i64, cmd: Command) -> Then {
        self.at(secs).when(cmd)
    }

    /// The envelopes the log would write for `decision`, or the stream conflict it would report.
    fn envelopes(&self, decision: Decision, actor: Actor) -> Result<Vec<Envelope>, StreamConflict> {
        let command_id =
            CommandId::parse(format!("c-{}", self.commands + 1)).expect("valid command id");
        let mut seq = self.history.len() as u64;
        let mut prev_hash = self.prev_hash;
        let tailnet = decision.tailnet.clone();
        let planned = decision
            .versioned(|s| self.streams.get(s).copied().unwrap_or(0))
            .map_err(|c| {
                StreamConflict(format!(
                    "{}: expected {:?}, stream is at {}",
                    c.stream, c.expected, c.actual
                ))
            })?;
        let mut out = Vec::with_capacity(planned.len());
        for (event, stream, stream_version) in planned {
            seq += 1;
            let mut env = Envelope {
                seq: Seq::new(seq).expect("from 1"),
                id: EventId::parse(format!("e{seq:032x}")).expect("valid event id"),
                event,
                tailnet: tailnet.clone(),
                stream,
                stream_version,
                time: self.now,
                actor: actor.clone(),
                command_id: command_id.clone(),
                prev_hash,
                hash: Hash::ZERO,
            };
            env.hash = env.compute_hash();
            prev_hash = env.hash;
            out.push(env);
        }
        Ok(out)
    }

    fn fold(&mut self, envs: Vec<Envelope>) {
        self.commands += 1;
        for env in envs {
            assert_eq!(env.seq.get(), self.history.len() as u64 + 1, "gapless");
            assert_eq!(env.prev_hash, self.prev_hash, "chained");
            self.streams.insert(env.stream.clone(), env.stream_version);
            self.prev_hash = env.hash;
            self.state.apply(&env);
            self.history.push(env);
        }
    }
}

/// What the command came to.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Decided; these envelopes would be appended (possibly none).
    Accepted(Vec<Envelope>),
    /// Refused by `decide`.
    Rejected(Rejection),
    /// Decided, but the log would refuse the decision's stream expectations.
    Conflict(StreamConflict),
}

/// The outcome of `when`, to check.
#[derive(Debug, Clone)]
pub struct Then {
    given: Given,
    cmd: Command,
    outcome: Outcome,
}

impl Then {
    /// The command was accepted; `check` sees its events.
    #[track_caller]
    pub fn then_events(self, check: impl FnOnce(&[Event])) -> Self {
        let events = self.events();
        check(&events);
        self
    }

    /// The command was accepted and wrote these event types, in order.
    #[track_caller]
    pub fn then_types(self, expected: &[EventType]) -> Self {
        assert_eq!(
            types(&self.events()),
            expected,
            "event types of {:?}",
            self.cmd
        );
        self
    }

    /// The command was accepted and changed nothing.
    #[track_caller]
    pub fn then_no_events(self) -> Self {
        assert_eq!(
            types(&self.events()),
            [],
            "{:?} should change nothing",
            self.cmd
        );
        self
    }

    /// The command was refused with exactly `expected` (and so wrote nothing).
    #[track_caller]
    pub fn then_rejected(self, expected: Rejection) -> Self {
        match &self.outcome {
            Outcome::Rejected(r) => assert_eq!(r, &expected, "rejection of {:?}", self.cmd),
            other => panic!(
                "{:?} should be rejected with {expected:?}: {other:?}",
                self.cmd
            ),
        }
        self
    }

    /// The command was refused with a rejection of this code (`forbidden`, `not_found`, …).
    #[track_caller]
    pub fn then_rejected_code(self, code: &str) -> Self {
        match &self.outcome {
            Outcome::Rejected(r) => {
                assert_eq!(r.code(), code, "rejection of {:?}: {r:?}", self.cmd)
            }
            other => panic!("{:?} should be rejected ({code}): {other:?}", self.cmd),
        }
        self
    }

    /// The rejection, for comparing two of them.
    #[track_caller]
    pub fn rejection(&self) -> Rejection {
        match &self.outcome {
            Outcome::Rejected(r) => r.clone(),
            other => panic!("{:?} should be rejected: {other:?}", self.cmd),
        }
    }

    /// The outcome.
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    /// The accepted command's events.
    #[track_caller]
    pub fn events(&self) -> Vec<Event> {
        self.envelopes().into_iter().map(|e| e.event).collect()
    }

    /// The accepted command's envelopes.
    #[track_caller]
    pub fn envelopes(&self) -> Vec<Envelope> {
        match &self.outcome {
            Outcome::Accepted(envs) => envs.clone(),
            other => panic!("{:?} should be accepted: {other:?}", self.cmd),
        }
    }

    /// The state after the command (unchanged if it was refused).
    pub fn state(&self) -> State {
        self.clone().and().state
    }

    /// Continues the history after this command (with its events folded if it was accepted).
    pub fn and(self) -> Given {
        let mut g = self.given;
        match self.outcome {
            Outcome::Accepted(envs) => g.fold(envs),
            Outcome::Rejected(_) | Outcome::Conflict(_) => {}
        }
        g
    }
}

/// Key `id` of [`TAILNET`] in `s`.
#[track_caller]
pub fn key_in<'s>(s: &'s State, id: &str) -> &'s authkeys_domain::state::Key {
    s.tailnets
        .get(&t1())
        .and_then(|t| t.keys.get(&kid(id)))
        .unwrap_or_else(|| panic!("key {id} is in the state"))
}

/// Live node `id` of [`TAILNET`] in `s`, if any.
pub fn node_in<'s>(s: &'s State, id: &str) -> Option<&'s authkeys_domain::state::Node> {
    s.tailnets.get(&t1()).and_then(|t| t.nodes.get(&nid(id)))
}

/// Live node `id` of [`TAILNET`] in `s`.
#[track_caller]
pub fn live_node<'s>(s: &'s State, id: &str) -> &'s authkeys_domain::state::Node {
    node_in(s, id).unwrap_or_else(|| panic!("node {id} is live"))
}

// ---------------------------------------------------------------------------------------------
// Picking events
// ---------------------------------------------------------------------------------------------

/// The event types of `events`, in order.
pub fn types(events: &[Event]) -> Vec<EventType> {
    events.iter().map(Event::event_type).collect()
}

/// An event type's data, picked out of an [`Event`].
pub trait Pick: Sized {
    /// `Some` if `e` is of this type.
    fn pick(e: &Event) -> Option<&Self>;
}

macro_rules! pick {
    ($($name:ident),* $(,)?) => {$(
        impl Pick for authkeys_events::$name {
            fn pick(e: &Event) -> Option<&Self> {
                match e {
                    Event::$name(d) => Some(d),
                    _ => None,
                }
            }
        }
    )*};
}

pick!(
    TailnetCreated,
    TailnetSettingsChanged,
    UserAdded,
    UserRoleChanged,
    ApiTokenIssued,
    ApiTokenRevoked,
    KeyGenerated,
    KeyUsed,
    KeyRevoked,
    KeyExpired,
    NodeRegistered,
    NodeReauthenticated,
    NodeAuthorized,
    NodeKeyExpirySet,
    NodeExpired,
    TagsChanged,
    NodeConnected,
    NodeDisconnected,
    NodeSigned,
    NodeDeleted,
    TailnetLockEnabled,
    TrustedLockKeysChanged,
    TailnetLockDisabled,
);

/// The one event of type `T` among `events`.
#[track_caller]
pub fn one<T: Pick>(events: &[Event]) -> &T {
    let found: Vec<&T> = events.iter().filter_map(T::pick).collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one {} among {:?}",
        std::any::type_name::<T>(),
        types(events)
    );
    found[0]
}

/// Every event of type `T` among `events`.
pub fn all<T: Pick>(events: &[Event]) -> Vec<&T> {
    events.iter().filter_map(T::pick).collect()
}
