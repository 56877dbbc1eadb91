//! `authkeys.cmd.admin.set-key-expiry`: disable or re-enable a device's key expiry (R14).

use authkeys_domain::AdminOp;
use authkeys_protocol::SetKeyExpiryRequest;

use super::{Answer, Ctx, Request};

pub(super) async fn handle(ctx: &Ctx, req: &Request<'_>) -> Answer {
    super::device_op(ctx, req, SetKeyExpiryRequest::parse, |op| match op {
        AdminOp::SetKeyExpiry { node_id, .. } => Some(node_id),
        _ => None,
    })
    .await
}
