//! The views' NATS request/reply subjects (queue group `authkeys-views`), and [`Views`], the
//! projection role: every view with its worker, and the query responder.
//!
//! | subject | request | reply |
//! |---|---|---|
//! | `authkeys.query.identity.token` | `{tokenId, minSeq?}` | `{ok, token: TokenInfo, seq}` |
//! | `authkeys.query.identity.tailnet` | `{tailnet, minSeq?}` | `{ok, tailnet: TailnetInfo, seq}` |
//! | `authkeys.query.identity.clients` | `{tailnet?, clientId?, createdBy?, minSeq?}` | `{ok, clients: [ClientInfo], seq}` |
//! | `authkeys.query.identity.tokens` | `{tailnet, userId, minSeq?}` | `{ok, tokens: [TokenInfo], seq}` |
//! | `authkeys.query.keys.list` | `{tailnet, userId, all?, minSeq?}` | `{ok, keys: [Key], seq}` |
//! | `authkeys.query.keys.get` | `{tailnet, userId, keyId, minSeq?}` | `{ok, key: Key, seq}` |
//! | `authkeys.query.devices.list` | `{tailnet, minSeq?}` | `{ok, devices: [Device], seq}` |
//! | `authkeys.query.devices.get` | `{tailnet, nodeId, minSeq?}` | `{ok, device: Device, seq}` |
//! | `authkeys.query.users.list` | `{tailnet, after?, limit?, minSeq?}` | `{ok, users: [User], next?, seq}` |
//! | `authkeys.query.users.get` | `{tailnet, userId, minSeq?}` | `{ok, user: User, seq}` |
//!
//! Errors are `{ok: false, error: {code, message}}` (`authkeys_protocol`): `bad_request`
//! naming the field, `not_found` (for keys: unknown and another user's key alike, R09),
//! `unavailable` when the view has not reached `minSeq` within `read_wait_ms_max`. `seq` is the
//! view's applied seq when it was read: the answer includes every event up to it.
//!
//! Requests are answered on their own tasks, at most `requests_in_flight_max` at once; nothing a
//! requester sends can panic the responder.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::Client;
use authkeys_events::{Clock, KeyId, NodeId, TailnetId, TokenId, UserId};
use authkeys_protocol::nats::{Responder, ResponderLimits};
use authkeys_protocol::query::{
    ClientsAnswer, ClientsQuery, DEVICES_PAGE_MAX, DeviceAnswer, DevicesGetQuery, DevicesListQuery,
    KeyAnswer, KeysAnswer, KeysGetQuery, KeysListQuery, TailnetAnswer, TailnetQuery, TokenAnswer,
    TokenQuery, TokensAnswer, TokensListQuery, USERS_PAGE_MAX, UserAnswer, UsersAnswer,
    UsersGetQuery, UsersListQuery,
};
use authkeys_protocol::subject::query as subject;
use authkeys_protocol::{ErrorCode, ErrorReply, True, WireError, decode, reply_bytes};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::ProjectionConfig;
use crate::views::{IdentityView, KeysView, MachinesView, View};
use crate::worker::{ViewHandle, ViewWorker};

/// The three views, as the responders read them.
#[derive(Debug, Clone)]
pub struct Handles {
    /// The keys page view.
    pub keys: ViewHandle<KeysView>,
    /// The machines view.
    pub machines: ViewHandle<MachinesView>,
    /// The identity view.
    pub identity: ViewHandle<IdentityView>,
}

#[derive(Debug, Clone, Copy)]
enum Q {
    Token,
    Tailnet,
    Tokens,
    Clients,
    KeysList,
    KeysGet,
    DevicesList,
    DevicesGet,
    UsersList,
    UsersGet,
}

impl Q {
    fn of(relative: &str) -> Option<Self> {
        Some(match relative {
            subject::IDENTITY_TOKEN => Q::Token,
            subject::IDENTITY_TAILNET => Q::Tailnet,
            subject::IDENTITY_TOKENS => Q::Tokens,
            subject::IDENTITY_CLIENTS => Q::Clients,
            subject::KEYS_LIST => Q::KeysList,
            subject::KEYS_GET => Q::KeysGet,
            subject::DEVICES_LIST => Q::DevicesList,
            subject::DEVICES_GET => Q::DevicesGet,
            subject::USERS_LIST => Q::UsersList,
            subject::USERS_GET => Q::UsersGet,
            _ => return None,
        })
    }
}

