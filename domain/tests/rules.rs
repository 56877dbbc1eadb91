//! The rules R01–R17 (SPEC §2) as given/when/then scenarios against the real `decide` and
//! `State::apply`. Each test names its rule; its first comment says what it proves.
//!
//! The few "under contention" tests run through the real log and live beside it
//! (`log/tests/domain_contention.rs`), so that this crate links no storage.

mod support;

use authkeys_domain::decide::LOCKED_OUT;
use authkeys_domain::lock::LockOp;
use authkeys_domain::secret::{self, SecretError, SecretKind};
use authkeys_domain::{AdminOp, Rejection};
use authkeys_events::{
    ApiTokenRevoked, Hash, LoginName, TokenId, UserAdded, UserRemoved, UserRestored, UserSuspended,
};
use authkeys_events::{
    DeleteReason, EventType, ExpirySeconds, KeyDurationDays, KeyExpired, KeyGenerated, KeyRevoked,
    KeyUsed, NodeAddresses, NodeAuthorized, NodeDeleted, NodeExpired, NodeKeyExpirySet,
    NodeReauthenticated, NodeRegistered, NodeSigned, Role, Scope, Tags, TagsChanged,
    TailnetSettingsChanged, Timestamp, UserRoleChanged,
};
use support::*;

use EventType as E;

/// A tailnet with two admins, Alice and Bob, besides its Owner.
fn admins() -> Given {
    given()
        .tailnet()
        .user(ALICE, Role::Admin)
        .user(BOB, Role::Admin)
}

fn approval(on: bool) -> AdminOp {
    AdminOp::ChangeSettings {
        devices_approval_on: Some(on),
        devices_key_duration_days: None,
        kept: Default::default(),
    }
}

fn set_tags(node: &str, t: &[&str]) -> AdminOp {
    AdminOp::SetTags {
        node_id: nid(node),
        tags: tags(t),
    }
}

fn set_key_expiry(node: &str, disabled: bool) -> AdminOp {
    AdminOp::SetKeyExpiry {
        node_id: nid(node),
        disabled,
    }
}

fn expire(node: &str) -> AdminOp {
    AdminOp::ExpireNode { node_id: nid(node) }
}

fn authorize(node: &str, authorized: bool) -> AdminOp {
    AdminOp::AuthorizeNode {
        node_id: nid(node),
        authorized,
    }
}

fn delete(node: &str) -> AdminOp {
    AdminOp::DeleteNode { node_id: nid(node) }
}

// ---------------------------------------------------------------------------------------------
// R01 one-off and reusable keys
// ---------------------------------------------------------------------------------------------

#[test]
fn r01_one_off_key_registers_one_node_then_is_invalid() {
    // A one-off key's first registration writes NodeRegistered + KeyUsed{uses: 1}; a second
    // registration with another node key is refused with InvalidKey.
    admins()
        .key(ALICE, "kOne", KeyOpts::one_off())
        .when(register("kOne", 1, "n1"))
        .then_types(&[E::NodeRegistered, E::KeyUsed])
        .then_events(|e| {
            let used = one::<KeyUsed>(e);
            assert_eq!(used.uses, 1);
            assert_eq!(used.node_id, nid("n1"));
            assert_eq!(used.node_key, node_key(1));
        })
        .and()
        .when(register("kOne", 2, "n2"))
        .then_rejected(Rejection::InvalidKey);
}

#[test]
fn r01_reusable_key_registers_many_nodes_and_counts_uses() {
    // A reusable key registers one new node per node key, and KeyUsed.uses counts 1, 2, 3; the
    // state's key records the count and the last use.
    let mut g = admins().key(ALICE, "kMany", KeyOpts::reusable());
    for i in 1..=3u64 {
        let node = format!("n{i}");
        g = g
            .at(i as i64 * 10)
            .when(register("kMany", i, &node))
            .then_events(|e| {
                assert_eq!(one::<NodeRegistered>(e).node_id, nid(&node));
                assert_eq!(one::<KeyUsed>(e).uses, i);
            })
            .and();
    }
    let key = key_in(g.state(), "kMany");
    assert_eq!(key.uses, 3);
    assert_eq!(key.last_used, Some(at(30)));
    assert_eq!(g.state().tailnets[&t1()].nodes.len(), 3);
}

#[test]
fn r01_one_off_key_stays_spent_after_its_node_is_deleted() {
    // Deleting the node a one-off key registered does not give the key back: registering again,
    // with the old node key or a new one, is refused.
    let g = admins()
        .key(ALICE, "kOne", KeyOpts::one_off())
        .registered("kOne", 1, "n1")
        .command(admin(ALICE, delete("n1")));
    g.clone()
        .when(register("kOne", 1, "n2"))
        .then_rejected(Rejection::InvalidKey);
    g.when(register("kOne", 2, "n3"))
        .then_rejected(Rejection::InvalidKey);
}

#[test]
fn r01_one_off_key_cannot_reauthenticate_even_its_own_node() {
    // Presenting a used one-off key again with the same node key is a use of a used key:
    // refused, not a re-authentication.
    admins()
        .key(ALICE, "kOne", KeyOpts::one_off())
        .registered("kOne", 1, "n1")
        .when(register("kOne", 1, "n2"))
        .then_rejected(Rejection::InvalidKey);
}

// ---------------------------------------------------------------------------------------------
// R02 ephemeral keys
// ---------------------------------------------------------------------------------------------

#[test]
fn r02_ephemeral_flag_flows_from_key_to_node() {
    // An ephemeral key registers an ephemeral node, a plain key a plain one: NodeRegistered and
    // the folded node carry the key's flag.
    let g = admins()
        .key(ALICE, "kEph", KeyOpts::reusable().ephemeral())
        .key(ALICE, "kPlain", KeyOpts::reusable());
    let g = g
        .when(register("kEph", 1, "n1"))
        .then_events(|e| assert!(one::<NodeRegistered>(e).ephemeral))
        .and()
        .when(register("kPlain", 2, "n2"))
        .then_events(|e| assert!(!one::<NodeRegistered>(e).ephemeral))
        .and();
    assert!(live_node(g.state(), "n1").ephemeral);
    assert!(!live_node(g.state(), "n2").ephemeral);
}

#[test]
fn r02_restarted_workload_with_a_new_node_key_is_a_new_node() {
    // An ephemeral workload that restarts registers with a new node key and becomes a second
    // node; the first stays until the inactivity timer removes it.
    let g = admins()
        .key(ALICE, "kEph", KeyOpts::reusable().ephemeral())
        .registered("kEph", 1, "n1")
        .when(register("kEph", 2, "n2"))
        .then_types(&[E::NodeRegistered, E::KeyUsed])
        .then_events(|e| {
            let r = one::<NodeRegistered>(e);
            assert_eq!(r.node_id, nid("n2"));
            assert!(r.ephemeral);
        })
        .and();
    assert!(
        node_in(g.state(), "n1").is_some(),
        "the old node is still there"
    );
}

#[test]
fn r02_disconnect_is_recorded_once_for_the_inactivity_timer() {
    // A registrar's disconnect report writes NodeDisconnected (which starts the inactivity
    // clock); the same report again writes nothing; a reconnect writes NodeConnected.
    let g = admins()
        .key(ALICE, "kEph", KeyOpts::reusable().ephemeral())
        .registered("kEph", 1, "n1");
    let disconnected = authkeys_domain::Command::NodeDisconnected {
        node_key: node_key(1),
    };
    g.at(60)
        .when(disconnected.clone())
        .then_types(&[E::NodeDisconnected])
        .and()
        .when(disconnected)
        .then_no_events()
        .and()
        .when(authkeys_domain::Command::NodeConnected {
            node_key: node_key(1),
        })
        .then_types(&[E::NodeConnected]);
}

// ---------------------------------------------------------------------------------------------
// R03 device approval
// ---------------------------------------------------------------------------------------------

#[test]
fn r03_approval_off_authorizes_every_node() {
    // With device approval off (the default), nodes of plain and of pre-approved keys are both
    // authorized at registration.
    admins()
        .key(ALICE, "kPlain", KeyOpts::reusable())
        .key(ALICE, "kPre", KeyOpts::reusable().preauthorized())
        .when(register("kPlain", 1, "n1"))
        .then_events(|e| assert!(one::<NodeRegistered>(e).authorized))
        .and()
        .when(register("kPre", 2, "n2"))
        .then_events(|e| assert!(one::<NodeRegistered>(e).authorized));
}

#[test]
fn r03_approval_on_authorizes_only_preauthorized_keys() {
    // With device approval on, a pre-approved key's node is authorized at once and a plain key's
    // node waits unauthorized.
    admins()
        .command(admin(OWNER, approval(true)))
        .key(ALICE, "kPlain", KeyOpts::reusable())
        .key(ALICE, "kPre", KeyOpts::reusable().preauthorized())
        .when(register("kPre", 1, "n1"))
        .then_events(|e| assert!(one::<NodeRegistered>(e).authorized))
        .and()
        .when(register("kPlain", 2, "n2"))
        .then_events(|e| assert!(!one::<NodeRegistered>(e).authorized));
}

#[test]
fn r03_admin_approves_a_waiting_node() {
    // A waiting node is authorized by AuthorizeNode{true} (NodeAuthorized); approving it again
    // writes nothing; a Member may not approve.
    let g = admins()
        .user("uMember", Role::Member)
        .command(admin(OWNER, approval(true)))
        .key(ALICE, "kPlain", KeyOpts::reusable())
        .registered("kPlain", 1, "n1");
    assert!(!live_node(g.state(), "n1").authorized);
    g.clone()
        .when(admin("uMember", authorize("n1", true)))
        .then_rejected_code("forbidden");
    let g = g
        .when(admin(BOB, authorize("n1", true)))
        .then_events(|e| {
            assert_eq!(
                one::<NodeAuthorized>(e),
                &NodeAuthorized {
                    node_id: nid("n1"),
                    authorized: true
                }
            );
        })
        .and();
    assert!(live_node(g.state(), "n1").authorized);
    g.when(admin(BOB, authorize("n1", true))).then_no_events();
}

#[test]
fn r03_reauthentication_with_a_preauthorized_key_approves_a_waiting_node() {
    // A node waiting for approval that re-authenticates with a pre-approved key is authorized
    // by that re-authentication (NodeReauthenticated + KeyUsed + NodeAuthorized).
    admins()
        .command(admin(OWNER, approval(true)))
        .key(ALICE, "kPlain", KeyOpts::reusable())
        .key(ALICE, "kPre", KeyOpts::reusable().preauthorized())
        .registered("kPlain", 1, "n1")
        .when(register("kPre", 1, "n2"))
        .then_types(&[E::NodeReauthenticated, E::KeyUsed, E::NodeAuthorized]);
}

// ---------------------------------------------------------------------------------------------
// R04 tailnet lock
// ---------------------------------------------------------------------------------------------

