"""The Debian packages (`make deb`, scripts/deb.sh) of the version under
test, installed with apt into a copy of that version's clean Debian root
(scripts/pg-root.sh N path base: Debian's postgresql-N alone): the
extension is created in a cluster started there, the packaged webhookd
delivers a signed event from it to a receiver on 127.0.0.1, and removing
and purging both packages leaves the root as it was, apart from dpkg's
and apt's own records. Also: lintian finds nothing in either package that
is not overridden with a reason, and systemd-analyze accepts the unit.

The packages are (re)built from `make package PG=N` and `make webhookd`
output by scripts/deb.sh first. Nothing leaves loopback: apt installs
from the two files only (--no-download), and the receiver, the cluster
and webhookd all listen on or connect to 127.0.0.1."""

import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from standardwebhooks.webhooks import Webhook

from support.cluster import PG_MAJOR, ROOT, SECRET, free_port, q1, wait_for

SUDO = [] if os.geteuid() == 0 else ["sudo"]
VERSION = next(
    line.split('"')[1]
    for line in (ROOT / "Cargo.toml").read_text().split("[workspace.package]", 1)[1].splitlines()
    if line.startswith("version = ")
)
EXTENSION_PKG = f"postgresql-{PG_MAJOR}-pg-webhook"
PACKAGES = [EXTENSION_PKG, "webhookd"]
UNIT = "/usr/lib/systemd/system/webhookd.service"
ENV_FILE = "/etc/webhookd/webhookd.env"
# Inside the root: the test cluster (data and socket) and where the
# packages are copied for apt.
CLUSTER = "/var/lib/postgresql/pgwh-deb-test"
INCOMING = "/tmp/pgwh-debs"
# What dpkg and apt keep about packages: allowed to differ after a purge.
DPKG_STATE = ("var/lib/dpkg/", "var/lib/apt/", "var/cache/apt/", "var/cache/debconf/", "var/log/")


def run(cmd, check=True, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))}: exit {out.returncode}\n{out.stdout}{out.stderr}")
    return out


def in_root(root, *cmd, user=None, tmp_run=False):
    """CMD in the root as root (or `user`, by setpriv): chroot in a private
    mount namespace with /proc and /dev mounted there (and with `tmp_run`
    a tmpfs on /run, for a command that leaves state there), gone with its
    last process, and a minimal environment."""
    if user:
        group = {"nobody": "nogroup"}.get(user, user)
        cmd = ("setpriv", f"--reuid={user}", f"--regid={group}", "--init-groups", *cmd)
    mounts = 'mount -t proc proc "$r/proc" && mount --rbind /dev "$r/dev"'
    if tmp_run:
        mounts += ' && mount -t tmpfs tmpfs "$r/run"'
    return [
        *SUDO, "unshare", "--mount", "--propagation", "private", "sh", "-c",
        f'r=$1; shift; {mounts} && exec chroot "$r" "$@"',
        "sh", str(root), "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C.UTF-8",
        *(["HOME=/var/lib/postgresql"] if user == "postgres" else ["HOME=/root"]), *cmd,
    ]


@pytest.fixture(scope="module")
def debs():
    """The two packages, built now by scripts/deb.sh from this checkout's
    `make package PG=N` and `make webhookd` output."""
    deb = ROOT / "scripts" / "deb.sh"
    run([str(deb), "extension", PG_MAJOR], cwd=ROOT)
    run([str(deb), "webhookd"], cwd=ROOT)
    paths = [ROOT / "target" / "deb" / f"{p}_{VERSION}_amd64.deb" for p in PACKAGES]
    for p in paths:
        assert p.is_file(), p
        print(f"{p.name}: {p.stat().st_size // 1024} KiB")
    return paths


@pytest.fixture
def clean_root():
    """A copy of the version's base root under /var/tmp, removed after."""
    base = run([str(ROOT / "scripts" / "pg-root.sh"), PG_MAJOR, "path", "base"]).stdout.strip()
    tmp = Path(tempfile.mkdtemp(prefix=f"pgwh-deb-pg{PG_MAJOR}-", dir="/var/tmp"))
    root = tmp / "root"
    try:
        run([*SUDO, "cp", "-a", base, str(root)])
        yield root
    finally:
        run([*SUDO, "rm", "-rf", str(tmp)], check=False)


def tree(root):
    """Every path of the root (not /proc, /dev, /sys, nor the test's own
    directories): its type, mode, owner and, for a link, its target. (Run
    by a user with sudo rather than by root, directories only root may
    read are left out.)"""
    skip = {"proc", "dev", "sys", CLUSTER.lstrip("/"), INCOMING.lstrip("/")}
    found = {}
    for d, dirs, files in os.walk(root):
        rel_d = os.path.relpath(d, root)
        dirs[:] = [x for x in dirs if os.path.normpath(os.path.join(rel_d, x)) not in skip]
        for name in dirs + files:
            p = os.path.join(d, name)
            st = os.lstat(p)
            rel = os.path.normpath(os.path.join(rel_d, name))
            found[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                          os.readlink(p) if stat.S_ISLNK(st.st_mode) else None)
    return found


