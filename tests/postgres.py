"""A throwaway PostgreSQL server for tests, and the Hasura migrations.

Debian's ``postgresql`` package (``make test`` installs it when missing)
gives ``initdb`` and ``pg_ctl``. PostgreSQL refuses to run as root, so
when the tests run as root the server runs as the ``postgres`` user, in a
temporary folder that user owns, on a free loopback port, with no Unix
socket outside that folder.
"""

import contextlib
import os
import pathlib
import pwd
import shutil
import subprocess
import tempfile
import uuid

import psycopg

from tools import stack

MIGRATIONS = stack.ROOT / "hasura" / "migrations" / "default"
SERVER_USER = "postgres"


def bin_dir():
    """The newest installed PostgreSQL's ``bin`` folder."""
    found = sorted(
        pathlib.Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda path: int(path.parent.parent.name),
    )
    if not found:
        raise RuntimeError(
            "PostgreSQL is not installed: apt-get install postgresql "
            "(make test does it)"
        )
    return found[-1].parent


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder, started and stopped."""

    def __init__(self, log_path):
        self.log_path = pathlib.Path(log_path)
        self.bin = bin_dir()
        self.port = stack.free_port()
        self.folder = pathlib.Path(tempfile.mkdtemp(prefix="deepclassify-pg-"))
        self.data = self.folder / "data"
        self._user = None
        if os.geteuid() == 0:
            self._user = SERVER_USER
            account = pwd.getpwnam(SERVER_USER)
            os.chown(self.folder, account.pw_uid, account.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
        )

    def _run(self, tool, *args):
        subprocess.run(
            [str(self.bin / tool), *args],
            check=True,
            user=self._user,
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def start(self):
        """Starts the server and waits until it accepts connections."""
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "server.log"),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self):
        """Stops the server at once (``-m fast``: connections are cut)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database="postgres"):
        """A libpq URL of one database, as ``DATABASE_URL`` takes it."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self):
        """Creates an empty database; returns its URL."""
        name = f"history_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remove(self):
        """Stops the server if it runs, keeps its log, deletes the folder."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        server_log = self.folder / "server.log"
        if server_log.exists():
            shutil.copy(server_log, self.log_path)
        shutil.rmtree(self.folder, ignore_errors=True)


def migration_folders():
    """The Hasura migrations of the default database, oldest first."""
    return sorted(
        (path for path in MIGRATIONS.iterdir() if path.is_dir()),
        key=lambda path: int(path.name.split("_", 1)[0]),
    )


def migrate(url, direction):
    """Applies every migration ``up`` (oldest first) or ``down`` (newest first).

    Each file runs in one transaction, as ``hasura migrate apply`` does.
    """
    folders = migration_folders()
    if direction == "down":
        folders = folders[::-1]
    with psycopg.connect(url, autocommit=True) as connection:
        for folder in folders:
            with connection.transaction():
                connection.execute((folder / f"{direction}.sql").read_text())