#[test]
fn r04_lock_off_registers_without_lock_error() {
    // Without tailnet lock, a node of an unsigned key has no tailnetLockError.
    admins()
        .key(ALICE, "kA", KeyOpts::one_off())
        .when(register("kA", 1, "n1"))
        .then_events(|e| assert_eq!(one::<NodeRegistered>(e).tailnet_lock_error, None));
}

/// [`admins`] with tailnet lock on, trusting lock keys 1 and 2, turned on by Alice.
fn locked() -> Given {
    admins()
        .when(lock(ALICE, lock_enable(&[&lock_key(1), &lock_key(2)])))
        .then_types(&[E::TailnetLockEnabled])
        .and()
}

#[test]
fn r04_lock_on_locks_out_a_node_of_an_unsigned_key() {
    // `authkeys lock init` by an Admin turns the lock on; then a node of a plain key is
    // registered locked out: tailnetLockError set, no NodeSigned.
    let g = locked()
        .key(ALICE, "kA", KeyOpts::one_off())
        .when(register("kA", 1, "n1"))
        .then_types(&[E::NodeRegistered, E::KeyUsed])
        .then_events(|e| {
            assert_eq!(
                one::<NodeRegistered>(e).tailnet_lock_error.as_deref(),
                Some(LOCKED_OUT)
            );
        })
        .and();
    assert!(
        g.state()
            .tailnet(&tid(TAILNET))
            .expect("tailnet")
            .settings
            .tailnet_lock_on
    );
    assert_eq!(
        live_node(g.state(), "n1").tailnet_lock_error.as_deref(),
        Some(LOCKED_OUT)
    );
}

#[test]
fn r04_a_pre_signed_key_registers_signed_nodes() {
    // A key pre-signed by a trusted lock key registers a signed node (no error, a NodeSigned
    // naming the key), every time for a reusable key.
    let g = locked()
        .key(ALICE, "kR", KeyOpts::reusable())
        .when(register_presigned("kR", 1, "n1", &lock_key(2), "kR"))
        .then_types(&[E::NodeRegistered, E::KeyUsed, E::NodeSigned])
        .then_events(|e| {
            assert_eq!(one::<NodeRegistered>(e).tailnet_lock_error, None);
            let s = one::<NodeSigned>(e);
            assert_eq!(s.key_id, Some(kid("kR")));
            assert_eq!(s.lock_key, lock_key(2).public());
        })
        .and()
        .when(register_presigned("kR", 2, "n2", &lock_key(2), "kR"))
        .then_types(&[E::NodeRegistered, E::KeyUsed, E::NodeSigned])
        .and();
    assert_eq!(
        live_node(g.state(), "n2").signed_by,
        Some(lock_key(2).public())
    );
}

#[test]
fn r04_a_signature_for_another_key_or_by_an_untrusted_key_is_invalid_key() {
    // A signature over another key's id, or by a key the tailnet does not trust, is the same
    // invalid_key as a wrong secret (R10), and writes nothing.
    let g = locked()
        .key(ALICE, "kA", KeyOpts::reusable())
        .key(ALICE, "kB", KeyOpts::reusable());
    g.clone()
        .when(register_presigned("kA", 1, "n1", &lock_key(1), "kB"))
        .then_rejected(Rejection::InvalidKey);
    g.when(register_presigned("kA", 1, "n1", &lock_key(9), "kA"))
        .then_rejected(Rejection::InvalidKey);
}

#[test]
fn r04_with_the_lock_off_a_pre_signature_is_not_looked_at() {
    // Before the lock is on, a pre-signed key registers as a plain one.
    admins()
        .key(ALICE, "kA", KeyOpts::one_off())
        .when(register_presigned("kA", 1, "n1", &lock_key(9), "kA"))
        .then_types(&[E::NodeRegistered, E::KeyUsed]);
}

#[test]
fn r04_signing_a_locked_out_node_releases_it() {
    // `authkeys lock sign nodekey:…`: a trusted key's signature over the tailnet and node key
    // clears the node's error; one made for another tailnet, or by an untrusted key, is refused.
    let g = locked()
        .key(ALICE, "kA", KeyOpts::one_off())
        .registered("kA", 1, "n1");
    let sign = |key: &authkeys_events::lock::LockPrivateKey, tailnet: &str| {
        let statement = authkeys_events::lock::node_statement(&tid(tailnet), &node_key(1));
        LockOp::SignNode {
            node_key: node_key(1),
            lock_key: key.public(),
            signature: key.sign(&statement),
        }
    };
    g.clone()
        .when(lock(ALICE, sign(&lock_key(1), "T2")))
        .then_rejected_code("forbidden");
    g.clone()
        .when(lock(ALICE, sign(&lock_key(9), TAILNET)))
        .then_rejected_code("forbidden");
    let g = g
        .when(lock(ALICE, sign(&lock_key(1), TAILNET)))
        .then_events(|e| {
            let s = one::<NodeSigned>(e);
            assert_eq!((s.node_id.as_str(), s.key_id.as_ref()), ("n1", None));
        })
        .and();
    assert_eq!(live_node(g.state(), "n1").tailnet_lock_error, None);
}

#[test]
fn r04_changing_the_trusted_keys_needs_a_trusted_signature_for_this_generation() {
    // A new trusted set must be signed by a key trusted now, over this tailnet's current
    // generation: an admin token alone cannot replace the keys, and a signed change cannot be
    // replayed later.
    let change = |signer: &authkeys_events::lock::LockPrivateKey, generation: u64| {
        let keys = vec![lock_key(3).public()];
        let statement =
            authkeys_events::lock::trusted_keys_statement(&tid(TAILNET), generation, &keys);
        LockOp::ChangeKeys {
            trusted_keys: keys,
            signer: signer.public(),
            signature: signer.sign(&statement),
        }
    };
    let g = locked();
    g.clone()
        .when(lock(ALICE, change(&lock_key(9), 1)))
        .then_rejected_code("forbidden");
    g.clone()
        .when(lock(ALICE, change(&lock_key(1), 0)))
        .then_rejected_code("forbidden");
    let g = g
        .when(lock(ALICE, change(&lock_key(1), 1)))
        .then_types(&[E::TrustedLockKeysChanged])
        .and();
    // The same signed change again: the generation moved on.
    let g = g
        .when(lock(ALICE, change(&lock_key(1), 1)))
        .then_rejected_code("forbidden")
        .and();
    // Key 1 is no longer trusted: its pre-signatures stop working; key 3's work.
    let g = g.key(ALICE, "kA", KeyOpts::reusable());
    g.clone()
        .when(register_presigned("kA", 1, "n1", &lock_key(1), "kA"))
        .then_rejected(Rejection::InvalidKey);
    g.when(register_presigned("kA", 1, "n1", &lock_key(3), "kA"))
        .then_types(&[E::NodeRegistered, E::KeyUsed, E::NodeSigned]);
}

#[test]
fn r04_disabling_needs_the_secret_and_releases_locked_out_nodes() {
    // `authkeys lock disable` with the wrong secret is refused; with the right one the lock is
    // off and every locked-out node is released.
    let g = locked()
        .key(ALICE, "kA", KeyOpts::one_off())
        .registered("kA", 1, "n1");
    g.clone()
        .when(lock(ALICE, LockOp::Disable { secret: [0; 32] }))
        .then_rejected_code("forbidden");
    let g = g
        .when(lock(
            ALICE,
            LockOp::Disable {
                secret: DISABLE_SECRET,
            },
        ))
        .then_types(&[E::TailnetLockDisabled])
        .and();
    assert_eq!(live_node(g.state(), "n1").tailnet_lock_error, None);
    assert!(
        !g.state()
            .tailnet(&tid(TAILNET))
            .expect("tailnet")
            .settings
            .tailnet_lock_on
    );
    g.when(lock(
        ALICE,
        LockOp::Disable {
            secret: DISABLE_SECRET,
        },
    ))
    .then_rejected_code("conflict");
}

#[test]
fn r04_only_the_owner_or_an_admin_with_a_good_token_turns_the_lock_on() {
    // A Member, a wrong token and a revoked token are refused; turning it on twice is a
    // conflict (changing keys needs a signature).
    let g = admins().user("uMallory", Role::Member);
    g.clone()
        .when(lock("uMallory", lock_enable(&[&lock_key(1)])))
        .then_rejected_code("forbidden");
    let mut wrong = lock(ALICE, lock_enable(&[&lock_key(1)]));
    if let authkeys_domain::Command::Lock { presented_hash, .. } = &mut wrong {
        *presented_hash = Hash([0; 32]);
    }
    g.clone().when(wrong).then_rejected_code("forbidden");
    g.clone()
        .event(
            TAILNET,
            ApiTokenRevoked {
                token_id: new_token(ALICE).token_id,
            },
        )
        .when(lock(ALICE, lock_enable(&[&lock_key(1)])))
        .then_rejected_code("forbidden");
    g.when(lock(OWNER, lock_enable(&[&lock_key(1)])))
        .then_types(&[E::TailnetLockEnabled])
        .and()
        .when(lock(ALICE, lock_enable(&[&lock_key(2)])))
        .then_rejected_code("conflict");
}

#[test]
fn r04_settings_commands_never_turn_tailnet_lock_on() {
    // The console/API settings command cannot touch tailnet lock: its event leaves
    // tailnetLockOn absent.
    admins()
        .when(admin(OWNER, approval(true)))
        .then_events(|e| assert_eq!(one::<TailnetSettingsChanged>(e).tailnet_lock_on, None));
}

// ---------------------------------------------------------------------------------------------
// R05 tagged keys
// ---------------------------------------------------------------------------------------------

#[test]
fn r05_tagged_key_registers_a_tagged_node_with_expiry_disabled() {
    // A tagged key's node carries the key's tags, has key expiry disabled and no expiry.
    let g = admins()
        .key(ALICE, "kTag", KeyOpts::one_off().tags(&["tag:ci"]))
        .when(register("kTag", 1, "n1"))
        .then_events(|e| {
            let r = one::<NodeRegistered>(e);
            assert_eq!(tag_names(&r.tags), ["tag:ci"]);
            assert!(r.key_expiry_disabled);
            assert_eq!(r.expires, None);
        })
        .and();
    let n = live_node(g.state(), "n1");
    assert_eq!(tag_names(&n.tags), ["tag:ci"]);
    assert!(n.key_expiry_disabled);
}

#[test]
fn r05_tags_are_sorted_and_deduplicated() {
    // Tags given as [web, db, web] are stored on the key and the node as [db, web].
    admins()
        .key(
            ALICE,
            "kTag",
            KeyOpts::one_off().tags(&["tag:web", "tag:db", "tag:web"]),
        )
        .when(register("kTag", 1, "n1"))
        .then_events(|e| {
            assert_eq!(
                tag_names(&one::<NodeRegistered>(e).tags),
                ["tag:db", "tag:web"]
            );
        })
        .and()
        .when(admin(
            ALICE,
            generate(
                "kTag2",
                &KeyOpts::one_off().tags(&["tag:b", "tag:a", "tag:b"]),
            ),
        ))
        .then_events(|e| assert_eq!(tag_names(&one::<KeyGenerated>(e).tags), ["tag:a", "tag:b"]));
}