def dpkg_state(rel):
    return rel.startswith(DPKG_STATE) or rel + "/" in DPKG_STATE


def test_packages_install_deliver_and_remove_cleanly_in_a_clean_root(debs, clean_root, receiver):
    root = clean_root
    started = time.monotonic()
    before = tree(root)

    # Install from the two files alone: apt is given no source to download
    # from (were a dependency missing, it would fail, not fetch it).
    incoming = root / INCOMING.lstrip("/")
    run([*SUDO, "install", "-d", "-m", "0755", str(incoming), str(incoming / "sources.list.d")])
    run([*SUDO, "install", "-m", "0644", "/dev/null", str(incoming / "sources.list")])
    run([*SUDO, "install", "-m", "0644", *map(str, debs), str(incoming)])
    out = run(in_root(root, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y",
                      "--no-install-recommends", f"-oDir::Etc::SourceList={INCOMING}/sources.list",
                      f"-oDir::Etc::SourceParts={INCOMING}/sources.list.d",
                      *(f"{INCOMING}/{d.name}" for d in debs)))
    print(out.stdout)
    assert "2 newly installed" in out.stdout and "Need to get 0 B" in out.stdout, out.stdout
    run([*SUDO, "rm", "-rf", str(incoming)])
    listed = {}
    for p in PACKAGES:
        status = run(in_root(root, "dpkg-query", "-W", "-f", "${Status} ${Version}", p)).stdout
        assert status == f"install ok installed {VERSION}", status
        listed[p] = run(in_root(root, "dpkg", "-L", p)).stdout.split()
    assert f"/usr/lib/postgresql/{PG_MAJOR}/lib/pg_webhook.so" in listed[EXTENSION_PKG]
    assert f"/usr/share/postgresql/{PG_MAJOR}/extension/pg_webhook.control" in listed[EXTENSION_PKG]
    assert {"/usr/bin/webhookd", UNIT, ENV_FILE} <= set(listed["webhookd"])
    conffiles = run(in_root(root, "dpkg-query", "-W", "-f", "${Conffiles}", "webhookd")).stdout.split()
    assert conffiles[:1] == [ENV_FILE], conffiles
    env_file = os.lstat(root / ENV_FILE.lstrip("/"))
    assert (stat.S_IMODE(env_file.st_mode), env_file.st_uid, env_file.st_gid) == (0o640, 0, 0)
    # The unit is not enabled by the package (see deploy/debian/webhookd).
    assert not list((root / "etc/systemd/system").glob("*/webhookd.service"))

    # systemd's own check of the unit as installed: by the root's
    # systemd-analyze where the root has systemd (sid's does), else by the
    # host's, on a copy of the unit (the unit's directory would bring in
    # the root's other units, of another systemd) and with the root's
    # /usr/bin laid under its own, in a mount namespace of its own, as
    # ExecStart's binary must exist.
    if (root / "usr/bin/systemd-analyze").exists():
        out = run(in_root(root, "systemd-analyze", "verify", "--man=no", UNIT, tmp_run=True), check=False)
        checked = "the root's systemd-analyze"
    elif shutil.which("systemd-analyze"):
        copy = root.parent / "unit" / "webhookd.service"
        copy.parent.mkdir()
        shutil.copy(root / UNIT.lstrip("/"), copy)
        out = run([*SUDO, "unshare", "--mount", "--propagation", "private", "sh", "-c",
                   'mount -t overlay overlay -o "lowerdir=/usr/bin:$1/usr/bin" /usr/bin && '
                   'exec systemd-analyze verify --man=no "$2"', "sh", str(root), str(copy)], check=False)
        checked = "the host's systemd-analyze"
    else:
        out = None
        print("systemd-analyze is neither in the root nor on this host: webhookd.service is not verified")
    if out is not None:
        assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), out.stdout + out.stderr
        security = run(["systemd-analyze", "security", "--offline=true", f"--root={root}", UNIT], check=False)
        print(f"webhookd.service verified by {checked};", (security.stdout.strip().splitlines() or [""])[-1])

    # A cluster in the root, reached over 127.0.0.1.
    port = free_port()
    pg = f"/usr/lib/postgresql/{PG_MAJOR}/bin"
    run([*SUDO, "install", "-d", "-o", "postgres", "-g", "postgres", str(root / CLUSTER.lstrip("/"))])
    run(in_root(root, f"{pg}/initdb", "-D", f"{CLUSTER}/data", "-U", "postgres", "-A", "trust", "--no-sync",
                "-E", "UTF8", "--locale=C.UTF-8", user="postgres"))
    run(in_root(root, "mkdir", f"{CLUSTER}/sock", user="postgres"))
    run([*SUDO, "tee", "-a", str(root / CLUSTER.lstrip("/") / "data" / "postgresql.conf")],
        input=f"listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{CLUSTER}/sock'\n")
    run(in_root(root, f"{pg}/pg_ctl", "-D", f"{CLUSTER}/data", "-l", f"{CLUSTER}/server.log", "-w", "-t", "60",
                "start", user="postgres"))
    webhookd = None
    try:
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        r = receiver()
        with psycopg.connect(url, autocommit=True) as db:
            db.execute("CREATE EXTENSION pg_webhook")
            assert q1(db, "SELECT extversion FROM pg_extension WHERE extname = 'pg_webhook'") == VERSION
            db.execute("ALTER DATABASE postgres SET webhook.allow_http = on")
        with psycopg.connect(url, autocommit=True) as db:
            db.execute("CREATE TABLE orders (id bigserial PRIMARY KEY, customer text)")
            db.execute("SELECT webhook.track('orders')")
            q1(db, "SELECT webhook.create_endpoint(%s, '{*}', %s)", r.url, SECRET)
            db.execute("INSERT INTO orders (customer) VALUES ('from the packages')")
            # The packaged binary, run in the root as an unprivileged user.
            log = open(root.parent / "webhookd.log", "wb")
            webhookd = subprocess.Popen(
                in_root(root, "env", f"DATABASE_URL={url}", "WEBHOOKD_LOG=info", "/usr/bin/webhookd", "run",
                        "--allow-private-targets", "--poll-interval", "200ms", user="nobody"),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
            wait_for(lambda: r.count() >= 1 or webhookd.poll() is not None, 30, what="the delivery")
            output = (root.parent / "webhookd.log").read_text(errors="replace")
            assert r.count() == 1, output
            req = r.requests[0]
            payload = Webhook(SECRET).verify(req["body"], req["headers"])
            assert payload["type"] == "orders.insert"
            assert payload["data"]["new"]["customer"] == "from the packages"
            assert req["headers"]["user-agent"] == f"pg_webhook/{VERSION}"
            wait_for(lambda: q1(db, "SELECT status FROM webhook.deliveries") == "succeeded", 10,
                     what="the outcome recorded")
            os.killpg(webhookd.pid, signal.SIGTERM)
            assert webhookd.wait(30) == 0, output
    finally:
        if webhookd and webhookd.poll() is None:
            os.killpg(webhookd.pid, signal.SIGKILL)
            webhookd.wait(10)
        run(in_root(root, f"{pg}/pg_ctl", "-D", f"{CLUSTER}/data", "-m", "fast", "-w", "stop", user="postgres"),
            check=False)
    run([*SUDO, "rm", "-rf", str(root / CLUSTER.lstrip("/"))])

    # Remove, then purge: the conffile stays until the purge.
    run(in_root(root, "dpkg", "-r", *PACKAGES))
    assert (root / ENV_FILE.lstrip("/")).exists()
    run(in_root(root, "dpkg", "-P", *PACKAGES))
    after = tree(root)
    for p, files in listed.items():
        for f in files:
            rel = os.path.normpath(f.lstrip("/"))
            if rel == ".":  # dpkg lists the root itself as /.
                continue
            if rel in before:
                assert rel in after, f"{f} (of the root before {p}) is gone"
            else:
                assert not os.path.lexists(root / rel), f"{f} of {p} is left after the purge"
    changed = sorted(
        p for p in set(before) | set(after) if before.get(p) != after.get(p) and not dpkg_state(p)
    )
    assert not changed, "\n".join(f"{p}: {before.get(p)} -> {after.get(p)}" for p in changed)
    print(f"PostgreSQL {PG_MAJOR}: install, delivery and purge in {time.monotonic() - started:.1f} s")


def test_lintian_finds_nothing_not_overridden(debs):
    """Errors, warnings and informational tags fail (pedantic ones are
    only shown); each override in deploy/debian/*/lintian-overrides says
    why it is one. (lintian's --fail-on counts overridden tags as soon as
    --show-overrides shows them, so the verdict is read from its lines.)"""
    for d in debs:
        out = run(["lintian", "--display-info", "--pedantic", "--show-overrides", str(d)], check=False)
        print(f"lintian {d.name}:\n{out.stdout}")
        assert out.returncode in (0, 2), out.stdout + out.stderr
        tags = [line for line in out.stdout.splitlines() if line[:2] in ("E:", "W:", "I:")]
        assert not tags, "\n".join(tags)
