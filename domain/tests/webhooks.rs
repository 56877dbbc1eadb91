//! R23 webhook endpoints as given/when/then scenarios against the real `decide` and
//! `State::apply`: who manages them, their lifecycle, and that no event holds a secret.

mod support;

use authkeys_domain::AdminOp;
use authkeys_domain::webhook::WebhookOp;
use authkeys_events::{
    EndpointId, EndpointUrl, Event, EventType, Hash, ProviderType, Role, Scope, WebhookType,
};
use support::*;

use EventType as E;

fn eid(s: &str) -> EndpointId {
    EndpointId::parse(s).expect("valid endpoint id")
}

fn create(id: &str, types: &[WebhookType]) -> AdminOp {
    AdminOp::Webhook(WebhookOp::Create {
        endpoint_id: eid(id),
        endpoint_url: EndpointUrl::parse("https://hooks.example.com/a").expect("valid"),
        provider_type: ProviderType::Generic,
        subscriptions: types.to_vec(),
    })
}

fn op(o: WebhookOp) -> AdminOp {
    AdminOp::Webhook(o)
}

#[test]
fn r23_managers_create_update_rotate_and_delete_webhooks() {
    // An Admin creates an endpoint (its subscriptions sorted and deduplicated, its creator
    // recorded), changes them, rotates twice (rotation 1 then 2), deletes it; then every op on
    // it is not_found, and its id is never reused.
    given()
        .tailnet()
        .user(ALICE, Role::NetworkAdmin)
        .when(admin(
            ALICE,
            create(
                "wA",
                &[
                    WebhookType::UserCreated,
                    WebhookType::NodeCreated,
                    WebhookType::UserCreated,
                ],
            ),
        ))
        .then_events(|evs| match &evs[0] {
            Event::WebhookCreated(e) => {
                assert_eq!(
                    e.subscriptions,
                    [WebhookType::NodeCreated, WebhookType::UserCreated]
                );
                assert_eq!(e.creator.as_str(), ALICE);
            }
            other => panic!("{other:?}"),
        })
        .and()
        .when(admin(
            ALICE,
            op(WebhookOp::Update {
                endpoint_id: eid("wA"),
                subscriptions: vec![WebhookType::KeyCreated],
            }),
        ))
        .then_types(&[E::WebhookUpdated])
        .and()
        .when(admin(
            ALICE,
            op(WebhookOp::Update {
                endpoint_id: eid("wA"),
                subscriptions: vec![WebhookType::KeyCreated],
            }),
        ))
        .then_types(&[])
        .and()
        .when(admin(
            ALICE,
            op(WebhookOp::Rotate {
                endpoint_id: eid("wA"),
            }),
        ))
        .then_events(|evs| {
            assert!(matches!(&evs[0], Event::WebhookSecretRotated(e) if e.rotation == 1));
        })
        .and()
        .when(admin(
            ALICE,
            op(WebhookOp::Rotate {
                endpoint_id: eid("wA"),
            }),
        ))
        .then_events(|evs| {
            assert!(matches!(&evs[0], Event::WebhookSecretRotated(e) if e.rotation == 2));
        })
        .and()
        .when(admin(
            ALICE,
            op(WebhookOp::Delete {
                endpoint_id: eid("wA"),
            }),
        ))
        .then_types(&[E::WebhookDeleted])
        .and()
        .when(admin(
            ALICE,
            op(WebhookOp::Rotate {
                endpoint_id: eid("wA"),
            }),
        ))
        .then_rejected_code("not_found")
        .and()
        .when(admin(ALICE, create("wA", &[])))
        .then_rejected_code("conflict");
}

#[test]
fn r23_members_auditors_and_billing_admins_may_not_manage_webhooks() {
    // R21's roles: only Owner, Admin, IT admin and Network admin manage webhooks.
    for role in [Role::Member, Role::Auditor, Role::BillingAdmin] {
        given()
            .tailnet()
            .user(ALICE, role)
            .when(admin(ALICE, create("wA", &[WebhookType::NodeCreated])))
            .then_rejected_code("forbidden");
    }
    for role in [Role::Admin, Role::ItAdmin, Role::NetworkAdmin] {
        given()
            .tailnet()
            .user(ALICE, role)
            .when(admin(ALICE, create("wA", &[WebhookType::NodeCreated])))
            .then_types(&[E::WebhookCreated]);
    }
}

#[test]
fn r23_an_oauth_client_needs_the_webhooks_scope() {
    // A client holding `webhooks` creates an endpoint; one holding only `devices:core` is
    // refused.
    let client = |id: &str, scopes: &[Scope]| AdminOp::CreateClient {
        client_id: kid(id),
        principal: uid(&format!("u{id}")),
        secret_hash: Some(Hash([7; 32])),
        federated: None,
        scopes: scopes.to_vec(),
        tags: tags(&[]),
        description: authkeys_events::Description::parse("ci").expect("valid"),
    };
    given()
        .tailnet()
        .user(ALICE, Role::Admin)
        .command(admin(ALICE, client("kHooks", &[Scope::Webhooks])))
        .command(admin(ALICE, client("kDev", &[Scope::DevicesCore])))
        .when(admin("ukHooks", create("wA", &[WebhookType::NodeCreated])))
        .then_types(&[E::WebhookCreated])
        .and()
        .when(admin("ukDev", create("wB", &[WebhookType::NodeCreated])))
        .then_rejected_code("forbidden");
}

#[test]
fn r23_an_endpoint_of_another_tailnet_is_not_found() {
    // Ids are global, but an endpoint is managed only from its own tailnet.
    given()
        .tailnet()
        .user(ALICE, Role::Admin)
        .command(admin(ALICE, create("wA", &[WebhookType::NodeCreated])))
        .command(create_tailnet("T2", "other.example", "uOther"))
        .when(admin_in(
            "T2",
            "uOther",
            op(WebhookOp::Delete {
                endpoint_id: eid("wA"),
            }),
        ))
        .then_rejected_code("not_found");
}