#[test]
fn r05_tags_without_the_tag_prefix_are_refused_at_parse() {
    // A tag must be `tag:` + lowercase letters, digits, `-`: anything else cannot even be made
    // into Tags, so no command can carry it.
    for bad in [
        "server",
        "tag:",
        "tag:Server",
        "tag:a_b",
        "TAG:server",
        " tag:x",
    ] {
        assert!(Tags::parse(&[bad]).is_err(), "{bad:?} should be refused");
    }
    assert!(
        Tags::parse(&["tag:ok", "web"]).is_err(),
        "one bad tag spoils the set"
    );
    assert!(Tags::parse(&["tag:server-1", "tag:0"]).is_ok());
}

// ---------------------------------------------------------------------------------------------
// R06 untagged nodes belong to the key's user
// ---------------------------------------------------------------------------------------------

#[test]
fn r06_untagged_node_is_owned_by_the_key_user() {
    // A node registered with Alice's untagged key is Alice's, without tags.
    let g = admins()
        .key(ALICE, "kA", KeyOpts::one_off())
        .when(register("kA", 1, "n1"))
        .then_events(|e| {
            let r = one::<NodeRegistered>(e);
            assert_eq!(r.user_id, uid(ALICE));
            assert!(r.tags.is_empty());
            assert_eq!(r.auth_key_id, kid("kA"));
        })
        .and();
    assert_eq!(live_node(g.state(), "n1").user_id, uid(ALICE));
}

#[test]
fn r06_user_b_key_never_logs_in_as_user_a() {
    // Bob's key registers Bob's nodes: a new node is Bob's, and Alice's node re-authenticated
    // with Bob's key becomes Bob's; nothing done with Bob's key is ever owned by Alice.
    let g = admins()
        .key(ALICE, "kA", KeyOpts::one_off())
        .key(BOB, "kB", KeyOpts::reusable())
        .registered("kA", 1, "n1")
        .when(register("kB", 2, "n2"))
        .then_events(|e| assert_eq!(one::<NodeRegistered>(e).user_id, uid(BOB)))
        .and()
        .when(register("kB", 1, "n3"))
        .then_events(|e| {
            let r = one::<NodeReauthenticated>(e);
            assert_eq!(r.node_id, nid("n1"));
            assert_eq!(r.user_id, uid(BOB));
        })
        .and();
    assert_eq!(live_node(g.state(), "n1").user_id, uid(BOB));
    assert_eq!(live_node(g.state(), "n2").user_id, uid(BOB));
}

// ---------------------------------------------------------------------------------------------
// R07 roles
// ---------------------------------------------------------------------------------------------

#[test]
fn r07_owner_admin_it_admin_and_network_admin_may_generate_and_revoke() {
    // Each key-managing role generates a key (KeyGenerated owned by them) and revokes it
    // (KeyRevoked).
    for role in [Role::Owner, Role::Admin, Role::ItAdmin, Role::NetworkAdmin] {
        // A tailnet has one Owner (R18): the Owner role is the bootstrapped Owner.
        let (user, g) = match role {
            Role::Owner => (OWNER, given().tailnet()),
            _ => ("uKeeper", given().tailnet().user("uKeeper", role)),
        };
        g.when(admin(user, generate("kK", &KeyOpts::one_off())))
            .then_events(|e| assert_eq!(one::<KeyGenerated>(e).user_id, uid(user)))
            .and()
            .when(admin(user, revoke("kK")))
            .then_types(&[E::KeyRevoked]);
    }
}

#[test]
fn r07_member_auditor_and_billing_admin_are_forbidden() {
    // Members, Auditors and Billing admins get Forbidden (403) for generating, for revoking
    // (even before the key is looked up), and for managing devices.
    for role in [Role::Member, Role::Auditor, Role::BillingAdmin] {
        let user = "uNobody";
        let g = given()
            .tailnet()
            .user(user, role)
            .key(OWNER, "kO", KeyOpts::reusable())
            .registered("kO", 1, "n1");
        g.clone()
            .when(admin(user, generate("kK", &KeyOpts::one_off())))
            .then_rejected_code("forbidden");
        g.clone()
            .when(admin(user, revoke("kO")))
            .then_rejected_code("forbidden");
        g.clone()
            .when(admin(user, revoke("kUnknown")))
            .then_rejected_code("forbidden");
        for op in [
            set_tags("n1", &["tag:x"]),
            set_key_expiry("n1", true),
            expire("n1"),
            authorize("n1", false),
            delete("n1"),
        ] {
            g.clone()
                .when(admin(user, op))
                .then_rejected_code("forbidden");
        }
    }
}

#[test]
fn r07_a_demoted_user_may_no_longer_revoke_their_own_key() {
    // The role is checked at decision time: an Admin demoted to Member cannot revoke the key
    // they generated as Admin.
    admins()
        .key(ALICE, "kA", KeyOpts::one_off())
        .command(admin(OWNER, change_role(ALICE, Role::Member)))
        .when(admin(ALICE, revoke("kA")))
        .then_rejected_code("forbidden");
}

#[test]
fn r07_an_unknown_actor_is_forbidden() {
    // A user id that is not in the tailnet may do nothing.
    admins()
        .when(admin("uStranger", generate("kK", &KeyOpts::one_off())))
        .then_rejected_code("forbidden");
}

#[test]
fn r07_change_role_keeps_at_least_one_owner() {
    // The only Owner cannot be demoted except by a transfer (Conflict). A log from before the
    // one-Owner rule may hold two Owners: then one may step down, towards one.
    let g = admins();
    g.clone()
        .when(admin(OWNER, change_role(OWNER, Role::Admin)))
        .then_rejected_code("conflict");
    g.event(
        TAILNET,
        UserAdded {
            user_id: uid("uOwner2"),
            login_name: LoginName::parse("owner2@example.com").expect("valid"),
            role: Role::Owner,
        },
    )
    .when(admin("uOwner2", change_role(OWNER, Role::Admin)))
    .then_events(|e| {
        let c = one::<UserRoleChanged>(e);
        assert_eq!(c.previous_role, Role::Owner);
        assert_eq!(c.role, Role::Admin);
    });
}

#[test]
fn r07_only_an_owner_makes_or_unmakes_an_owner() {
    // An Admin may neither promote to Owner, demote an Owner, nor add an Owner.
    let g = admins();
    g.clone()
        .when(admin(ALICE, change_role(BOB, Role::Owner)))
        .then_rejected_code("forbidden");
    g.clone()
        .when(admin(ALICE, change_role(OWNER, Role::Member)))
        .then_rejected_code("forbidden");
    g.when(admin(ALICE, add_user("uNew", Role::Owner)))
        .then_rejected_code("forbidden");
}

// ---------------------------------------------------------------------------------------------
// R18, R21 people and credentials: one Owner, removing, suspending, restoring
// ---------------------------------------------------------------------------------------------

fn remove_user(user: &str) -> AdminOp {
    AdminOp::RemoveUser { user_id: uid(user) }
}

fn suspend_user(user: &str) -> AdminOp {
    AdminOp::SuspendUser { user_id: uid(user) }
}

fn restore_user(user: &str) -> AdminOp {
    AdminOp::RestoreUser { user_id: uid(user) }
}

/// Another API token for `user`, numbered `n`.
fn another_token(user: &str, n: u8) -> AdminOp {
    AdminOp::IssueToken {
        token: authkeys_domain::NewToken {
            token_id: TokenId::parse(format!("t{}{n}", &user[1..])).expect("valid token id"),
            secret_hash: Hash([n; 32]),
            expires: at(30 * DAY),
        },
    }
}

/// The tailnet's Owners in `s`.
fn owners(s: &authkeys_domain::State) -> Vec<String> {
    let t = s.tailnets.get(&t1()).expect("the tailnet");
    let mut o: Vec<String> = t
        .users
        .iter()
        .filter(|(_, u)| u.role == Role::Owner)
        .map(|(id, _)| id.to_string())
        .collect();
    o.sort();
    o
}

#[test]
fn r18_add_user_never_adds_a_second_owner() {
    // A tailnet has one Owner: the Owner adding an Owner is a Conflict that says how to
    // transfer ownership; anyone else is Forbidden. Nothing is written either way.
    let g = admins();
    let r = g
        .clone()
        .when(admin(OWNER, add_user("uNew", Role::Owner)))
        .then_rejected_code("conflict")
        .rejection();
    assert!(
        r.to_string()
            .contains("transfer ownership with POST /users/{id}/role"),
        "{r}"
    );
    g.clone()
        .when(admin(ALICE, add_user("uNew", Role::Owner)))
        .then_rejected_code("forbidden");
    assert_eq!(owners(g.state()), [OWNER]);
}

#[test]
fn r18_making_another_user_owner_transfers_ownership_in_one_decision() {
    // The Owner making Alice the Owner writes two UserRoleChanged in one decision, Alice first
    // (admin → owner), then the Owner (owner → admin): exactly one Owner after it. The former
    // Owner, now an Admin, may no longer change the new Owner's role.
    let g = admins()
        .when(admin(OWNER, change_role(ALICE, Role::Owner)))
        .then_events(|e| {
            assert_eq!(
                e,
                [
                    UserRoleChanged {
                        user_id: uid(ALICE),
                        previous_role: Role::Admin,
                        role: Role::Owner,
                    }
                    .into(),
                    UserRoleChanged {
                        user_id: uid(OWNER),
                        previous_role: Role::Owner,
                        role: Role::Admin,
                    }
                    .into(),
                ]
            );
        })
        .and();
    assert_eq!(owners(g.state()), [ALICE]);
    g.clone()
        .when(admin(OWNER, change_role(ALICE, Role::Member)))
        .then_rejected_code("forbidden");
    // Making the Owner the Owner again changes nothing.
    g.when(admin(ALICE, change_role(ALICE, Role::Owner)))
        .then_no_events();
}

#[test]
fn r18_the_owner_lowers_their_own_role_only_by_transferring() {
    // The Owner demoting themselves is a Conflict naming the transfer; a suspended user cannot
    // be made the Owner (restore them first).
    let g = admins();
    let r = g
        .clone()
        .when(admin(OWNER, change_role(OWNER, Role::Member)))
        .then_rejected_code("conflict")
        .rejection();
    assert!(r.to_string().contains("transfer ownership"), "{r}");
    g.command(admin(OWNER, suspend_user(ALICE)))
        .when(admin(OWNER, change_role(ALICE, Role::Owner)))
        .then_rejected_code("conflict");
}

