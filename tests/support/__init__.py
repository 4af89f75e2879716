"""What the end-to-end tests share that is not a fixture: the test
cluster and its connections, HTTP receivers, certificates, webhookd and
console processes, Docker, PgBouncer. The fixtures that hand them to tests
are in the conftest.py files."""