/// The projection role (`authkeys project`, and inside `authkeys serve`): every view opened with
/// its worker; [`Views::run`] runs them and answers the queries.
#[derive(Debug)]
pub struct Views {
    keys: ViewWorker<KeysView>,
    machines: ViewWorker<MachinesView>,
    identity: ViewWorker<IdentityView>,
    client: Client,
    cfg: ProjectionConfig,
    clock: Clock,
}

impl Views {
    /// Opens every view's file; `clock` decides keys' `invalid` and the keys page's retention.
    pub async fn build(
        client: Client,
        cfg: ProjectionConfig,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        cfg.validate()?;
        let keys = ViewWorker::<KeysView>::open(client.clone(), &cfg).await?;
        let machines = ViewWorker::<MachinesView>::open(client.clone(), &cfg).await?;
        let identity = ViewWorker::<IdentityView>::open(client.clone(), &cfg).await?;
        Ok(Self {
            keys,
            machines,
            identity,
            client,
            cfg,
            clock,
        })
    }

    /// Runs every worker and answers queries until `shutdown`. Returns `Err` if a view fails or
    /// the queries cannot be subscribed; the other tasks are then stopped too.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let handles = Handles {
            keys: self.keys.handle(),
            machines: self.machines.handle(),
            identity: self.identity.handle(),
        };
        let stop = shutdown.child_token();
        let mut tasks = JoinSet::new();
        tasks.spawn(self.keys.run(stop.clone()));
        tasks.spawn(self.machines.run(stop.clone()));
        tasks.spawn(self.identity.run(stop.clone()));
        tasks.spawn(serve(
            self.client,
            self.cfg,
            handles,
            self.clock,
            stop.clone(),
        ));
        crate::worker::until_first_error(tasks, &stop, "views").await
    }
}

/// Answers the query subjects from `views` until `shutdown`, then by the responder's drain rule.
/// Returns `Err` only if it cannot subscribe.
pub async fn serve(
    client: Client,
    cfg: ProjectionConfig,
    views: Handles,
    clock: Clock,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    cfg.validate()?;
    let limits = ResponderLimits {
        shutdown_wait_ms_max: cfg.shutdown_wait_ms_max,
        ..ResponderLimits::concurrent(cfg.requests_in_flight_max)
    };
    let subjects: Vec<String> = subject::ALL
        .iter()
        .map(|what| cfg.query_subject(what))
        .collect();
    let responder = Responder::subscribe(&client, subjects, &cfg.queue_group, limits)
        .await
        .context("subscribe to the view queries")?;
    let prefix_len = cfg.query_prefix.len() + 1;
    let ctx = Arc::new((cfg, views, clock));
    responder
        .serve(shutdown, move |msg| {
            let ctx = Arc::clone(&ctx);
            async move {
                let (cfg, views, clock) = &*ctx;
                let q = msg.subject.get(prefix_len..).and_then(Q::of)?;
                Some(answer(cfg, views, clock, q, &msg.payload).await)
            }
        })
        .await;
    Ok(())
}

/// The reply to one request.
async fn answer(cfg: &ProjectionConfig, v: &Handles, clock: &Clock, q: Q, payload: &[u8]) -> Bytes {
    let result = match q {
        Q::Token => token(cfg, v, payload).await,
        Q::Tailnet => tailnet(cfg, v, payload).await,
        Q::Tokens => tokens(cfg, v, clock, payload).await,
        Q::Clients => clients(cfg, v, payload).await,
        Q::KeysList => keys_list(cfg, v, clock, payload).await,
        Q::KeysGet => keys_get(cfg, v, clock, payload).await,
        Q::DevicesList => devices_list(cfg, v, payload).await,
        Q::DevicesGet => devices_get(cfg, v, payload).await,
        Q::UsersList => users_list(cfg, v, payload).await,
        Q::UsersGet => users_get(cfg, v, payload).await,
    };
    Bytes::from(match result {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => reply_bytes(&ErrorReply::new(
            ErrorCode::Internal,
            "reply did not serialize",
        )),
        Err(e) => reply_bytes(&e),
    })
}

type Answer = Result<serde_json::Result<Vec<u8>>, ErrorReply>;

fn parse<T: DeserializeOwned>(cfg: &ProjectionConfig, payload: &[u8]) -> Result<T, ErrorReply> {
    if payload.len() > cfg.request_bytes_max {
        return Err(ErrorReply::new(
            ErrorCode::BadRequest,
            format!("request: larger than {} bytes", cfg.request_bytes_max),
        ));
    }
    decode(payload).map_err(ErrorReply::from)
}