#[test]
fn r21_only_owner_admin_and_it_admin_manage_users() {
    // Network admins, Members, Auditors and Billing admins may neither change roles, remove,
    // suspend nor restore (Forbidden, before the target is looked up); an IT admin may do
    // each.
    for role in [
        Role::NetworkAdmin,
        Role::Member,
        Role::Auditor,
        Role::BillingAdmin,
    ] {
        let g = admins().user("uNobody", role);
        for op in [
            change_role(BOB, Role::Member),
            remove_user(BOB),
            suspend_user(BOB),
            restore_user(BOB),
            remove_user("uUnknown"),
        ] {
            g.clone()
                .when(admin("uNobody", op))
                .then_rejected_code("forbidden");
        }
    }
    let g = admins()
        .user("uIt", Role::ItAdmin)
        .user("uMem", Role::Member);
    g.clone()
        .when(admin("uIt", change_role("uMem", Role::Auditor)))
        .then_types(&[E::UserRoleChanged]);
    g.clone()
        .when(admin("uIt", suspend_user("uMem")))
        .then_types(&[E::UserSuspended])
        .and()
        .when(admin("uIt", restore_user("uMem")))
        .then_types(&[E::UserRestored]);
    g.clone()
        .when(admin("uIt", remove_user("uMem")))
        .then_types(&[E::ApiTokenRevoked, E::UserRemoved]);
    // Nobody manages more than they hold: an IT admin neither makes an Admin (themselves
    // included) nor acts on one.
    for op in [
        change_role("uMem", Role::Admin),
        change_role("uIt", Role::Admin),
        change_role(BOB, Role::Member),
        suspend_user(BOB),
        restore_user(BOB),
        remove_user(BOB),
    ] {
        g.clone()
            .when(admin("uIt", op))
            .then_rejected_code("forbidden");
    }
}

#[test]
fn r21_only_the_owner_touches_the_owner_and_nobody_removes_or_suspends_them() {
    // An Admin may not make an Owner, change the Owner's role or restore the Owner
    // (Forbidden); removing or suspending the Owner is a Conflict for everyone, which says to
    // transfer ownership first.
    let g = admins();
    for op in [
        change_role(BOB, Role::Owner),
        change_role(OWNER, Role::Member),
        restore_user(OWNER),
    ] {
        g.clone()
            .when(admin(ALICE, op))
            .then_rejected_code("forbidden");
    }
    for op in [remove_user(OWNER), suspend_user(OWNER)] {
        let r = g
            .clone()
            .when(admin(ALICE, op))
            .then_rejected_code("conflict")
            .rejection();
        assert!(r.to_string().contains("transfer ownership first"), "{r}");
    }
}

#[test]
fn r18_nobody_removes_or_suspends_themselves() {
    // Removing or suspending oneself is a Conflict, for an Admin and for the Owner.
    let g = admins();
    for who in [ALICE, OWNER] {
        for op in [remove_user(who), suspend_user(who)] {
            let r = g
                .clone()
                .when(admin(who, op))
                .then_rejected_code("conflict")
                .rejection();
            assert!(r.to_string().contains("yourself"), "{r}");
        }
    }
}

#[test]
fn r18_removing_a_user_revokes_their_tokens_and_usable_keys_and_keeps_their_nodes() {
    // In one decision: ApiTokenRevoked for each token of theirs still live (by id; not the one
    // already revoked), KeyRevoked for each key of theirs that could still register (not the
    // spent one-off, not the revoked one; no one else's), then UserRemoved. Their node stays,
    // authorized, and still shows their login; they and their login leave the users, so every
    // later command of theirs is refused like an unknown user's, and the login may be added
    // again as a new user.
    let g = admins()
        .command(admin(ALICE, another_token(ALICE, 2)))
        .command(admin(ALICE, another_token(ALICE, 3)))
        .command(admin(
            ALICE,
            AdminOp::RevokeToken {
                token_id: TokenId::parse("tAlice2").expect("valid"),
            },
        ))
        .key(ALICE, "kReusable", KeyOpts::reusable())
        .key(ALICE, "kSpent", KeyOpts::one_off())
        .key(ALICE, "kRevoked", KeyOpts::one_off())
        .key(ALICE, "kFresh", KeyOpts::one_off())
        .key(BOB, "kBob", KeyOpts::one_off())
        .command(admin(ALICE, revoke("kRevoked")))
        .registered("kReusable", 1, "n1")
        .registered("kSpent", 2, "n2");
    let g = g
        .when(admin(BOB, remove_user(ALICE)))
        .then_events(|e| {
            assert_eq!(
                e,
                [
                    ApiTokenRevoked {
                        token_id: TokenId::parse("tAlice").expect("valid"),
                    }
                    .into(),
                    ApiTokenRevoked {
                        token_id: TokenId::parse("tAlice3").expect("valid"),
                    }
                    .into(),
                    KeyRevoked {
                        key_id: kid("kFresh"),
                    }
                    .into(),
                    KeyRevoked {
                        key_id: kid("kReusable"),
                    }
                    .into(),
                    UserRemoved {
                        user_id: uid(ALICE),
                    }
                    .into(),
                ]
            );
        })
        .and();
    let t = g.state().tailnets.get(&t1()).expect("the tailnet");
    assert!(!t.users.contains_key(&uid(ALICE)));
    assert!(
        !t.logins
            .contains_key(&LoginName::parse("Alice@example.com").expect("valid"))
    );
    assert!(
        t.tokens
            .values()
            .all(|tok| tok.user_id != uid(ALICE) || tok.revoked)
    );
    assert!(key_in(g.state(), "kBob").revoked.is_none(), "not Bob's key");
    for n in ["n1", "n2"] {
        assert!(live_node(g.state(), n).authorized, "R11: {n} stays");
    }
    let login = node_login(g.state(), "n1");
    assert_eq!(login, "Alice@example.com");
    // Removed: refused exactly like an unknown user; gone for every user op.
    let unknown = g
        .clone()
        .when(admin("uStranger", generate("kX", &KeyOpts::one_off())))
        .rejection();
    assert_eq!(
        g.clone()
            .when(admin(ALICE, generate("kX", &KeyOpts::one_off())))
            .rejection(),
        unknown
    );
    for op in [
        remove_user(ALICE),
        suspend_user(ALICE),
        restore_user(ALICE),
        change_role(ALICE, Role::Member),
    ] {
        g.clone()
            .when(admin(BOB, op))
            .then_rejected_code("not_found");
    }
    // The login comes back as a new user, with a new id.
    g.when(admin(
        OWNER,
        AdminOp::AddUser {
            user_id: uid("uAgain"),
            login_name: LoginName::parse("Alice@example.com").expect("valid"),
            role: Role::Member,
            token: new_token("uAgain"),
        },
    ))
    .then_types(&[E::UserAdded, E::ApiTokenIssued]);
}

/// The login name a removed user's node still shows, as the command side's device view reads
/// it.
fn node_login(s: &authkeys_domain::State, node: &str) -> String {
    let t = s.tailnets.get(&t1()).expect("the tailnet");
    let n = live_node(s, node);
    t.users
        .get(&n.user_id)
        .map(|u| &u.login_name)
        .or_else(|| t.removed_logins.get(&n.user_id))
        .map(ToString::to_string)
        .unwrap_or_default()
}

#[test]
fn r18_removing_a_user_with_no_live_token_or_key_still_works() {
    // With every token already revoked and no key, removal is UserRemoved alone; a suspended
    // user can be removed too.
    admins()
        .command(admin(
            ALICE,
            AdminOp::RevokeToken {
                token_id: TokenId::parse("tAlice").expect("valid"),
            },
        ))
        .command(admin(OWNER, suspend_user(ALICE)))
        .when(admin(BOB, remove_user(ALICE)))
        .then_events(|e| {
            assert_eq!(
                e,
                [UserRemoved {
                    user_id: uid(ALICE)
                }
                .into()]
            );
        });
}

#[test]
fn r21_a_suspended_user_is_refused_like_an_unknown_one_until_restored() {
    // Suspending writes UserSuspended; the user stays, marked suspended, and every command of
    // theirs is refused exactly as an unknown user's (even with their tokens untouched).
    // Suspending again changes nothing; restoring writes UserRestored and they act again;
    // restoring again changes nothing.
    let g = admins()
        .when(admin(OWNER, suspend_user(ALICE)))
        .then_events(|e| {
            assert_eq!(
                e,
                [UserSuspended {
                    user_id: uid(ALICE)
                }
                .into()]
            );
        })
        .and();
    let t = g.state().tailnets.get(&t1()).expect("the tailnet");
    assert!(t.users.get(&uid(ALICE)).is_some_and(|u| u.suspended));
    assert!(
        t.tokens.values().all(|tok| !tok.revoked),
        "tokens untouched"
    );
    let unknown = g
        .clone()
        .when(admin("uStranger", generate("kX", &KeyOpts::one_off())))
        .rejection();
    for op in [
        generate("kX", &KeyOpts::one_off()),
        suspend_user(BOB),
        another_token(ALICE, 2),
    ] {
        assert_eq!(g.clone().when(admin(ALICE, op)).rejection(), unknown);
    }
    let g = g
        .when(admin(BOB, suspend_user(ALICE)))
        .then_no_events()
        .and()
        .when(admin(BOB, restore_user(ALICE)))
        .then_events(|e| {
            assert_eq!(
                e,
                [UserRestored {
                    user_id: uid(ALICE)
                }
                .into()]
            );
        })
        .and();
    g.clone()
        .when(admin(ALICE, generate("kX", &KeyOpts::one_off())))
        .then_types(&[E::KeyGenerated]);
    g.when(admin(BOB, restore_user(ALICE))).then_no_events();
}

// ---------------------------------------------------------------------------------------------
// R08 key expiry
// ---------------------------------------------------------------------------------------------

#[test]
fn r08_expires_is_generation_time_plus_expiry_seconds() {
    // KeyGenerated.expires = now + expirySeconds.
    admins()
        .at(10)
        .when(admin(
            ALICE,
            generate("kA", &KeyOpts::one_off().expiry_secs(3600)),
        ))
        .then_events(|e| {
            let g = one::<KeyGenerated>(e);
            assert_eq!(g.expires, at(10 + 3600));
            assert_eq!(g.expiry_seconds.get(), 3600);
        });
}

#[test]
fn r08_key_is_unusable_at_and_after_expires_by_time_alone() {
    // A key generated at T0 for 3600 s registers at 3599.999 s but not at 3600 s nor later,
    // though no KeyExpired was ever recorded (no timer ran).
    let g = admins().key(ALICE, "kA", KeyOpts::reusable().expiry_secs(3600));
    g.clone()
        .at_ms(3_599_999)
        .when(register("kA", 1, "n1"))
        .then_types(&[E::NodeRegistered, E::KeyUsed]);
    g.clone()
        .at(3600)
        .when(register("kA", 1, "n1"))
        .then_rejected(Rejection::InvalidKey);
    let g = g.at(90 * DAY);
    assert!(!g.history().iter().any(|e| e.event_type() == E::KeyExpired));
    assert!(!key_in(g.state(), "kA").expired);
    g.when(register("kA", 1, "n1"))
        .then_rejected(Rejection::InvalidKey);
}

