"""`webhookd console` processes against the test cluster."""

import secrets
import subprocess
import time
import urllib.request

import psycopg

from support.cluster import PORT, ROOT, dsn, free_port, wait_for
from support.webhookd import WEBHOOKD, require_webhookd, webhookd_env

# The console's tokens, made for each run, as the console refuses weak ones (32 random bytes, as the README says).
ADMIN_TOKEN = secrets.token_hex(32)
READ_TOKEN = secrets.token_hex(32)
CONSOLE_ROLE = "pgwh_console"


class Console:
    """`webhookd console` on a free loopback port, connected as a role
    granted webhook.grant_manager() (not a superuser), as a deployment
    runs it. `env` is added to its environment; a None value removes that
    variable."""

    def __init__(self, dbname, env=None):
        with psycopg.connect(dsn(dbname), autocommit=True) as c:
            if not c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (CONSOLE_ROLE,)).fetchone():
                c.execute(f"CREATE ROLE {CONSOLE_ROLE} LOGIN")
            c.execute(f"SELECT webhook.grant_manager('{CONSOLE_ROLE}')")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = ROOT / "target" / "test-logs" / f"console-{dbname}-{time.time_ns()}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "wb")
        require_webhookd()
        e = webhookd_env(**{
            "DATABASE_URL": f"postgresql://{CONSOLE_ROLE}@127.0.0.1:{PORT}/{dbname}",
            "WEBHOOKD_CONSOLE_ADMIN_TOKEN": ADMIN_TOKEN,
            "WEBHOOKD_CONSOLE_READ_TOKEN": READ_TOKEN,
            "WEBHOOKD_LOG": "info",
            **(env or {}),
        })
        self.proc = subprocess.Popen(
            [str(WEBHOOKD), "console", "--addr", f"127.0.0.1:{self.port}"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=e,
        )
        wait_for(self.ready, 20, 0.05, what="the console answering /healthz")

    def ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"webhookd console exited {self.proc.returncode}:\n{self.output()}")
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def output(self):
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
