"""Retry: an endpoint's own retry schedule and maximum age
(create_endpoint/alter_endpoint retry_schedule, retry_max_age), honoured by
webhookd instead of its --retry-schedule."""

import psycopg
import pytest

from support.cluster import SECRET, q, q1, wait_for

SLOW = ["--retry-schedule", "1h", "--retry-jitter", "0", "--poll-interval", "100ms", "--breaker-threshold", "1000"]


def test_an_endpoint_s_own_schedule_replaces_webhookd_s(db, receiver, webhookd):
    r = receiver(lambda n, req: (500, {}, b"", 0))
    own = q1(db, "SELECT webhook.create_endpoint(%s, '{a.*}', %s, retry_schedule => '{200ms,200ms}')", r.url, SECRET)
    none = q1(db, "SELECT webhook.create_endpoint(%s, '{b.*}', %s, retry_schedule => '{}')", r.url, SECRET)
    default = q1(db, "SELECT webhook.create_endpoint(%s, '{c.*}', %s)", r.url, SECRET)
    webhookd(*SLOW)
    for t in "abc":
        db.execute("SELECT webhook.emit(%s, '{}')", (f"{t}.x",))
    wait_for(lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status = 'dead'") == 2, 20,
             what="the two endpoints with their own schedules to give up")
    rows = dict((e, (s, a)) for e, s, a in q(db, "SELECT endpoint_id, status, attempts FROM webhook.deliveries"))
    assert rows[own] == ("dead", 3)
    assert rows[none] == ("dead", 1)
    # webhookd's own schedule: the next attempt in an hour.
    assert rows[default] == ("pending", 1)
    assert q1(db, "SELECT next_attempt_at > now() + interval '50 minutes' FROM webhook.deliveries "
                  "WHERE endpoint_id = %s", default)


def test_no_retry_is_scheduled_past_the_endpoint_s_maximum_age(db, receiver, webhookd):
    r = receiver(lambda n, req: (503, {}, b"", 0))
    eid = q1(db, "SELECT webhook.create_endpoint(%s, '{a.*}', %s, retry_schedule => %s, retry_max_age => '1 second')",
             r.url, SECRET, ["300 ms"] * 30)
    webhookd(*SLOW)
    db.execute("SELECT webhook.emit('a.x', '{}')")
    wait_for(lambda: q1(db, "SELECT status FROM webhook.deliveries") == "dead", 20, what="the delivery to die of age")
    attempts, age = q(db, "SELECT attempts, extract(epoch FROM completed_at - created_at) FROM webhook.deliveries")[0]
    assert 2 <= attempts <= 5, attempts
    assert age < 1.5, age
    assert q1(db, "SELECT retry_max_age FROM webhook.endpoint WHERE id = %s", eid) is not None


def test_alter_endpoint_sets_and_resets_the_retry_policy(db):
    eid = q1(db, "SELECT webhook.create_endpoint('https://example.com/a')")
    assert q(db, "SELECT retry_schedule, retry_max_age FROM webhook.endpoint") == [(None, None)]
    db.execute("SELECT webhook.alter_endpoint(%s, retry_schedule => '{1s,1min}', retry_max_age => '1 hour')", (eid,))
    sched, age = q(db, "SELECT retry_schedule::text, retry_max_age::text FROM webhook.endpoint")[0]
    assert (sched, age) == ('{00:00:01,00:01:00}', "01:00:00")
    db.execute("SELECT webhook.alter_endpoint(%s, description => 'kept')", (eid,))
    assert q1(db, "SELECT retry_schedule IS NOT NULL FROM webhook.endpoint")
    db.execute("SELECT webhook.alter_endpoint(%s, default_retry_schedule => true, retry_max_age => '0')", (eid,))
    assert q(db, "SELECT retry_schedule, retry_max_age FROM webhook.endpoint") == [(None, None)]


@pytest.mark.parametrize("args", [
    "retry_schedule => '{0 seconds}'",
    "retry_schedule => '{31 days}'",
    "retry_schedule => ARRAY[NULL::interval]",
    "retry_schedule => array_fill('1s'::interval, ARRAY[101])",
    "retry_max_age => '-1 hour'",
    "retry_max_age => '100 days'",
])
def test_bad_retry_policies_are_refused(db, args):
    with pytest.raises(psycopg.Error) as err:
        db.execute(f"SELECT webhook.create_endpoint('https://example.com/a', {args})")
    assert err.value.sqlstate == "22023" and err.value.diag.message_hint
    eid = q1(db, "SELECT webhook.create_endpoint('https://example.com/b')")
    with pytest.raises(psycopg.Error) as err:
        db.execute(f"SELECT webhook.alter_endpoint({eid}, {args.replace('0 seconds', '1 ms')})")
    assert err.value.sqlstate == "22023"
    with pytest.raises(psycopg.Error) as err:
        db.execute(f"SELECT webhook.alter_endpoint({eid}, retry_schedule => '{{1s}}', default_retry_schedule => true)")
    assert err.value.sqlstate == "22023"