#[test]
fn r08_expired_key_cannot_register_even_when_no_timer_has_run() {
    // The hard-learned case: expiry is checked by time in decide, never by waiting for the
    // KeyExpired timer; an expired reusable key neither registers a new node nor
    // re-authenticates an existing one.
    admins()
        .key(ALICE, "kA", KeyOpts::reusable().expiry_secs(60))
        .registered("kA", 1, "n1")
        .at(61)
        .when(register("kA", 2, "n2"))
        .then_rejected(Rejection::InvalidKey)
        .and()
        .when(register("kA", 1, "n3"))
        .then_rejected(Rejection::InvalidKey);
}

#[test]
fn r08_an_expired_and_used_key_is_refused() {
    // A one-off key used before its expiry is refused after it (both reasons hold).
    admins()
        .key(ALICE, "kA", KeyOpts::one_off().expiry_secs(60))
        .registered("kA", 1, "n1")
        .at(120)
        .when(register("kA", 2, "n2"))
        .then_rejected(Rejection::InvalidKey);
}

#[test]
fn r08_expiry_outside_one_second_to_ninety_days_cannot_be_asked() {
    // expirySeconds is 1..=7,776,000: 0 and 7,776,001 cannot be made into ExpirySeconds, so no
    // GenerateKey can carry them (the API answers 400 and nothing is written).
    assert!(ExpirySeconds::new(0).is_err());
    assert!(ExpirySeconds::new(7_776_001).is_err());
    assert!(ExpirySeconds::new(1).is_ok());
    assert_eq!(ExpirySeconds::MAX.get(), 90 * 86_400);
}

// ---------------------------------------------------------------------------------------------
// R09 own keys only
// ---------------------------------------------------------------------------------------------

#[test]
fn r09_another_users_key_is_not_found_exactly_like_an_unknown_id() {
    // Bob revoking Alice's key gets the very same rejection as Bob revoking an id that does not
    // exist: NotFound with the same message.
    let other = admins()
        .key(ALICE, "kA", KeyOpts::one_off())
        .when(admin(BOB, revoke("kA")))
        .rejection();
    let unknown = admins().when(admin(BOB, revoke("kA"))).rejection();
    assert_eq!(other, unknown);
    assert_eq!(other.code(), "not_found");
}

#[test]
fn r09_even_the_owner_cannot_revoke_another_users_key() {
    // Owning the tailnet does not make Alice's key the Owner's: NotFound.
    admins()
        .key(ALICE, "kA", KeyOpts::one_off())
        .when(admin(OWNER, revoke("kA")))
        .then_rejected_code("not_found");
}

#[test]
fn r09_a_key_of_another_tailnet_is_not_found() {
    // The Owner of T1 revoking a key of tailnet T2 gets what an unknown id gets.
    let g = admins()
        .command(create_tailnet("T2", "other.example", "uOther"))
        .command(admin_in(
            "T2",
            "uOther",
            generate("kX", &KeyOpts::one_off()),
        ));
    let foreign = g.when(admin(OWNER, revoke("kX"))).rejection();
    let unknown = admins().when(admin(OWNER, revoke("kX"))).rejection();
    assert_eq!(foreign, unknown);
}

#[test]
fn r09_admin_ops_on_a_node_of_another_tailnet_are_not_found() {
    // Every device command naming a node of another tailnet answers NotFound, as for a node that
    // does not exist, and changes nothing there.
    let g = admins()
        .command(create_tailnet("T2", "other.example", "uOther"))
        .command(admin_in(
            "T2",
            "uOther",
            generate("kX", &KeyOpts::reusable()),
        ))
        .registered("kX", 1, "n1");
    let ops = || {
        [
            set_tags("n1", &["tag:x"]),
            set_key_expiry("n1", true),
            expire("n1"),
            authorize("n1", false),
            delete("n1"),
        ]
    };
    for (op, same_op) in ops().into_iter().zip(ops()) {
        let foreign = g.clone().when(admin(OWNER, op)).rejection();
        let unknown = admins().when(admin(OWNER, same_op)).rejection();
        assert_eq!(foreign, unknown);
        assert_eq!(foreign.code(), "not_found");
    }
}

// ---------------------------------------------------------------------------------------------
// R10 one answer for every unusable key
// ---------------------------------------------------------------------------------------------

#[test]
fn r10_unknown_wrong_expired_revoked_and_used_keys_get_the_identical_answer() {
    // Unknown id, wrong secret (valid checksum), expired, revoked and used keys all give
    // Rejection::InvalidKey: same variant, same code, same message.
    let base = admins()
        .key(ALICE, "kA", KeyOpts::one_off().expiry_secs(60))
        .key(ALICE, "kRev", KeyOpts::reusable())
        .command(admin(ALICE, revoke("kRev")))
        .key(ALICE, "kUsed", KeyOpts::one_off())
        .registered("kUsed", 9, "n9");
    let cases = [
        ("unknown", base.clone().when(register("kNope", 1, "n1"))),
        (
            "wrong secret",
            base.clone().when(register_with_secret(
                &issue_with("kA", b"another secret").text,
                1,
                "n1",
            )),
        ),
        ("expired", base.clone().at(60).when(register("kA", 1, "n1"))),
        ("revoked", base.clone().when(register("kRev", 1, "n1"))),
        ("used", base.clone().when(register("kUsed", 1, "n1"))),
    ];
    for (what, then) in cases {
        let r = then.rejection();
        assert_eq!(r, Rejection::InvalidKey, "{what}");
        assert_eq!(r.code(), "invalid_key", "{what}");
        assert_eq!(r.to_string(), Rejection::InvalidKey.to_string(), "{what}");
    }
}

#[test]
fn r10_mistyped_or_recased_keys_fail_before_any_lookup() {
    // The checksum refuses a key with one character changed or its case changed, so the
    // service never gets as far as decide.
    let text = issued("kA").text;
    assert!(secret::parse(SecretKind::Auth, &text).is_ok());
    let upper = text.replacen("tskey-auth-kA-", "tskey-auth-KA-", 1);
    assert!(secret::parse(SecretKind::Auth, &upper).is_err());
    let mut typo: Vec<char> = text.chars().collect();
    let i = typo.len() - 10;
    typo[i] = if typo[i] == 'x' { 'y' } else { 'x' };
    let typo: String = typo.into_iter().collect();
    assert_eq!(
        secret::parse(SecretKind::Auth, &typo),
        Err(SecretError::Checksum)
    );
    let swapped = text.to_uppercase();
    assert!(secret::parse(SecretKind::Auth, &swapped).is_err());
}

#[test]
fn r10_no_event_carries_the_secret() {
    // After generating and using a key, no envelope in the history contains the key's text or
    // its secret part, only the keyed hash.
    let text = issued("kA").text;
    let secret_part = &text["tskey-auth-kA-".len()..text.len() - secret::CHECK_LEN];
    assert_eq!(secret_part.len(), secret::SECRET_LEN);
    let g = admins()
        .key(ALICE, "kA", KeyOpts::reusable())
        .registered("kA", 1, "n1")
        .registered("kA", 1, "n2");
    for env in g.history() {
        let json = String::from_utf8(env.to_json()).expect("utf8");
        assert!(!json.contains(secret_part), "{json}");
    }
}

// ---------------------------------------------------------------------------------------------
// R11 revoking never de-authorizes; deleting does
// ---------------------------------------------------------------------------------------------

#[test]
fn r11_revoking_a_key_leaves_its_nodes_authorized() {
    // Revoking a key writes only KeyRevoked; the nodes it registered stay, authorized.
    let g = admins()
        .command(admin(OWNER, approval(true)))
        .key(ALICE, "kA", KeyOpts::reusable().preauthorized())
        .registered("kA", 1, "n1")
        .registered("kA", 2, "n2")
        .when(admin(ALICE, revoke("kA")))
        .then_events(|e| {
            assert_eq!(e, [KeyRevoked { key_id: kid("kA") }.into()]);
        })
        .and();
    assert!(live_node(g.state(), "n1").authorized);
    assert!(live_node(g.state(), "n2").authorized);
}

#[test]
fn r11_deleting_a_node_is_how_it_is_deauthorized() {
    // DeleteNode writes NodeDeleted{reason: admin} and removes the node and its node key, so
    // the node key is free for a new registration.
    let g = admins()
        .key(ALICE, "kA", KeyOpts::reusable())
        .registered("kA", 1, "n1")
        .when(admin(BOB, delete("n1")))
        .then_events(|e| {
            assert_eq!(
                one::<NodeDeleted>(e),
                &NodeDeleted {
                    node_id: nid("n1"),
                    reason: DeleteReason::Admin
                }
            );
        })
        .and();
    assert!(node_in(g.state(), "n1").is_none());
    assert!(!g.state().node_keys.contains_key(&node_key(1)));
    g.clone()
        .when(admin(BOB, delete("n1")))
        .then_rejected_code("not_found");
}

// ---------------------------------------------------------------------------------------------
// R12 revoke twice
// ---------------------------------------------------------------------------------------------

#[test]
fn r12_revoking_twice_answers_not_found_the_second_time() {
    // The first revoke writes KeyRevoked; the second is NotFound, exactly as for an unknown id;
    // the revoked key stays in the state (revoked set) and cannot register.
    let g = admins()
        .key(ALICE, "kA", KeyOpts::reusable())
        .at(5)
        .command(admin(ALICE, revoke("kA")));
    let second = g.clone().when(admin(ALICE, revoke("kA"))).rejection();
    let unknown = admins().when(admin(ALICE, revoke("kA"))).rejection();
    assert_eq!(second, unknown);
    assert_eq!(second.code(), "not_found");
    assert_eq!(key_in(g.state(), "kA").revoked, Some(at(5)));
    g.when(register("kA", 1, "n1"))
        .then_rejected(Rejection::InvalidKey);
}

#[test]
fn r12_a_used_one_off_key_already_counts_as_revoked() {
    // R01 says a used one-off key counts as revoked, so revoking it answers NotFound like a
    // second revoke, and writes nothing.
    admins()
        .key(ALICE, "kA", KeyOpts::one_off())
        .registered("kA", 1, "n1")
        .when(admin(ALICE, revoke("kA")))
        .then_rejected_code("not_found");
}

// ---------------------------------------------------------------------------------------------
// R13 an expired key's nodes stay
// ---------------------------------------------------------------------------------------------

#[test]
fn r13_an_expired_keys_node_stays_authorized() {
    // When a key expires (here also recorded by the timer's KeyExpired), the node it registered
    // stays authorized with its own node-key expiry unchanged; only new registrations stop.
    let g = admins()
        .key(ALICE, "kA", KeyOpts::reusable().expiry_secs(60))
        .registered("kA", 1, "n1");
    let before = live_node(g.state(), "n1").clone();
    let g = g.at(61).event(
        TAILNET,
        KeyExpired {
            key_id: kid("kA"),
            expired_at: at(60),
        },
    );
    let after = live_node(g.state(), "n1");
    assert!(after.authorized);
    assert!(!after.expired);
    assert_eq!(after.expires, before.expires);
    assert_eq!(after.expires, Some(at(180 * DAY)));
    g.when(register("kA", 2, "n2"))
        .then_rejected(Rejection::InvalidKey);
}

