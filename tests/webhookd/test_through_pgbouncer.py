"""webhookd through PgBouncer, as shops run it: in session mode, and in
transaction mode (where a session's prepared statements, settings and
LISTEN do not outlive a transaction), with the application writing
through the same pool. Every event is delivered, every outcome recorded,
and duplicates stay bounded by what was in flight."""

import threading
import time

import psycopg
import pytest

from support.cluster import SECRET, q1, wait_for


def setup(db, url):
    db.execute("CREATE TABLE orders (id bigserial PRIMARY KEY, total numeric)")
    db.execute("SELECT webhook.track('orders')")
    db.execute("SELECT webhook.create_endpoint(%s, '{*}', %s)", (url, SECRET))


@pytest.mark.parametrize("mode, prepared", [("session", 0), ("transaction", 100), ("transaction", 0)])
def test_every_event_is_delivered_and_recorded_through_pgbouncer(db, dbname, receiver, webhookd, pgbouncer,
                                                                 mode, prepared):
    bouncer = pgbouncer(mode, settings={"max_prepared_statements": str(prepared), "default_pool_size": "4"})
    r = receiver()
    setup(db, r.url)
    w = webhookd("--poll-interval", "200ms", "--retry-schedule", "200ms", "--retry-jitter", "0",
                 env={"DATABASE_URL": bouncer.dsn(dbname)})

    def app(n):
        # An application behind a pooler without prepared statements (as
        # PgBouncer before 1.21) must not prepare either.
        with psycopg.connect(bouncer.dsn(dbname), autocommit=True, prepare_threshold=None if not prepared else 5) as c:
            for i in range(n):
                c.execute("INSERT INTO orders (total) VALUES (%s)", (i,))

    writers = [threading.Thread(target=app, args=(100,)) for _ in range(3)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    wait_for(lambda: q1(db, "SELECT count(*) FROM webhook.deliveries WHERE status = 'succeeded'") == 300, 90,
             what=f"300 deliveries recorded as succeeded ({r.count()} requests so far)\n{w.output()[-3000:]}")
    assert q1(db, "SELECT count(*) FROM webhook.attempts") == 300
    assert len(set(r.ids())) == 300
    assert r.count() <= 300 + 20, f"{r.count()} requests for 300 events"
    # LISTEN "works" through a transaction pool and wakes nobody: said, once
    # (the check waits 5 s for its own notification).
    said = "a notification sent from another session did not arrive"
    if mode == "transaction":
        wait_for(lambda: said in w.output(), 20, what="webhookd to say LISTEN wakes nobody")
    else:
        time.sleep(6)
    log = w.output()
    assert (said in log) == (mode == "transaction"), log[-3000:]
    assert log.count(said) <= 1
    if prepared == 0 and mode == "transaction":
        # Sessions lose prepared statements here: the first loss (one per
        # connection that held one, at most) switches webhookd to unnamed
        # statements for good, said once.
        if "26000" in log:
            assert log.count("webhookd sends its statements unnamed from now on") == 1
            assert log.count("26000") <= 4, log[-3000:]
