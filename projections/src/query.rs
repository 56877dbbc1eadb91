//! The views' NATS request/reply subjects (queue group `authkeys-views`), and [`run_views`].
//!
//! | subject | request | reply |
//! |---|---|---|
//! | `authkeys.query.identity.token` | `{tokenId, minSeq?}` | `{ok, token: TokenInfo, seq}` |
//! | `authkeys.query.identity.tailnet` | `{tailnet, minSeq?}` | `{ok, tailnet: TailnetInfo, seq}` |
//! | `authkeys.query.keys.list` | `{tailnet, userId, all?, minSeq?}` | `{ok, keys: [Key], seq}` |
//! | `authkeys.query.keys.get` | `{tailnet, userId, keyId, minSeq?}` | `{ok, key: Key, seq}` |
//! | `authkeys.query.devices.list` | `{tailnet, minSeq?}` | `{ok, devices: [Device], seq}` |
//! | `authkeys.query.devices.get` | `{tailnet, nodeId, minSeq?}` | `{ok, device: Device, seq}` |
//!
//! Errors are `{ok: false, error: {code, message}}` (`authkeys_domain::wire`): `bad_request`
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
use authkeys_domain::wire::{Device, ErrorCode, ErrorReply, Key, True, WireError, decode};
use authkeys_events::{KeyId, NodeId, TailnetId, Timestamp, TokenId, UserId};
use bytes::Bytes;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::ProjectionConfig;
use crate::views::identity::{TailnetInfo, TokenInfo};
use crate::views::{IdentityView, KeysView, MachinesView, View};
use crate::worker::{ViewHandle, ViewWorker};

/// Declares each query subject once: relative to `query_prefix` in [`subject`], and in full
/// under the production prefix in [`subject::full`] (what the HTTP gateway asks).
macro_rules! subjects {
    ($($(#[doc = $doc:literal])* $name:ident = $what:literal;)*) => {
        /// The query subjects, relative to `query_prefix`.
        pub mod subject {
            /// The production `query_prefix`.
            pub const PREFIX: &str = "authkeys.query";
            $($(#[doc = $doc])* pub const $name: &str = $what;)*

            /// The same subjects under [`PREFIX`].
            pub mod full {
                $($(#[doc = $doc])* pub const $name: &str = concat!("authkeys.query.", $what);)*
            }
        }
    };
}

subjects! {
    /// [`super::TokenQuery`] → [`super::TokenAnswer`].
    IDENTITY_TOKEN = "identity.token";
    /// [`super::TailnetQuery`] → [`super::TailnetAnswer`].
    IDENTITY_TAILNET = "identity.tailnet";
    /// [`super::KeysListQuery`] → [`super::KeysAnswer`].
    KEYS_LIST = "keys.list";
    /// [`super::KeysGetQuery`] → [`super::KeyAnswer`].
    KEYS_GET = "keys.get";
    /// [`super::DevicesListQuery`] → [`super::DevicesAnswer`].
    DEVICES_LIST = "devices.list";
    /// [`super::DevicesGetQuery`] → [`super::DeviceAnswer`].
    DEVICES_GET = "devices.get";
}

/// `authkeys.query.identity.token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenQuery {
    /// The token's public id.
    pub token_id: String,
    /// Wait until the view has applied this seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_seq: Option<u64>,
}

/// `authkeys.query.identity.tailnet`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TailnetQuery {
    /// The tailnet id.
    pub tailnet: String,
    /// Wait until the view has applied this seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_seq: Option<u64>,
}

/// `authkeys.query.keys.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeysListQuery {
    /// The tailnet id.
    pub tailnet: String,
    /// The requesting user: only their keys are listed (R09).
    pub user_id: String,
    /// Accepted; changes nothing (see `views::keys`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<bool>,
    /// Wait until the view has applied this seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_seq: Option<u64>,
}

/// `authkeys.query.keys.get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeysGetQuery {
    /// The tailnet id.
    pub tailnet: String,
    /// The requesting user: another user's key is not found (R09).
    pub user_id: String,
    /// The key id.
    pub key_id: String,
    /// Wait until the view has applied this seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_seq: Option<u64>,
}

/// Most devices in one `authkeys.query.devices.list` reply (about 450 bytes each).
pub const DEVICES_PAGE_MAX: usize = 1000;

/// `authkeys.query.devices.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DevicesListQuery {
    /// The tailnet id.
    pub tailnet: String,
    /// Continue after this node id (the previous page's `next`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Most devices in this page: 1 to [`DEVICES_PAGE_MAX`], that if absent. Pages keep replies
    /// under NATS's payload limit (1 MiB) whatever the tailnet's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Wait until the view has applied this seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_seq: Option<u64>,
}

/// `authkeys.query.devices.get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DevicesGetQuery {
    /// The tailnet id.
    pub tailnet: String,
    /// The node id.
    pub node_id: String,
    /// Wait until the view has applied this seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_seq: Option<u64>,
}