// ---------------------------------------------------------------------------------------------
// R14 node-key expiry
// ---------------------------------------------------------------------------------------------

#[test]
fn r14_untagged_node_expires_devices_key_duration_days_after_registration() {
    // With the default 180 days, a node registered at T0+100 s expires at T0+100 s+180 d; after
    // the Owner sets 7 days, a node registered later expires 7 days after its registration.
    let g = admins()
        .key(ALICE, "kA", KeyOpts::reusable())
        .at(100)
        .when(register("kA", 1, "n1"))
        .then_events(|e| {
            let r = one::<NodeRegistered>(e);
            assert!(!r.key_expiry_disabled);
            assert_eq!(r.expires, Some(at(100 + 180 * DAY)));
        })
        .and()
        .command(admin(
            OWNER,
            AdminOp::ChangeSettings {
                devices_approval_on: None,
                devices_key_duration_days: Some(KeyDurationDays::new(7).expect("1..=180")),
                kept: Default::default(),
            },
        ));
    g.at(200)
        .when(register("kA", 2, "n2"))
        .then_events(|e| assert_eq!(one::<NodeRegistered>(e).expires, Some(at(200 + 7 * DAY))));
}

#[test]
fn r14_tagged_node_has_expiry_disabled() {
    // A tagged node's key never expires by default: disabled, no expiry.
    admins()
        .key(ALICE, "kT", KeyOpts::reusable().tags(&["tag:srv"]))
        .when(register("kT", 1, "n1"))
        .then_events(|e| {
            let r = one::<NodeRegistered>(e);
            assert!(r.key_expiry_disabled);
            assert_eq!(r.expires, None);
        });
}

#[test]
fn r14_disabling_then_reenabling_expiry_restores_the_original_expiry() {
    // Disabling writes NodeKeyExpirySet{disabled, expires: None}; re-enabling later restores
    // registration + 180 d, not re-enable time + 180 d; doing either twice writes nothing.
    let original = at(10 + 180 * DAY);
    admins()
        .key(ALICE, "kA", KeyOpts::reusable())
        .at(10)
        .registered("kA", 1, "n1")
        .at(1000)
        .when(admin(ALICE, set_key_expiry("n1", true)))
        .then_events(|e| {
            let s = one::<NodeKeyExpirySet>(e);
            assert!(s.key_expiry_disabled);
            assert_eq!(s.expires, None);
        })
        .and()
        .when(admin(ALICE, set_key_expiry("n1", true)))
        .then_no_events()
        .and()
        .at(5000)
        .when(admin(ALICE, set_key_expiry("n1", false)))
        .then_events(|e| {
            let s = one::<NodeKeyExpirySet>(e);
            assert!(!s.key_expiry_disabled);
            assert_eq!(s.expires, Some(original));
        })
        .and()
        .when(admin(ALICE, set_key_expiry("n1", false)))
        .then_no_events();
}

#[test]
fn r14_reenabling_restores_the_original_expiry_even_after_the_duration_changed() {
    // The original expiry is the one set at registration: after the Owner shortens
    // devicesKeyDurationDays to 7, disabling and re-enabling a node registered under 180 days
    // gives back registration + 180 d, the expiry it had and would still have had without the
    // toggle (a settings change applies to new authentications only).
    let original = at(10 + 180 * DAY);
    let g = admins()
        .key(ALICE, "kA", KeyOpts::reusable())
        .at(10)
        .registered("kA", 1, "n1")
        .command(admin(
            OWNER,
            AdminOp::ChangeSettings {
                devices_approval_on: None,
                devices_key_duration_days: Some(KeyDurationDays::new(7).expect("1..=180")),
                kept: Default::default(),
            },
        ));
    assert_eq!(live_node(g.state(), "n1").expires, Some(original));
    g.at(100)
        .command(admin(ALICE, set_key_expiry("n1", true)))
        .at(200)
        .when(admin(ALICE, set_key_expiry("n1", false)))
        .then_events(|e| assert_eq!(one::<NodeKeyExpirySet>(e).expires, Some(original)));
}

#[test]
fn r14_reenabling_a_tagged_nodes_expiry_counts_from_its_registration() {
    // A tagged node never had an expiry; re-enabling gives it registration + the tailnet's
    // duration (the expiry an untagged registration would have set), not now + duration.
    admins()
        .key(ALICE, "kT", KeyOpts::reusable().tags(&["tag:srv"]))
        .at(10)
        .registered("kT", 1, "n1")
        .at(1000)
        .when(admin(ALICE, set_key_expiry("n1", false)))
        .then_events(|e| {
            let s = one::<NodeKeyExpirySet>(e);
            assert!(!s.key_expiry_disabled);
            assert_eq!(s.expires, Some(at(10 + 180 * DAY)));
        });
}

#[test]
fn r14_expire_node_expires_it_now() {
    // ExpireNode writes NodeExpired{expiredAt: now}; the node is expired with that expiry;
    // expiring it again writes nothing; re-authenticating it gives a fresh expiry.
    let g = admins()
        .key(ALICE, "kA", KeyOpts::reusable())
        .registered("kA", 1, "n1")
        .at(500)
        .when(admin(ALICE, expire("n1")))
        .then_events(|e| {
            assert_eq!(
                one::<NodeExpired>(e),
                &NodeExpired {
                    node_id: nid("n1"),
                    expired_at: at(500)
                }
            );
        })
        .and();
    let n = live_node(g.state(), "n1");
    assert!(n.expired);
    assert_eq!(n.expires, Some(at(500)));
    let g = g
        .when(admin(ALICE, expire("n1")))
        .then_no_events()
        .and()
        .at(600)
        .when(register("kA", 1, "n2"))
        .then_types(&[E::NodeReauthenticated, E::KeyUsed])
        .and();
    let n = live_node(g.state(), "n1");
    assert!(!n.expired);
    assert_eq!(n.expires, Some(at(600 + 180 * DAY)));
}

// ---------------------------------------------------------------------------------------------
// R15 tags and key expiry
// ---------------------------------------------------------------------------------------------

#[test]
fn r15_set_tags_does_not_change_key_expiry() {
    // Tagging an untagged node keeps its expiry enabled and unchanged; untagging a tagged node
    // keeps its expiry disabled. SetTags writes only TagsChanged.
    let g = admins()
        .key(ALICE, "kA", KeyOpts::reusable())
        .key(ALICE, "kT", KeyOpts::reusable().tags(&["tag:srv"]))
        .registered("kA", 1, "n1")
        .registered("kT", 2, "n2");
    let before = live_node(g.state(), "n1").expires;
    let g = g
        .at(50)
        .when(admin(ALICE, set_tags("n1", &["tag:web"])))
        .then_events(|e| {
            assert_eq!(types(e), [E::TagsChanged]);
            let c = one::<TagsChanged>(e);
            assert!(c.previous_tags.is_empty());
            assert_eq!(tag_names(&c.tags), ["tag:web"]);
        })
        .and()
        .command(admin(ALICE, set_tags("n2", &[])));
    let n1 = live_node(g.state(), "n1");
    assert!(!n1.key_expiry_disabled);
    assert_eq!(n1.expires, before);
    let n2 = live_node(g.state(), "n2");
    assert!(n2.tags.is_empty());
    assert!(n2.key_expiry_disabled);
    assert_eq!(n2.expires, None);
    g.when(admin(ALICE, set_tags("n1", &["tag:web"])))
        .then_no_events();
}

#[test]
fn r15_reauthenticating_with_a_tagged_key_disables_key_expiry() {
    // An untagged node with expiry enabled, re-authenticated with a tagged key, is tagged with
    // expiry disabled.
    admins()
        .key(ALICE, "kA", KeyOpts::reusable())
        .key(ALICE, "kT", KeyOpts::reusable().tags(&["tag:srv"]))
        .registered("kA", 1, "n1")
        .when(register("kT", 1, "n2"))
        .then_events(|e| {
            let r = one::<NodeReauthenticated>(e);
            assert_eq!(r.node_id, nid("n1"));
            assert!(r.key_expiry_disabled);
            assert_eq!(r.expires, None);
            assert_eq!(tag_names(&r.tags), ["tag:srv"]);
        });
}

#[test]
fn r15_a_tagged_node_reauthenticating_keeps_expiry_disabled() {
    // A tagged node re-authenticating with its tagged key stays disabled, even if an admin had
    // re-enabled its expiry in between.
    admins()
        .key(ALICE, "kT", KeyOpts::reusable().tags(&["tag:srv"]))
        .registered("kT", 1, "n1")
        .at(100)
        .when(register("kT", 1, "n2"))
        .then_events(|e| {
            let r = one::<NodeReauthenticated>(e);
            assert!(r.key_expiry_disabled);
            assert_eq!(r.expires, None);
        })
        .and()
        .command(admin(ALICE, set_key_expiry("n1", false)))
        .at(200)
        .when(register("kT", 1, "n3"))
        .then_events(|e| {
            let r = one::<NodeReauthenticated>(e);
            assert!(r.key_expiry_disabled);
            assert_eq!(r.expires, None);
        });
}

#[test]
fn r15_reregistering_with_a_tagged_reusable_key_applies_the_keys_tags() {
    // A node whose tags an admin changed takes the key's tags again when it re-authenticates
    // with a tagged reusable key.
    let g = admins()
        .key(ALICE, "kT", KeyOpts::reusable().tags(&["tag:ci"]))
        .registered("kT", 1, "n1")
        .command(admin(ALICE, set_tags("n1", &["tag:other"])))
        .when(register("kT", 1, "n2"))
        .then_events(|e| assert_eq!(tag_names(&one::<NodeReauthenticated>(e).tags), ["tag:ci"]))
        .and();
    assert_eq!(tag_names(&live_node(g.state(), "n1").tags), ["tag:ci"]);
}

// ---------------------------------------------------------------------------------------------
// R16 node keys
// ---------------------------------------------------------------------------------------------

#[test]
fn r16_same_node_key_reauthenticates_the_same_node() {
    // Registering again with the same node key writes NodeReauthenticated + KeyUsed for the
    // same node id (the offered new id is not used); there is still one node.
    let g = admins()
        .key(ALICE, "kA", KeyOpts::reusable())
        .registered("kA", 1, "n1")
        .when(register("kA", 1, "n2"))
        .then_types(&[E::NodeReauthenticated, E::KeyUsed])
        .then_events(|e| {
            assert_eq!(one::<NodeReauthenticated>(e).node_id, nid("n1"));
            assert_eq!(one::<KeyUsed>(e).node_id, nid("n1"));
        })
        .and();
    assert_eq!(g.state().tailnets[&t1()].nodes.len(), 1);
    assert!(node_in(g.state(), "n2").is_none());
}