fn id<T>(field: &str, r: Result<T, authkeys_events::InvalidId>) -> Result<T, ErrorReply> {
    r.map_err(|e| {
        ErrorReply::from(WireError {
            field: field.to_owned(),
            message: e.why,
        })
    })
}

/// Waits for `min_seq` (bounded); the seq to report.
async fn ready<V: View>(
    cfg: &ProjectionConfig,
    view: &ViewHandle<V>,
    min_seq: Option<u64>,
) -> Result<u64, ErrorReply> {
    let Some(min) = min_seq else {
        return Ok(view.applied_seq());
    };
    view.wait_for(min, Duration::from_millis(cfg.read_wait_ms_max))
        .await
        .ok_or_else(|| {
            ErrorReply::new(
                ErrorCode::Unavailable,
                format!(
                    "the {} view has not reached seq {min} within {} ms (at {}); retry",
                    V::NAME,
                    cfg.read_wait_ms_max,
                    view.applied_seq()
                ),
            )
        })
}

fn not_found(what: &str) -> ErrorReply {
    ErrorReply::new(ErrorCode::NotFound, format!("{what} not found"))
}

async fn token(cfg: &ProjectionConfig, v: &Handles, payload: &[u8]) -> Answer {
    let q: TokenQuery = parse(cfg, payload)?;
    let token_id = id("tokenId", TokenId::parse(q.token_id))?;
    let seq = ready(cfg, &v.identity, q.min_seq).await?;
    let token = v
        .identity
        .read(|view| view.token(token_id.as_str()))
        .ok_or_else(|| not_found("token"))?;
    Ok(serde_json::to_vec(&TokenAnswer {
        ok: True,
        token,
        seq,
    }))
}

async fn tailnet(cfg: &ProjectionConfig, v: &Handles, payload: &[u8]) -> Answer {
    let q: TailnetQuery = parse(cfg, payload)?;
    let tailnet = id("tailnet", TailnetId::parse(q.tailnet))?;
    let seq = ready(cfg, &v.identity, q.min_seq).await?;
    let tailnet = v
        .identity
        .read(|view| view.tailnet(tailnet.as_str()))
        .ok_or_else(|| not_found("tailnet"))?;
    Ok(serde_json::to_vec(&TailnetAnswer {
        ok: True,
        tailnet,
        seq,
    }))
}

async fn keys_list(cfg: &ProjectionConfig, v: &Handles, clock: &Clock, payload: &[u8]) -> Answer {
    let q: KeysListQuery = parse(cfg, payload)?;
    let tailnet = id("tailnet", TailnetId::parse(q.tailnet))?;
    let user = id("userId", UserId::parse(q.user_id))?;
    let seq = ready(cfg, &v.keys, q.min_seq).await?;
    let now = clock.now();
    let keys = v
        .keys
        .read(|view| view.list(tailnet.as_str(), user.as_str(), now, cfg.retention_days));
    Ok(serde_json::to_vec(&KeysAnswer {
        ok: True,
        keys,
        seq,
    }))
}

async fn keys_get(cfg: &ProjectionConfig, v: &Handles, clock: &Clock, payload: &[u8]) -> Answer {
    let q: KeysGetQuery = parse(cfg, payload)?;
    let tailnet = id("tailnet", TailnetId::parse(q.tailnet))?;
    let user = id("userId", UserId::parse(q.user_id))?;
    let key_id = id("keyId", KeyId::parse(q.key_id))?;
    let seq = ready(cfg, &v.keys, q.min_seq).await?;
    let now = clock.now();
    let key = v
        .keys
        .read(|view| {
            view.get(
                tailnet.as_str(),
                user.as_str(),
                key_id.as_str(),
                now,
                cfg.retention_days,
            )
        })
        // R09: one answer for unknown, another user's, and past retention.
        .ok_or_else(|| not_found("key"))?;
    Ok(serde_json::to_vec(&KeyAnswer { ok: True, key, seq }))
}

async fn devices_list(cfg: &ProjectionConfig, v: &Handles, payload: &[u8]) -> Answer {
    let q: DevicesListQuery = parse(cfg, payload)?;
    let tailnet = id("tailnet", TailnetId::parse(q.tailnet))?;
    let after = q.after.map(|a| id("after", NodeId::parse(a))).transpose()?;
    let limit = page_limit(q.limit, DEVICES_PAGE_MAX)?;
    let seq = ready(cfg, &v.machines, q.min_seq).await?;
    Ok(v.machines.read(|view| {
        devices_answer(
            view,
            tailnet.as_str(),
            after.as_ref().map(NodeId::as_str),
            limit,
            &cfg.dns,
            seq,
        )
    }))
}

