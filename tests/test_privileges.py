"""Roles and what each may do: the dispatcher claims and records and nothing
else (no signing oracle), emitting and tracking are granted, and a
superuser-only setting cannot be forged by a placeholder."""

import psycopg
import pytest
from standardwebhooks.webhooks import Webhook

from conftest import SECRET, dsn, q, q1


def role(db, name):
    db.execute(f"DO $$ BEGIN CREATE ROLE {name} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")


def as_role(dbname, name):
    return psycopg.connect(dsn(dbname).replace("postgres@", f"{name}@"), autocommit=True)


def test_the_dispatcher_role_cannot_emit_track_or_change_endpoints(db, dbname):
    role(db, "webhookd_only")
    db.execute("SELECT webhook.grant_dispatcher('webhookd_only')")
    ep = q1(db, "SELECT webhook.create_endpoint('https://example.com/x', '{orders.*}', %s)", SECRET)
    with as_role(dbname, "webhookd_only") as d:
        forbidden = [
            # The signing oracle: an emitted forgery would come back signed.
            "SELECT webhook.emit('orders.insert', '{\"total\": 0.01}')",
            "SELECT webhook.send_test(1)",
            "SELECT webhook.create_endpoint('https://attacker.example/x')",
            f"SELECT webhook.rotate_secret({ep})",
            f"SELECT webhook.disable_endpoint({ep})",
            f"UPDATE webhook.endpoint SET url = 'https://attacker.example/x' WHERE id = {ep}",
            "INSERT INTO webhook.event_log (event_type, body) VALUES ('orders.insert', '{}')",
            "SELECT webhook.grant_emitter('webhookd_only')",
        ]
        for sql in forbidden:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                d.execute(sql)
        # A capture trigger on a table of its own (a temp table needs no
        # grant) would forge events the same way.
        d.execute("CREATE TEMP TABLE forged (id int PRIMARY KEY, total numeric)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            d.execute(
                "CREATE TRIGGER f AFTER INSERT ON forged FOR EACH ROW "
                "EXECUTE FUNCTION webhook._capture_row('orders.insert', '1', '')"
            )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            d.execute("SELECT webhook.track('forged')")
        # What it is for still works.
        assert q(d, "SELECT * FROM webhook.claim()") == []
        assert q1(d, "SELECT webhook.route()") == 0
    assert q1(db, "SELECT count(*) FROM webhook.event_log") == 0


def test_emitting_is_granted_explicitly(db, dbname):
    role(db, "loyalty_app")
    db.execute("SELECT webhook.create_endpoint('https://example.com/x', '{loyalty.*}', %s)", (SECRET,))
    with as_role(dbname, "loyalty_app") as a:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            a.execute("SELECT webhook.emit('loyalty.points_earned', '{\"points\": 25}')")
    db.execute("SELECT webhook.grant_emitter('loyalty_app')")
    with as_role(dbname, "loyalty_app") as a:
        eid = q1(a, "SELECT webhook.emit('loyalty.points_earned', '{\"points\": 25}')")
        # Emitting gives no access to anything else.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            a.execute("SELECT * FROM webhook.events")
    (body, sig, ts) = q(
        db, "SELECT body, signature, signed_at FROM webhook.claim() WHERE event_id = %s", eid
    )[0]
    Webhook(SECRET).verify(body, {"webhook-id": str(eid), "webhook-timestamp": str(ts), "webhook-signature": sig})


def test_a_placeholder_cannot_turn_on_allow_http_for_a_non_superuser(db, dbname):
    # The test databases allow http:// for every session; this one must not.
    db.execute(f"ALTER DATABASE {dbname} RESET webhook.allow_http")
    role(db, "endpoint_admin")
    db.execute("SELECT webhook.grant_manager('endpoint_admin')")
    with as_role(dbname, "endpoint_admin") as m:
        # A fresh session: the library is not loaded, so this is a placeholder.
        m.execute("SET webhook.allow_http = on")
        with pytest.raises(psycopg.errors.InvalidParameterValue) as e:
            m.execute("SELECT webhook.create_endpoint('http://internal.example/hook')")
        assert "https" in e.value.diag.message_primary
        assert q1(m, "SHOW webhook.allow_http") == "off"
        # The manager role can do its job over https.
        ep = q1(m, "SELECT webhook.create_endpoint('https://crm.example/hook')")
        assert q1(m, "SELECT webhook.endpoint_secret(%s)", ep).startswith("whsec_")
        m.execute("SELECT webhook.send_test(%s)", (ep,))
        m.execute("SELECT webhook.delete_endpoint(%s)", (ep,))
    assert q1(db, "SELECT count(*) FROM webhook.endpoint WHERE starts_with(url, 'http:')") == 0
    # A superuser still may.
    db.execute("SET webhook.allow_http = on")
    db.execute("SELECT webhook.create_endpoint('http://internal.example/hook')")