#[test]
fn r16_new_node_key_is_a_new_node() {
    // A different node key is a different node, even with the same key and host.
    admins()
        .key(ALICE, "kA", KeyOpts::reusable())
        .registered("kA", 1, "n1")
        .when(register("kA", 2, "n2"))
        .then_types(&[E::NodeRegistered, E::KeyUsed])
        .then_events(|e| assert_eq!(one::<NodeRegistered>(e).node_id, nid("n2")));
}

#[test]
fn r16_a_deleted_nodes_node_key_registers_a_new_node() {
    // After a node is deleted, its node key registers as a new node with a new id.
    admins()
        .key(ALICE, "kA", KeyOpts::reusable())
        .registered("kA", 1, "n1")
        .command(admin(ALICE, delete("n1")))
        .when(register("kA", 1, "n2"))
        .then_events(|e| assert_eq!(one::<NodeRegistered>(e).node_id, nid("n2")));
}

// ---------------------------------------------------------------------------------------------
// R17 node addresses
// ---------------------------------------------------------------------------------------------

fn v4(s: &str) -> std::net::Ipv4Addr {
    s.parse().expect("an IPv4 address")
}

fn v6(s: &str) -> std::net::Ipv6Addr {
    s.parse().expect("an IPv6 address")
}

/// The addresses the one `NodeRegistered` among `e` carries.
#[track_caller]
fn registered_addresses(e: &[authkeys_events::Event]) -> NodeAddresses {
    one::<NodeRegistered>(e)
        .addresses
        .expect("a new node gets addresses")
}

#[test]
fn r17_new_nodes_get_an_ipv4_and_an_ipv6_address_in_the_tailnet_ranges() {
    // The first nodes get 100.64.0.1, 100.64.0.2, … (100.64.0.0 is reserved), each with the
    // IPv6 address that embeds it under fd7a:115c:a1e0::/48; the state's node holds them.
    let g = admins()
        .key(ALICE, "kA", KeyOpts::reusable())
        .when(register("kA", 1, "n1"))
        .then_events(|e| {
            assert_eq!(
                registered_addresses(e),
                NodeAddresses {
                    ipv4: v4("100.64.0.1"),
                    ipv6: v6("fd7a:115c:a1e0::6440:1"),
                }
            );
        })
        .and()
        .when(register("kA", 2, "n2"))
        .then_events(|e| {
            assert_eq!(
                registered_addresses(e),
                NodeAddresses {
                    ipv4: v4("100.64.0.2"),
                    ipv6: v6("fd7a:115c:a1e0::6440:2"),
                }
            );
        })
        .and();
    let n1 = live_node(g.state(), "n1").addresses.expect("addresses");
    assert_eq!(n1.ipv4, v4("100.64.0.1"));
    assert_eq!(g.state().tailnets[&t1()].addresses.in_use(), 2);
}

#[test]
fn r17_reauthentication_keeps_the_nodes_addresses() {
    // Re-authenticating (same node key, R16), even with another key, changes no address, and
    // the next new node still gets a fresh one.
    let g = admins()
        .key(ALICE, "kA", KeyOpts::reusable())
        .key(BOB, "kB", KeyOpts::reusable().tags(&["tag:ci"]))
        .registered("kA", 1, "n1");
    let before = live_node(g.state(), "n1").addresses;
    let g = g
        .at(3600)
        .when(register("kB", 1, "n9"))
        .then_types(&[E::NodeReauthenticated, E::KeyUsed])
        .and();
    assert_eq!(live_node(g.state(), "n1").addresses, before);
    g.when(register("kA", 2, "n2")).then_events(|e| {
        assert_eq!(registered_addresses(e).ipv4, v4("100.64.0.2"));
    });
}

#[test]
fn r17_a_deleted_nodes_addresses_are_not_handed_out_for_90_days() {
    // A pool of three offsets holds two usable addresses. With both taken, a third node is
    // refused `AddressesExhausted` (code `conflict`, nothing written); after a deletion the
    // freed pair stays refused until 90 days after the deletion's time, then goes to the next
    // new node.
    let g = admins()
        .address_pool(3)
        .key(ALICE, "kA", KeyOpts::reusable())
        .registered("kA", 1, "n1")
        .registered("kA", 2, "n2");
    let n1 = live_node(g.state(), "n1").addresses;
    let refused = g
        .clone()
        .when(register("kA", 3, "n3"))
        .then_rejected(Rejection::AddressesExhausted)
        .then_rejected_code("conflict");
    assert!(node_in(&refused.state(), "n3").is_none());

    // A second key, still valid when the first has expired.
    let g = g
        .at(DAY)
        .command(admin(ALICE, delete("n1")))
        .at(2 * DAY)
        .key(ALICE, "kA2", KeyOpts::reusable());
    // A second before the 90 days end, the addresses are still held back.
    g.clone()
        .at(DAY + 90 * DAY - 1)
        .when(register("kA2", 3, "n3"))
        .then_rejected(Rejection::AddressesExhausted);
    // At 90 days after the deletion, they go to the next new node.
    let g = g
        .at(DAY + 90 * DAY)
        .when(register("kA2", 3, "n3"))
        .then_events(|e| assert_eq!(Some(registered_addresses(e)), n1))
        .and();
    assert_eq!(live_node(g.state(), "n3").addresses, n1);
    // And the pool is full again.
    g.when(register("kA2", 4, "n4"))
        .then_rejected(Rejection::AddressesExhausted);
}

#[test]
fn r17_a_node_key_registered_again_after_deletion_gets_other_addresses() {
    // Quarantine is per address, not per node key: the same machine registering again after
    // its node was deleted is a new node (R16) and does not get its old addresses back.
    let g = admins()
        .key(ALICE, "kA", KeyOpts::reusable())
        .registered("kA", 1, "n1");
    let old = live_node(g.state(), "n1").addresses;
    g.command(admin(ALICE, delete("n1")))
        .when(register("kA", 1, "n2"))
        .then_events(|e| {
            let new = registered_addresses(e);
            assert_ne!(Some(new), old);
            assert_eq!(new.ipv4, v4("100.64.0.2"));
        });
}

#[test]
fn r17_a_node_row_written_before_addresses_existed_still_loads() {
    // The machines view stores `state::Node` rows as JSON. A row written before R17 has no
    // `addresses`: it loads as `None` (as its node's events say), so old view files need no
    // rebuild; a row with addresses round-trips.
    let g = admins()
        .key(ALICE, "kA", KeyOpts::reusable())
        .registered("kA", 1, "n1");
    let node = live_node(g.state(), "n1").clone();
    let mut json = serde_json::to_value(&node).expect("serializes");
    let back: authkeys_domain::state::Node =
        serde_json::from_value(json.clone()).expect("round-trips");
    assert_eq!(back, node);
    json.as_object_mut()
        .expect("an object")
        .remove("addresses")
        .expect("a row has addresses");
    let old: authkeys_domain::state::Node = serde_json::from_value(json).expect("loads");
    assert_eq!(old.addresses, None);
}

#[test]
fn r17_addresses_are_unique_per_tailnet_not_across_tailnets() {
    // Two tailnets each hand out 100.64.0.1 first: the pools are separate.
    let g = admins()
        .key(ALICE, "kA", KeyOpts::reusable())
        .registered("kA", 1, "n1")
        .command(create_tailnet("T2", "other.example.com", "uOwner2"))
        .command(admin_in(
            "T2",
            "uOwner2",
            generate("kOther", &KeyOpts::reusable()),
        ));
    g.when(register("kOther", 2, "n2")).then_events(|e| {
        assert_eq!(registered_addresses(e).ipv4, v4("100.64.0.1"));
    });
}

// ---------------------------------------------------------------------------------------------
// Refusals write nothing
// ---------------------------------------------------------------------------------------------

#[test]
fn machine_names_stay_unique_when_many_nodes_share_a_host_name() {
    // Proves the `-N` suffix search: nodes registering with the same host name (CI runners) get
    // host, host-1, host-2, … and a new node after a deletion never takes a name in use.
    let mut g = admins().key(ALICE, "kA", KeyOpts::reusable());
    let mut names = Vec::new();
    for i in 0..5u64 {
        let mut cmd = register("kA", 100 + i, &format!("n{i}"));
        if let authkeys_domain::Command::Register { hostname, .. } = &mut cmd {
            *hostname = authkeys_events::Hostname::parse("Runner").expect("valid");
        }
        g = g.command(cmd);
        names.push(live_node(g.state(), &format!("n{i}")).name.clone());
    }
    assert_eq!(
        names,
        ["runner", "runner-1", "runner-2", "runner-3", "runner-4"]
    );
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(unique.len(), 5);
}

// ---------------------------------------------------------------------------------------------
// Timers: what fell due is re-checked when it fires (R02, R08, R13, R14)
// ---------------------------------------------------------------------------------------------

/// The command service's ephemeral inactivity timeout in these scenarios (R02).
const INACTIVITY: std::time::Duration = std::time::Duration::from_secs(2);

fn timer(due: authkeys_domain::Due) -> authkeys_domain::Command {
    authkeys_domain::Command::Timer {
        tailnet: t1(),
        due,
        ephemeral_inactivity: INACTIVITY,
    }
}

fn key_expiry(key: &str, expires: Timestamp) -> authkeys_domain::Command {
    timer(authkeys_domain::Due::KeyExpiry {
        key_id: kid(key),
        expires,
    })
}

fn node_expiry(node: &str, expires: Timestamp) -> authkeys_domain::Command {
    timer(authkeys_domain::Due::NodeKeyExpiry {
        node_id: nid(node),
        expires,
    })
}

fn inactivity(node: &str, disconnected_at: Timestamp, due: Timestamp) -> authkeys_domain::Command {
    timer(authkeys_domain::Due::EphemeralInactivity {
        node_id: nid(node),
        disconnected_at,
        due,
    })
}

#[test]
fn r08_key_expiry_timer_records_key_expired_once_at_its_time_and_never_early() {
    // Early (clocks differ): refused until due, nothing written. At or after `expires`:
    // KeyExpired{expiredAt: expires}; firing again writes nothing. R13: the node stays.
    let g = admins()
        .key(ALICE, "kA", KeyOpts::reusable().expiry_secs(60))
        .registered("kA", 1, "n1");
    g.clone()
        .at(59)
        .when(key_expiry("kA", at(60)))
        .then_rejected(Rejection::NotDue(at(60)));
    let then = g.at(61).when(key_expiry("kA", at(60))).then_events(|e| {
        let x = one::<KeyExpired>(e);
        assert_eq!(x.expired_at, at(60));
    });
    let node = live_node(&then.state(), "n1").clone();
    assert!(node.authorized && !node.expired);
    then.and().when(key_expiry("kA", at(60))).then_no_events();
}

#[test]
fn r08_key_expiry_timer_is_cancelled_by_revoke_and_by_a_one_off_use() {
    // A revoked key and a spent one-off key are already invalid (R12): no KeyExpired.
    admins()
        .key(ALICE, "kR", KeyOpts::reusable().expiry_secs(60))
        .command(admin(ALICE, revoke("kR")))
        .at(61)
        .when(key_expiry("kR", at(60)))
        .then_no_events();
    admins()
        .key(ALICE, "kO", KeyOpts::one_off().expiry_secs(60))
        .registered("kO", 1, "n1")
        .at(61)
        .when(key_expiry("kO", at(60)))
        .then_no_events();
}

