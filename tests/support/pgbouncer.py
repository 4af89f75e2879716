"""PgBouncer in front of the test cluster."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from support.cluster import PORT, ROOT, free_port, wait_for

# PgBouncer 1.24 (prepared statements in transaction mode) comes from the
# PostgreSQL 17 root (Debian 13), whatever version is under test: it speaks
# the same protocol to each.
PGBOUNCER_ROOT_PG = "17"


class PgBouncer:
    """PgBouncer on a free loopback port in front of the test cluster, in
    `mode` (session, transaction or statement), every database passed
    through and `users` let in (trust, as the cluster itself). `settings`
    are more lines of its [pgbouncer] section. `dsn(dbname)` connects
    through it."""

    def __init__(self, mode="transaction", users=("postgres",), settings=None):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pgbouncer-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        (self.dir / "users.txt").write_text("".join(f'"{u}" ""\n' for u in users))
        lines = {
            "listen_addr": "127.0.0.1",
            "listen_port": str(self.port),
            "unix_socket_dir": "",
            "auth_type": "trust",
            "auth_file": str(self.dir / "users.txt"),
            "pool_mode": mode,
            "max_client_conn": "200",
            "default_pool_size": "10",
            "max_prepared_statements": "100",
            "admin_users": "postgres",
            "ignore_startup_parameters": "extra_float_digits,options",
            **(settings or {}),
        }
        (self.dir / "pgbouncer.ini").write_text(
            f"[databases]\n* = host=127.0.0.1 port={PORT}\n\n[pgbouncer]\n"
            + "".join(f"{k} = {v}\n" for k, v in lines.items())
        )
        for f in self.dir.iterdir():
            os.chmod(f, 0o644)
        self.log = open(self.dir / "pgbouncer.log", "wb")
        # The root first, however long building it takes (once per machine;
        # `make test` builds it in the background from the start), so that
        # the wait below is for PgBouncer alone.
        subprocess.run([str(ROOT / "scripts" / "pg-root.sh"), PGBOUNCER_ROOT_PG, "path", "build"],
                       check=True, stdout=subprocess.DEVNULL)
        # A session of its own: the whole chain (the root's runner, runuser,
        # pgbouncer) is stopped by one signal to its process group.
        self.proc = subprocess.Popen(
            [str(ROOT / "scripts" / "pg-root.sh"), PGBOUNCER_ROOT_PG, "run", "--postgres",
             "pgbouncer", str(self.dir / "pgbouncer.ini")],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"pgbouncer exited {self.proc.returncode}: {self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                return False

        wait_for(up, timeout=60, what="pgbouncer to listen")

    def dsn(self, dbname, user="postgres"):
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def output(self):
        self.log.flush()
        return (self.dir / "pgbouncer.log").read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
