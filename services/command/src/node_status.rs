//! `authkeys.cmd.node.connected` and `authkeys.cmd.node.disconnected`: a registrar reports a
//! node's connection (R02). A repeated report writes nothing.

use authkeys_domain::Command;
use authkeys_events::{Actor, ActorType};
use authkeys_protocol::{self as wire, NodeStatusRequest, subject};

use super::{Answer, Ctx, REGISTRAR_SCOPE, Request};

pub(super) async fn handle(ctx: &Ctx, req: &Request<'_>) -> Answer {
    let dto: NodeStatusRequest = super::decode(req)?;
    let (request_id, node_key) = dto.parse()?;
    super::record_ids(&request_id, None);
    let command = if req.subject == subject::NODE_CONNECTED {
        Command::NodeConnected {
            node_key: node_key.clone(),
        }
    } else {
        Command::NodeDisconnected {
            node_key: node_key.clone(),
        }
    };
    let actor = Actor {
        actor_type: ActorType::Registrar,
        id: req.registrar.to_owned(),
        login_name: None,
    };
    let fingerprint = super::fingerprint(ctx, req, &dto);
    super::append(
        ctx,
        authkeys_log::Idempotency::Recorded,
        REGISTRAR_SCOPE,
        request_id,
        actor,
        fingerprint,
        command,
    )
    .await
    .map_err(super::refusal)?;
    let dns = ctx.config.dns.clone();
    let device = super::view(
        ctx,
        move |s| wire::device_by_node_key(s, &node_key, &dns),
        "no node has this node key",
    )
    .await?;
    super::ok(&wire::DeviceReply {
        ok: wire::True,
        device,
    })
}