/// `{ok: true, token, seq}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenAnswer {
    /// Always `true`.
    pub ok: True,
    /// The token.
    pub token: TokenInfo,
    /// The view's applied seq.
    pub seq: u64,
}

/// `{ok: true, tailnet, seq}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailnetAnswer {
    /// Always `true`.
    pub ok: True,
    /// The tailnet.
    pub tailnet: TailnetInfo,
    /// The view's applied seq.
    pub seq: u64,
}

/// `{ok: true, keys, seq}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysAnswer {
    /// Always `true`.
    pub ok: True,
    /// The user's keys.
    pub keys: Vec<Key>,
    /// The view's applied seq.
    pub seq: u64,
}

/// `{ok: true, key, seq}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyAnswer {
    /// Always `true`.
    pub ok: True,
    /// The key.
    pub key: Key,
    /// The view's applied seq.
    pub seq: u64,
}

/// `{ok: true, devices, seq}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesAnswer {
    /// Always `true`.
    pub ok: True,
    /// A page of the tailnet's devices, in node-id order.
    pub devices: Vec<Device>,
    /// Ask again with `after` = this for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// The view's applied seq.
    pub seq: u64,
}

/// `{ok: true, device, seq}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceAnswer {
    /// Always `true`.
    pub ok: True,
    /// The device.
    pub device: Device,
    /// The view's applied seq.
    pub seq: u64,
}

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
    KeysList,
    KeysGet,
    DevicesList,
    DevicesGet,
}

/// Runs every view's worker and the query responders until `shutdown`; for `authkeys project`
/// and `authkeys serve`. Returns `Err` if a view's file cannot be opened or fails, or the
/// responders cannot subscribe; the other roles are then stopped too.
pub async fn run_views(
    client: Client,
    cfg: ProjectionConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let keys = ViewWorker::<KeysView>::open(client.clone(), &cfg).await?;
    let machines = ViewWorker::<MachinesView>::open(client.clone(), &cfg).await?;
    let identity = ViewWorker::<IdentityView>::open(client.clone(), &cfg).await?;
    let handles = Handles {
        keys: keys.handle(),
        machines: machines.handle(),
        identity: identity.handle(),
    };
    let stop = shutdown.child_token();
    let mut tasks = JoinSet::new();
    tasks.spawn(keys.run(stop.clone()));
    tasks.spawn(machines.run(stop.clone()));
    tasks.spawn(identity.run(stop.clone()));
    tasks.spawn(serve(client, cfg, handles, stop.clone()));
    let mut result = Ok(());
    while let Some(done) = tasks.join_next().await {
        let outcome = done.context("view task panicked").and_then(|r| r);
        if let Err(e) = outcome {
            if result.is_ok() {
                result = Err(e);
            }
            stop.cancel();
        }
    }
    result
}

