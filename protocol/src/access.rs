//! Who may say what on NATS (SPEC §6): the roles, the name each one authenticates as, its own
//! inbox prefix, and the least permissions it needs. `authkeys admin nats-config` writes this
//! table as a nats-server `authorization` block; every role connects with its own nkey and
//! inbox prefix ([`crate::nats::Identity`]).
//!
//! Replies travel on the requester's own inbox (`_INBOX_<registrar>` for a registrar,
//! `_AUTHKEYS_INBOX_<role>` for a service role), which no one else may subscribe to; a role that
//! answers requests may publish only to the reply subjects of requests it received
//! (`allow_responses`). So a registrar never sees another registrar's replies, and nobody but the
//! gateway sees a new key's secret.

use std::fmt;

use crate::subject;

/// The longest registrar name.
pub const REGISTRAR_NAME_BYTES_MAX: usize = 64;

/// A registrar's name: `[A-Za-z0-9_-]{1,64}`, one subject token (no `.`, `*`, `>`), so that the
/// subject it publishes on names it and nobody else.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegistrarName(String);

impl RegistrarName {
    /// Validates a registrar name.
    pub fn parse(name: &str) -> Result<Self, String> {
        let ok = !name.is_empty()
            && name.len() <= REGISTRAR_NAME_BYTES_MAX
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(format!(
                "registrar name {name:?}: must be 1 to {REGISTRAR_NAME_BYTES_MAX} of A-Z a-z 0-9 _ -"
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RegistrarName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A NATS identity of the system.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The command service: the log, the relay, log reads, status.
    Command,
    /// The projection workers and their queries.
    Project,
    /// The expiry timers.
    Timers,
    /// The HTTP gateway.
    Api,
    /// The webhook deliveries (R23): reads the stream, answers the gateway's webhook subjects,
    /// and alone holds the key the endpoints' secrets derive from.
    Webhooks,
    /// An operator's `authkeys lock …` (R04): sends tailnet lock requests, each of which
    /// carries the acting user's API token, checked by the command service.
    Operator,
    /// An auditor: reads the log and its checkpoints, nothing else.
    Auditor,
    /// A registrar forwarding registrations and liveness reports.
    Registrar(RegistrarName),
}

/// What a role may publish and subscribe to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    /// Subjects it may publish to.
    pub publish: Vec<String>,
    /// Subjects it may subscribe to.
    pub subscribe: Vec<String>,
    /// Whether it may answer the requests it receives (publish once to their reply subject).
    pub allow_responses: bool,
}

impl Role {
    /// The service roles (every role but auditors and registrars), in start order.
    pub const SERVICES: [Role; 5] = [
        Role::Command,
        Role::Project,
        Role::Timers,
        Role::Webhooks,
        Role::Api,
    ];

    /// Its name: the file its seed is kept in (`<name>.nk`) and the user it shows as.
    pub fn name(&self) -> String {
        match self {
            Role::Command => "command".into(),
            Role::Project => "project".into(),
            Role::Timers => "timers".into(),
            Role::Api => "api".into(),
            Role::Webhooks => "webhooks".into(),
            Role::Operator => "operator".into(),
            Role::Auditor => "auditor".into(),
            Role::Registrar(n) => format!("registrar-{n}"),
        }
    }

    /// The prefix of its reply inboxes; only it may subscribe below it.
    pub fn inbox_prefix(&self) -> String {
        match self {
            Role::Registrar(n) => subject::registrar_inbox(n),
            other => format!("_AUTHKEYS_INBOX_{}", other.name()),
        }
    }

    /// The least it needs (SPEC §6).
    pub fn permissions(&self) -> Permissions {
        let inbox = format!("{}.>", self.inbox_prefix());
        let stream = subject::EVENTS_STREAM;
        // Reading the stream through a durable pull consumer: the stream's info, the
        // consumer's lifecycle, pulling and acknowledging.
        let consume = [
            format!("$JS.API.STREAM.INFO.{stream}"),
            format!("$JS.API.CONSUMER.CREATE.{stream}.>"),
            format!("$JS.API.CONSUMER.DURABLE.CREATE.{stream}.>"),
            format!("$JS.API.CONSUMER.DELETE.{stream}.>"),
            format!("$JS.API.CONSUMER.INFO.{stream}.>"),
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.>"),
            format!("$JS.ACK.{stream}.>"),
            "$JS.FC.>".to_owned(),
        ];
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let (publish, subscribe, allow_responses) = match self {
            Role::Command => {
                // The relay's stream, a standby's consumer of it, and the leader lease.
                let lease = format!("KV_{}", subject::LEADER_BUCKET);
                let mut publish = vec![
                    format!("{}.>", subject::EVENTS_PREFIX),
                    "$JS.API.INFO".to_owned(),
                    format!("$JS.API.STREAM.CREATE.{stream}"),
                    format!("$JS.API.STREAM.UPDATE.{stream}"),
                    format!("$JS.API.STREAM.MSG.GET.{stream}"),
                    format!("$JS.API.DIRECT.GET.{stream}"),
                    format!("$JS.API.STREAM.CREATE.{lease}"),
                    format!("$JS.API.STREAM.INFO.{lease}"),
                    format!("$JS.API.STREAM.MSG.GET.{lease}"),
                    format!("$JS.API.DIRECT.GET.{lease}.>"),
                    format!("$KV.{}.>", subject::LEADER_BUCKET),
                    subject::LOG_CHECKPOINTS.to_owned(),
                    // A standby's ordered consumer is created unnamed.
                    format!("$JS.API.CONSUMER.CREATE.{stream}"),
                ];
                publish.extend(consume.iter().cloned());
                publish.sort();
                publish.dedup();
                let subscribe = vec![
                    format!("{}.>", subject::COMMAND_PREFIX),
                    subject::LOG_READ.to_owned(),
                    subject::LOG_CHECKPOINTS.to_owned(),
                    subject::STATUS.to_owned(),
                ];
                (publish, subscribe, true)
            }
            Role::Project => {
                let mut publish = consume.to_vec();
                publish.push(subject::LOG_READ.to_owned());
                let subscribe = vec![format!("{}.>", subject::QUERY_PREFIX)];
                (publish, subscribe, true)
            }
            Role::Timers => {
                let mut publish = consume.to_vec();
                publish.extend(owned(&[subject::LOG_READ, subject::TIMER]));
                (publish, vec![subject::TIMERS_STATUS.to_owned()], true)
            }
            Role::Webhooks => {
                let mut publish = consume.to_vec();
                publish.push(subject::LOG_READ.to_owned());
                let subscribe = vec![format!("{}.>", subject::WEBHOOKS_PREFIX)];
                (publish, subscribe, true)
            }
            Role::Api => {
                let publish = vec![
                    format!("{}.>", subject::ADMIN_PREFIX),
                    format!("{}.>", subject::QUERY_PREFIX),
                    format!("{}.>", subject::WEBHOOKS_PREFIX),
                    subject::LOG_READ.to_owned(),
                    subject::STATUS.to_owned(),
                    subject::TIMERS_STATUS.to_owned(),
                ];
                // The admin console's live updates (`/admin/events`): a core subscription to
                // the events the relay publishes; it reads them, never publishes one.
                let subscribe = vec![format!("{}.>", subject::EVENTS_PREFIX)];
                (publish, subscribe, false)
            }
            Role::Operator => (
                vec![format!("{}.>", subject::LOCK_PREFIX)],
                Vec::new(),
                false,
            ),
            Role::Auditor => (
                owned(&[subject::LOG_READ, subject::LOG_CHECKPOINTS]),
                Vec::new(),
                false,
            ),
            Role::Registrar(n) => (
                vec![
                    subject::register_of(n),
                    subject::node_connected_of(n),
                    subject::node_disconnected_of(n),
                ],
                Vec::new(),
                false,
            ),
        };
        let mut subscribe = subscribe;
        subscribe.push(inbox);
        Permissions {
            publish,
            subscribe,
            allow_responses,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrar_names_are_one_token_of_a_small_alphabet() {
        for ok in ["a", "ci-runner_7", &"x".repeat(64)] {
            assert!(RegistrarName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a.b", "a*", ">", "a b", "é", &"x".repeat(65)] {
            assert!(RegistrarName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_command_role_publishes_events_and_only_the_gateway_admin_commands() {
        let reg = Role::Registrar(RegistrarName::parse("r1").expect("valid"));
        let all = [
            Role::Command,
            Role::Project,
            Role::Timers,
            Role::Webhooks,
            Role::Api,
            Role::Operator,
            Role::Auditor,
            reg.clone(),
        ];
        let who = |subject: &str| -> Vec<String> {
            all.iter()
                .filter(|r| {
                    r.permissions()
                        .publish
                        .iter()
                        .any(|p| p.starts_with(subject))
                })
                .map(Role::name)
                .collect()
        };
        assert_eq!(who(subject::EVENTS_PREFIX), ["command"]);
        assert_eq!(who(subject::ADMIN_PREFIX), ["api"]);
        assert_eq!(who(subject::TIMER), ["timers"]);
        assert_eq!(who(subject::LOCK_PREFIX), ["operator"]);
        assert_eq!(
            who(subject::WEBHOOKS_PREFIX),
            ["api"],
            "only the gateway asks for secrets"
        );
        assert_eq!(who(subject::REGISTER), ["registrar-r1"]);
        assert_eq!(
            reg.permissions().subscribe,
            [format!("{}.>", reg.inbox_prefix())],
            "a registrar reads its own inbox only"
        );
        // Every inbox prefix is distinct, and no service role's can be a registrar's.
        let prefixes: std::collections::BTreeSet<_> = all.iter().map(Role::inbox_prefix).collect();
        assert_eq!(prefixes.len(), all.len());
    }
}