/// A [`authkeys_protocol::query::DevicesAnswer`] written by hand around the devices' JSON, which the view keeps between
/// asks ([`MachinesView::page_json`]): the bytes `serde_json` makes of the answer.
fn devices_answer(
    view: &MachinesView,
    tailnet: &str,
    after: Option<&str>,
    limit: usize,
    dns: &authkeys_protocol::MagicDns,
    seq: u64,
) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::from(&b"{\"ok\":true,\"devices\":["[..]);
    let (_, next) = view.page_json(tailnet, after, limit, dns, &mut out)?;
    out.push(b']');
    if let Some(next) = next {
        out.extend_from_slice(b",\"next\":");
        serde_json::to_writer(&mut out, &next)?;
    }
    out.extend_from_slice(b",\"seq\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    out.push(b'}');
    Ok(out)
}

async fn devices_get(cfg: &ProjectionConfig, v: &Handles, payload: &[u8]) -> Answer {
    let q: DevicesGetQuery = parse(cfg, payload)?;
    let tailnet = id("tailnet", TailnetId::parse(q.tailnet))?;
    let node_id = id("nodeId", NodeId::parse(q.node_id))?;
    let seq = ready(cfg, &v.machines, q.min_seq).await?;
    let device = v
        .machines
        .read(|view| view.get(tailnet.as_str(), node_id.as_str(), &cfg.dns))
        .ok_or_else(|| not_found("device"))?;
    Ok(serde_json::to_vec(&DeviceAnswer {
        ok: True,
        device,
        seq,
    }))
}

/// A page's `limit`: 1 to `max`, `max` if absent.
fn page_limit(limit: Option<u32>, max: usize) -> Result<usize, ErrorReply> {
    match limit {
        None => Ok(max),
        Some(n) if (1..=max).contains(&(n as usize)) => Ok(n as usize),
        Some(_) => Err(ErrorReply::from(WireError {
            field: "limit".to_owned(),
            message: format!("must be from 1 to {max}"),
        })),
    }
}

/// Waits for both views a user answer joins (identity: the users; machines: their devices).
async fn users_ready(
    cfg: &ProjectionConfig,
    v: &Handles,
    min_seq: Option<u64>,
) -> Result<u64, ErrorReply> {
    let identity = ready(cfg, &v.identity, min_seq).await?;
    let machines = ready(cfg, &v.machines, min_seq).await?;
    Ok(identity.min(machines))
}

async fn users_list(cfg: &ProjectionConfig, v: &Handles, payload: &[u8]) -> Answer {
    let q: UsersListQuery = parse(cfg, payload)?;
    let tailnet = id("tailnet", TailnetId::parse(q.tailnet))?;
    let after = q.after.map(|a| id("after", UserId::parse(a))).transpose()?;
    let limit = page_limit(q.limit, USERS_PAGE_MAX)?;
    let seq = users_ready(cfg, v, q.min_seq).await?;
    let devices = v.machines.read(|m| m.user_devices(tailnet.as_str()));
    let (users, next) = v.identity.read(|view| {
        view.users_page(
            tailnet.as_str(),
            after.as_ref().map(UserId::as_str),
            limit,
            &devices,
        )
    });
    Ok(serde_json::to_vec(&UsersAnswer {
        ok: True,
        users,
        next,
        seq,
    }))
}

async fn users_get(cfg: &ProjectionConfig, v: &Handles, payload: &[u8]) -> Answer {
    let q: UsersGetQuery = parse(cfg, payload)?;
    let tailnet = id("tailnet", TailnetId::parse(q.tailnet))?;
    let user_id = id("userId", UserId::parse(q.user_id))?;
    let seq = users_ready(cfg, v, q.min_seq).await?;
    let devices = v.machines.read(|m| m.user_devices(tailnet.as_str()));
    let user = v
        .identity
        .read(|view| view.user_object(tailnet.as_str(), user_id.as_str(), &devices))
        .ok_or_else(|| not_found("user"))?;
    Ok(serde_json::to_vec(&UserAnswer {
        ok: True,
        user,
        seq,
    }))
}