/// Answers the query subjects from `views` until `shutdown`, then answers what was already
/// taken (bounded by `shutdown_wait_ms_max`).
pub async fn serve(
    client: Client,
    cfg: ProjectionConfig,
    views: Handles,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    cfg.validate()?;
    let kinds = [
        (subject::IDENTITY_TOKEN, Q::Token),
        (subject::IDENTITY_TAILNET, Q::Tailnet),
        (subject::KEYS_LIST, Q::KeysList),
        (subject::KEYS_GET, Q::KeysGet),
        (subject::DEVICES_LIST, Q::DevicesList),
        (subject::DEVICES_GET, Q::DevicesGet),
    ];
    let mut subs = Vec::new();
    for (what, q) in kinds {
        let subject = cfg.query_subject(what);
        let sub = client
            .queue_subscribe(subject.clone(), cfg.queue_group.clone())
            .await
            .with_context(|| format!("subscribe to {subject}"))?;
        subs.push(sub.map(move |m| (q, m)).boxed());
    }
    let mut incoming = futures::stream::select_all(subs);
    let cfg = Arc::new(cfg);
    let permits = Arc::new(Semaphore::new(cfg.requests_in_flight_max));
    let mut tasks = JoinSet::new();
    loop {
        let permit = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            p = Arc::clone(&permits).acquire_owned() => p,
        };
        let Ok(permit) = permit else { break };
        let next = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            m = incoming.next() => m,
        };
        let Some((q, msg)) = next else { break };
        let Some(reply_to) = msg.reply.clone() else {
            continue;
        };
        let (client, cfg, views) = (client.clone(), Arc::clone(&cfg), views.clone());
        tasks.spawn(async move {
            let body = answer(&cfg, &views, q, &msg.payload).await;
            if let Err(e) = client.publish(reply_to, body).await {
                tracing::debug!(error = %e, "could not send a query reply");
            }
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    let wait = Duration::from_millis(cfg.shutdown_wait_ms_max);
    let _ = tokio::time::timeout(wait, async { while tasks.join_next().await.is_some() {} }).await;
    Ok(())
}

/// The reply to one request.
async fn answer(cfg: &ProjectionConfig, v: &Handles, q: Q, payload: &[u8]) -> Bytes {
    let result = match q {
        Q::Token => token(cfg, v, payload).await,
        Q::Tailnet => tailnet(cfg, v, payload).await,
        Q::KeysList => keys_list(cfg, v, payload).await,
        Q::KeysGet => keys_get(cfg, v, payload).await,
        Q::DevicesList => devices_list(cfg, v, payload).await,
        Q::DevicesGet => devices_get(cfg, v, payload).await,
    };
    let bytes = match result {
        Ok(b) => b,
        Err(e) => serde_json::to_vec(&e),
    };
    Bytes::from(bytes.unwrap_or_else(|_| {
        br#"{"ok":false,"error":{"code":"internal","message":"reply did not serialize"}}"#.to_vec()
    }))
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

fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp::from_unix_ms(ms).unwrap_or_else(|_| Timestamp::from_unix_ms(0).expect("epoch"))
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

async fn keys_list(cfg: &ProjectionConfig, v: &Handles, payload: &[u8]) -> Answer {
    let q: KeysListQuery = parse(cfg, payload)?;
    let tailnet = id("tailnet", TailnetId::parse(q.tailnet))?;
    let user = id("userId", UserId::parse(q.user_id))?;
    let seq = ready(cfg, &v.keys, q.min_seq).await?;
    let now = now();
    let keys = v
        .keys
        .read(|view| view.list(tailnet.as_str(), user.as_str(), now, cfg.retention_days));
    Ok(serde_json::to_vec(&KeysAnswer {
        ok: True,
        keys,
        seq,
    }))
}

async fn keys_get(cfg: &ProjectionConfig, v: &Handles, payload: &[u8]) -> Answer {
    let q: KeysGetQuery = parse(cfg, payload)?;
    let tailnet = id("tailnet", TailnetId::parse(q.tailnet))?;
    let user = id("userId", UserId::parse(q.user_id))?;
    let key_id = id("keyId", KeyId::parse(q.key_id))?;
    let seq = ready(cfg, &v.keys, q.min_seq).await?;
    let now = now();
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
    let limit = match q.limit {
        None => DEVICES_PAGE_MAX,
        Some(n) if (1..=DEVICES_PAGE_MAX as u32).contains(&n) => n as usize,
        Some(_) => {
            return Err(ErrorReply::from(WireError {
                field: "limit".to_owned(),
                message: format!("must be from 1 to {DEVICES_PAGE_MAX}"),
            }));
        }
    };
    let seq = ready(cfg, &v.machines, q.min_seq).await?;
    let (devices, next) = v
        .machines
        .read(|view| view.page(tailnet.as_str(), after.as_ref().map(NodeId::as_str), limit));
    Ok(serde_json::to_vec(&DevicesAnswer {
        ok: True,
        devices,
        next,
        seq,
    }))
}

async fn devices_get(cfg: &ProjectionConfig, v: &Handles, payload: &[u8]) -> Answer {
    let q: DevicesGetQuery = parse(cfg, payload)?;
    let tailnet = id("tailnet", TailnetId::parse(q.tailnet))?;
    let node_id = id("nodeId", NodeId::parse(q.node_id))?;
    let seq = ready(cfg, &v.machines, q.min_seq).await?;
    let device = v
        .machines
        .read(|view| view.get(tailnet.as_str(), node_id.as_str()))
        .ok_or_else(|| not_found("device"))?;
    Ok(serde_json::to_vec(&DeviceAnswer {
        ok: True,
        device,
        seq,
    }))
}
