//! `authkeys.cmd.admin.change-settings`: change tailnet settings (Owner and Admin only).

use authkeys_protocol::{self as wire, ChangeSettingsRequest};

use super::{Answer, Ctx, Request};

pub(super) async fn handle(ctx: &Ctx, req: &Request<'_>) -> Answer {
    let dto: ChangeSettingsRequest = super::decode(req)?;
    let parsed = dto.parse()?;
    let tailnet = parsed.tailnet.clone();
    super::append_admin(ctx, super::fingerprint(ctx, req, &dto), parsed).await?;
    let missing = format!("tailnet {tailnet} not found");
    let settings = super::view(ctx, move |s| wire::settings_view(s, &tailnet), &missing).await?;
    super::ok(&wire::SettingsReply {
        ok: wire::True,
        settings,
    })
}