/// A user's tokens; those that stopped working more than the retention period ago are left out,
/// as revoked and expired keys leave the keys page (R12).
async fn tokens(cfg: &ProjectionConfig, v: &Handles, clock: &Clock, payload: &[u8]) -> Answer {
    let q: TokensListQuery = parse(cfg, payload)?;
    let tailnet = id("tailnet", TailnetId::parse(q.tailnet))?;
    let user_id = id("userId", UserId::parse(q.user_id))?;
    let seq = ready(cfg, &v.identity, q.min_seq).await?;
    let retention_ms = i64::from(cfg.retention_days) * 86_400_000;
    let cutoff = clock.now().unix_ms().saturating_sub(retention_ms);
    let mut tokens = v
        .identity
        .read(|view| view.tokens_of(tailnet.as_str(), user_id.as_str()));
    tokens.retain(|t| {
        let stopped = t.revoked_at.map_or(t.expires, |r| r.min(t.expires));
        stopped.unix_ms() >= cutoff
    });
    Ok(serde_json::to_vec(&TokensAnswer {
        ok: True,
        tokens,
        seq,
    }))
}

async fn clients(cfg: &ProjectionConfig, v: &Handles, payload: &[u8]) -> Answer {
    let q: ClientsQuery = parse(cfg, payload)?;
    let tailnet = q
        .tailnet
        .map(|t| id("tailnet", TailnetId::parse(t)))
        .transpose()?;
    let client_id = q
        .client_id
        .map(|c| id("clientId", KeyId::parse(c)))
        .transpose()?;
    let created_by = q
        .created_by
        .map(|u| id("createdBy", UserId::parse(u)))
        .transpose()?;
    let seq = ready(cfg, &v.identity, q.min_seq).await?;
    let clients = v.identity.read(|view| {
        view.clients(
            tailnet.as_ref().map(TailnetId::as_str),
            client_id.as_ref().map(KeyId::as_str),
            created_by.as_ref().map(UserId::as_str),
        )
    });
    Ok(serde_json::to_vec(&ClientsAnswer {
        ok: True,
        clients,
        seq,
    }))
}

#[cfg(test)]
mod tests {
    use authkeys_events::{Event, LoginName, Role, TailnetLockDisabled, UserAdded};
    use authkeys_protocol::MagicDns;
    use authkeys_protocol::query::DevicesAnswer;

    use super::*;
    use crate::fixtures;
    use crate::views::test_support::Given;

    /// Walks every page of `limit` devices, comparing the hand-written answer with `serde_json`
    /// over the typed page.
    fn pages_match(view: &MachinesView, dns: &MagicDns, limit: usize, seq: u64) {
        let mut after: Option<String> = None;
        loop {
            let (devices, next) = view.page("T1", after.as_deref(), limit, dns);
            let want = serde_json::to_vec(&DevicesAnswer {
                ok: True,
                devices,
                next: next.clone(),
                seq,
            })
            .expect("encodes");
            let got =
                devices_answer(view, "T1", after.as_deref(), limit, dns, seq).expect("encodes");
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "seq {seq}, {limit} a page, after {after:?}"
            );
            match next {
                Some(n) => after = Some(n),
                None => return,
            }
        }
    }

    #[test]
    fn device_pages_are_the_bytes_serde_makes_while_devices_change() {
        // Proves: the devices.list answer written around the machines view's kept JSON is byte
        // for byte what serde_json makes of the typed page, after every event of the fixture
        // mix (registrations, tags, connections, deletions), a user's new login, the lock's
        // release, and with another DNS suffix; each page is asked before the next event, so a
        // device whose kept JSON outlived its change would differ.
        let mut g = Given::new("T1");
        let mut view = MachinesView::default();
        let dns = MagicDns::default();
        let other = MagicDns::new("corp.example").expect("valid suffix");
        let mut events: Vec<Event> = (0..160).flat_map(fixtures::step).collect();
        events.push(
            UserAdded {
                user_id: fixtures::user(0),
                login_name: LoginName::parse("renamed@example.com").expect("valid"),
                role: Role::Owner,
            }
            .into(),
        );
        events.push(TailnetLockDisabled {}.into());
        events.extend((160..200).flat_map(fixtures::step));
        for (i, event) in events.into_iter().enumerate() {
            view.apply(&g.env(i as i64, event));
            for limit in [1, 7, DEVICES_PAGE_MAX] {
                pages_match(&view, &dns, limit, i as u64);
            }
            if i % 50 == 0 {
                pages_match(&view, &other, 7, i as u64);
            }
        }
        assert!(view.len() > 10, "{} devices", view.len());
    }
}