#[test]
fn r14_node_expiry_timer_records_node_expired_only_while_the_schedule_holds() {
    // Due as scheduled → NodeExpired{expiredAt: expires}; renewed by re-authentication,
    // disabled, or deleted → nothing (the later event reschedules or cancels).
    let exp = at(180 * DAY);
    let g = admins()
        .key(ALICE, "kA", KeyOpts::reusable())
        .registered("kA", 1, "n1");
    g.clone()
        .at(180 * DAY - 1)
        .when(node_expiry("n1", exp))
        .then_rejected(Rejection::NotDue(exp));
    g.clone()
        .at(180 * DAY + 5)
        .when(node_expiry("n1", exp))
        .then_events(|e| assert_eq!(one::<NodeExpired>(e).expired_at, exp));
    // Re-authenticated at T0+100: expiry moved to 100 s + 180 d.
    g.clone()
        .at(100)
        .command(register("kA", 1, "nUnused"))
        .at(180 * DAY + 5)
        .when(node_expiry("n1", exp))
        .then_no_events();
    g.clone()
        .command(admin(ALICE, set_key_expiry("n1", true)))
        .at(180 * DAY + 5)
        .when(node_expiry("n1", exp))
        .then_no_events();
    g.command(admin(ALICE, AdminOp::DeleteNode { node_id: nid("n1") }))
        .at(180 * DAY + 5)
        .when(node_expiry("n1", exp))
        .then_no_events();
}

#[test]
fn r02_inactivity_timer_deletes_an_ephemeral_node_unless_it_reported_since() {
    let disconnected = authkeys_domain::Command::NodeDisconnected {
        node_key: node_key(1),
    };
    let connected = authkeys_domain::Command::NodeConnected {
        node_key: node_key(1),
    };
    let g = admins()
        .key(ALICE, "kEph", KeyOpts::reusable().ephemeral())
        .registered("kEph", 1, "n1")
        .at(60)
        .command(disconnected.clone());
    g.clone()
        .at(61)
        .when(inactivity("n1", at(60), at(62)))
        .then_rejected(Rejection::NotDue(at(62)));
    let gone = g
        .clone()
        .at(62)
        .when(inactivity("n1", at(60), at(62)))
        .then_events(|e| {
            assert_eq!(
                one::<NodeDeleted>(e).reason,
                DeleteReason::EphemeralInactive
            );
        });
    assert!(node_in(&gone.state(), "n1").is_none());
    // Reconnected (and even disconnected again) since: this timer is stale.
    g.clone()
        .at(61)
        .command(connected)
        .at(62)
        .when(inactivity("n1", at(60), at(62)))
        .then_no_events();
    // A node that is not ephemeral is never removed by the timer.
    admins()
        .key(ALICE, "kA", KeyOpts::reusable())
        .registered("kA", 1, "n1")
        .at(60)
        .command(disconnected)
        .at(100)
        .when(inactivity("n1", at(60), at(62)))
        .then_no_events();
}

#[test]
fn finding_04_ephemeral_removal_cannot_be_forced() {
    // Security review, finding 4: a `node.disconnected` (forged or not) followed by a
    // `timer.fire` naming `due = disconnectedAt` must not delete an ephemeral node at once. The
    // deadline is the node's lastSeen + the command's own inactivity timeout, whatever `due` the
    // request names: early is `not_due` (nothing written) until then; a later `due` is honoured.
    let thirty_min = std::time::Duration::from_secs(30 * 60);
    let fire = |due: Timestamp| authkeys_domain::Command::Timer {
        tailnet: t1(),
        due: authkeys_domain::Due::EphemeralInactivity {
            node_id: nid("n1"),
            disconnected_at: at(60),
            due,
        },
        ephemeral_inactivity: thirty_min,
    };
    let g = admins()
        .key(ALICE, "kEph", KeyOpts::reusable().ephemeral())
        .registered("kEph", 1, "n1")
        .at(60)
        .command(authkeys_domain::Command::NodeDisconnected {
            node_key: node_key(1),
        });
    let inactive_at = at(60 + 30 * 60);
    // The attack: due = disconnectedAt, fired at once, and again a minute before the deadline.
    let refused = g
        .clone()
        .at(60)
        .when(fire(at(60)))
        .then_rejected(Rejection::NotDue(inactive_at));
    assert!(node_in(&refused.state(), "n1").is_some());
    g.clone()
        .at(60 + 29 * 60)
        .when(fire(at(61)))
        .then_rejected(Rejection::NotDue(inactive_at));
    // At lastSeen + timeout it is removed, as R02 says.
    let gone = g
        .clone()
        .at(60 + 30 * 60)
        .when(fire(at(60)))
        .then_events(|e| {
            assert_eq!(
                one::<NodeDeleted>(e).reason,
                DeleteReason::EphemeralInactive
            );
        });
    assert!(node_in(&gone.state(), "n1").is_none());
    // Timers configured with a longer timeout than the command service: their later `due` wins.
    g.at(60 + 31 * 60)
        .when(fire(at(60 + 40 * 60)))
        .then_rejected(Rejection::NotDue(at(60 + 40 * 60)));
}

/// An OAuth client `client` (principal `u` + its id) with `scopes` and `tags`.
fn create_client(client: &str, scopes: &[Scope], t: &[&str]) -> AdminOp {
    AdminOp::CreateClient {
        client_id: kid(client),
        principal: uid(&format!("u{client}")),
        secret_hash: Some(Hash([7; 32])),
        federated: None,
        scopes: scopes.to_vec(),
        tags: tags(t),
        description: authkeys_events::Description::parse("ci").expect("valid"),
    }
}

/// The gateway asks an access token for `client` (narrowed to `scopes`, if given).
fn access_token(client: &str, n: u8, scopes: Option<Vec<Scope>>) -> authkeys_domain::Command {
    authkeys_domain::Command::IssueAccessToken {
        tailnet: tid(TAILNET),
        client_id: kid(client),
        token: authkeys_domain::NewToken {
            token_id: TokenId::parse(format!("tAccess{n}")).expect("valid token id"),
            secret_hash: Hash([n; 32]),
            expires: at(3600),
        },
        scopes,
    }
}

#[test]
fn r19_key_managers_create_clients_with_scopes_and_tags_others_may_not() {
    // Key managers create and delete clients; others get Forbidden. A client with auth_keys
    // needs tags; a client needs a scope.
    let g = admins().user("uMem", Role::Member);
    g.clone()
        .when(admin(
            "uMem",
            create_client("kC", &[Scope::AuthKeys], &["tag:ci"]),
        ))
        .then_rejected_code("forbidden");
    g.clone()
        .when(admin(ALICE, create_client("kC", &[Scope::AuthKeys], &[])))
        .then_rejected_code("bad_request");
    g.clone()
        .when(admin(ALICE, create_client("kC", &[], &["tag:ci"])))
        .then_rejected_code("bad_request");
    g.clone()
        .when(admin(
            ALICE,
            create_client("kC", &[Scope::AuthKeys], &["tag:ci"]),
        ))
        .then_types(&[E::OAuthClientCreated])
        .and()
        .when(admin(
            ALICE,
            AdminOp::DeleteClient {
                client_id: kid("kC"),
            },
        ))
        .then_types(&[E::OAuthClientDeleted])
        .and()
        .when(admin(
            ALICE,
            AdminOp::DeleteClient {
                client_id: kid("kC"),
            },
        ))
        .then_rejected_code("not_found");
}

#[test]
fn r19_access_tokens_carry_the_clients_scopes_or_fewer_and_die_with_the_client() {
    let g = admins()
        .when(admin(
            ALICE,
            create_client(
                "kC",
                &[Scope::AuthKeys, Scope::DevicesCoreRead],
                &["tag:ci"],
            ),
        ))
        .then_types(&[E::OAuthClientCreated])
        .and();
    g.clone()
        .when(access_token("kC", 1, None))
        .then_types(&[E::AccessTokenIssued]);
    g.clone()
        .when(access_token("kC", 2, Some(vec![Scope::AuthKeysRead])))
        .then_types(&[E::AccessTokenIssued]);
    g.clone()
        .when(access_token("kC", 3, Some(vec![Scope::DevicesCore])))
        .then_rejected_code("forbidden");
    g.clone()
        .when(access_token("kNone", 4, None))
        .then_rejected_code("forbidden");
    let after = g
        .when(access_token("kC", 5, None))
        .then_types(&[E::AccessTokenIssued])
        .and()
        .when(admin(
            ALICE,
            AdminOp::DeleteClient {
                client_id: kid("kC"),
            },
        ))
        .then_types(&[E::OAuthClientDeleted])
        .and();
    let t = after
        .state()
        .tailnet(&tid(TAILNET))
        .expect("tailnet")
        .clone();
    let token = t
        .tokens
        .get(&TokenId::parse("tAccess5").expect("id"))
        .expect("token");
    assert!(
        token.revoked,
        "deleting the client revokes its access tokens (R19)"
    );
    after
        .when(access_token("kC", 6, None))
        .then_rejected_code("forbidden");
}

#[test]
fn r19_a_clients_keys_carry_its_tags_and_belong_to_it() {
    // With auth_keys, a client generates keys whose tags are each one of its own; the key is
    // its principal's, not a user's. Untagged keys, foreign tags, users and settings are
    // refused; devices need devices:core.
    let g = admins()
        .when(admin(
            ALICE,
            create_client("kC", &[Scope::AuthKeys], &["tag:ci", "tag:web"]),
        ))
        .then_types(&[E::OAuthClientCreated])
        .and();
    let principal = "ukC";
    g.clone()
        .when(admin(
            principal,
            generate("kK", &KeyOpts::one_off().tags(&["tag:ci"])),
        ))
        .then_events(|e| assert_eq!(one::<KeyGenerated>(e).user_id, uid(principal)))
        .and()
        .when(admin(principal, revoke("kK")))
        .then_types(&[E::KeyRevoked]);
    for opts in [
        KeyOpts::one_off(),
        KeyOpts::one_off().tags(&["tag:ci", "tag:db"]),
    ] {
        g.clone()
            .when(admin(principal, generate("kK", &opts)))
            .then_rejected_code("forbidden");
    }
    for op in [approval(true), delete("nX"), remove_user(BOB)] {
        g.clone()
            .when(admin(principal, op))
            .then_rejected_code("forbidden");
    }
    let g = g
        .when(admin(
            ALICE,
            AdminOp::DeleteClient {
                client_id: kid("kC"),
            },
        ))
        .then_types(&[E::OAuthClientDeleted])
        .and();
    g.when(admin(
        principal,
        generate("kK", &KeyOpts::one_off().tags(&["tag:ci"])),
    ))
    .then_rejected_code("forbidden");
}
