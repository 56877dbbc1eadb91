"""The PyPI `tailscale` client (1.0.0) against a running `authkeys serve`, as its users call it.

Run by `conformance.rs` (`pypi_client_works_unchanged`) with the gateway's port, the Owner's
token, the two device ids the test registered (one untagged, one tagged) and a Member's user id. The client is
unchanged: only its base URL is pointed at the loopback gateway, by the HTTP session it is given
(the library takes a session; its base URL `https://api.tailscale.com/api/v2/` is fixed). Every
check that fails exits non-zero with a message naming it.
"""

import asyncio
import datetime
import json
import sys

from aiohttp import ClientSession
from yarl import URL

from tailscale import Tailscale
from tailscale.exceptions import TailscaleError, TailscaleNotFoundError


class Loopback:
    """An aiohttp session that sends the client's requests to the gateway on loopback."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.session = ClientSession()
        self.requests: list[str] = []

    def request(self, method: str, url: URL, **kwargs):
        url = URL(url)
        if url.host != "api.tailscale.com":
            raise AssertionError(f"the client asked another host: {url}")
        self.requests.append(f"{method} {url.path_qs}")
        local = url.with_scheme("http").with_host("127.0.0.1").with_port(self.port)
        return self.session.request(method, local, **kwargs)

    async def close(self) -> None:
        await self.session.close()


def check(ok: bool, what: str) -> None:
    if not ok:
        raise AssertionError(what)


async def main(port: int, token: str, plain_id: str, tagged_id: str, member_id: str) -> None:
    session = Loopback(port)
    ts = Tailscale(tailnet="-", api_key=token, session=session)
    try:
        # Keys: create (the client's own default expiry, 1 day), list, get, delete.
        key = await ts.create_key(
            description="pypi client",
            reusable=True,
            preauthorized=True,
            tags=["tag:pypi"],
        )
        check(key.key.startswith("tskey-auth-"), f"create_key secret: {key!r}")
        check(key.expiry_seconds == 86400, f"create_key expiry: {key.expiry_seconds}")
        check(key.capabilities.devices.create.tags == ["tag:pypi"], "create_key tags")
        keys = await ts.keys()
        check(key.key_id in [k.key_id for k in keys], "keys() lists the new key")
        got = await ts.key(key.key_id)
        check(got.key == "" and got.description == "pypi client", f"key(): {got!r}")
        await ts.delete_key(key.key_id)
        try:
            await ts.delete_key(key.key_id)
            raise AssertionError("deleting twice must be 404 (R12)")
        except TailscaleNotFoundError:
            pass

        # Devices: the list with all fields, one device, and every admin operation.
        devices = await ts.devices()
        check(set(devices) >= {plain_id, tagged_id}, f"devices(): {sorted(devices)}")
        plain = devices[plain_id]
        check(plain.name.startswith("plain.") and plain.hostname == "plain", f"name: {plain.name}")
        check(len(plain.addresses) == 2, f"addresses: {plain.addresses}")
        check(plain.addresses[0].startswith("100."), f"IPv4 first: {plain.addresses}")
        check(plain.addresses[1].startswith("fd7a:115c:a1e0:"), f"IPv6: {plain.addresses}")
        check(plain.client_connectivity is not None, "fields=all: clientConnectivity")
        check(plain.last_seen is None, "never connected: lastSeen omitted")
        tagged = await ts.device(tagged_id)
        check(tagged.tags == ["tag:pypi-node"], f"device() tags: {tagged.tags}")
        check(tagged.key_expiry_disabled is True, "tagged: key expiry disabled (R05)")
        await ts.authorize_device(plain_id, authorized=True)
        await ts.set_device_tags(plain_id, tags=["tag:web"])
        await ts.set_device_key_expiry(plain_id, key_expiry_disabled=False)
        await ts.expire_device_key(plain_id)
        after = await ts.device(plain_id)
        check(after.tags == ["tag:web"] and after.authorized, f"after the ops: {after!r}")
        now = datetime.datetime.now(datetime.UTC)
        check(after.expires is not None and after.expires <= now, "expired now")
        await ts.delete_device(plain_id)
        try:
            await ts.device(plain_id)
            raise AssertionError("a deleted device must be 404")
        except TailscaleNotFoundError:
            pass

        # Settings: every field the client sends is accepted, stored and returned.
        await ts.update_tailnet_settings(
            devices_approval_on=True,
            devices_auto_updates_on=True,
            devices_key_duration_days=30,
            users_approval_on=True,
            users_role_allowed_to_join_external_tailnets="admin",
            network_flow_logging_on=True,
            posture_identity_collection_on=True,
            https_enabled=True,
            route_selection="regional-routing-failover",
            acls_externally_managed_on=True,
            acls_external_link="https://git.example.com/acls",
        )
        s = await ts.tailnet_settings()
        check(
            s.devices_approval_on
            and s.devices_auto_updates_on
            and s.devices_key_duration_days == 30
            and s.users_approval_on
            and s.users_role_allowed_to_join_external_tailnets == "admin"
            and s.network_flow_logging_on
            and s.posture_identity_collection_on
            and s.https_enabled
            and s.route_selection == "regional-routing-failover"
            and s.regional_routing_on is False
            and s.acls_externally_managed_on
            and s.acls_external_link == "https://git.example.com/acls",
            f"settings kept: {s!r}",
        )
        try:
            await ts.update_tailnet_settings(regional_routing_on=True, route_selection="magicroute")
            raise AssertionError("regionalRoutingOn with routeSelection must be refused")
        except TailscaleError:
            pass

        # Users: the list (with its filters) and one user.
        users = await ts.users()
        logins = sorted(u.login_name for u in users)
        check(logins == ["m@example.com", "o@example.com"], f"users(): {users!r}")
        owner = next(u for u in users if u.role == "owner")
        check(owner.role == "owner" and owner.status == "active", f"owner: {owner!r}")
        check(owner.user_type == "member" and owner.display_name, f"owner: {owner!r}")
        check(owner.device_count == 0, f"deviceCount (the tagged device is the tag's): {owner!r}")
        check(await ts.users(role="admin") == [], "users(role=admin)")
        check(await ts.users(user_type="shared") == [], "users(type=shared)")
        one = await ts.user(owner.user_id)
        check(one.login_name == "o@example.com", f"user(): {one!r}")

        # The user lifecycle (R18, R21): role, suspend, restore, delete.
        await ts.set_user_role(member_id, role="admin")
        check((await ts.user(member_id)).role == "admin", "set_user_role")
        await ts.suspend_user(member_id)
        check((await ts.user(member_id)).status == "suspended", "suspend_user")
        await ts.restore_user(member_id)
        check((await ts.user(member_id)).status == "active", "restore_user")
        try:
            await ts.set_user_role(owner.user_id, role="member")
            raise AssertionError("the Owner keeps their role until they transfer ownership")
        except TailscaleError:
            pass
        await ts.delete_user(member_id)
        check(member_id not in [u.user_id for u in await ts.users()], "delete_user")
        try:
            await ts.user(member_id)
            raise AssertionError("a removed user must be 404")
        except TailscaleNotFoundError:
            pass

        # The configuration audit log, with an event filter.
        start = now - datetime.timedelta(hours=1)
        end = now + datetime.timedelta(hours=1)
        logs = await ts.configuration_audit_logs(start=start, end=end)
        check(len(logs) > 5, f"audit logs: {len(logs)}")
        deleted = await ts.configuration_audit_logs(start=start, end=end, events=["USER.DELETE"])
        check(len(deleted) == 1 and deleted[0].target.target_id == member_id, f"{deleted!r}")
        # OAuth (R19): the Owner creates a client; the client, as its users configure it
        # (oauth_client_id, oauth_client_secret), mints a tagged key.
        client = await ts.create_key(
            key_type="client", scopes=["auth_keys", "devices:core:read"], tags=["tag:pypi"]
        )
        check(client.key.startswith("tskey-client-"), f"create_key(client): {client!r}")
        check(client.key_type == "client" and client.scopes == ["auth_keys", "devices:core:read"],
              f"client: {client!r}")
        oauth = Tailscale(
            tailnet="-",
            oauth_client_id=client.key_id,
            oauth_client_secret=client.key,
            session=session,
        )
        tagged_key = await oauth.create_key(reusable=True, tags=["tag:pypi"])
        check(tagged_key.key.startswith("tskey-auth-"), f"a key minted by the client: {tagged_key!r}")
        check(tagged_key.capabilities.devices.create.tags == ["tag:pypi"], "its tags")
        check(tagged_key.key_id in [k.key_id for k in await oauth.keys()], "the client lists it")
        try:
            await oauth.tailnet_settings()
            raise AssertionError("an OAuth client without a settings scope reads no settings")
        except TailscaleError:
            pass
        await ts.delete_key(client.key_id)
        try:
            await oauth.keys()
            raise AssertionError("a deleted client's token must be refused")
        except TailscaleError:
            pass
        print(json.dumps({"requests": session.requests, "auditRecords": len(logs)}))
    finally:
        await session.close()


if __name__ == "__main__":
    try:
        asyncio.run(main(int(sys.argv[1]), *sys.argv[2:6]))
    except AssertionError as e:
        print(f"check failed: {e}", file=sys.stderr)
        sys.exit(1)
