"""``decisionpath dashboard``: run the Streamlit app over a lake, safely by default.

The app is started as ``streamlit run dashboards/app.py -- --lake DIR`` (the lake is also put in
``DECISIONPATH_LAKE``; the app reads either at run time). It runs headless, sends no usage
statistics, binds 127.0.0.1 unless told otherwise, and refuses a non-loopback address unless
Streamlit authentication (``[auth]`` in ``secrets.toml``) is configured or the caller explicitly
allows an unauthenticated public dashboard.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

from ingest.errors import ConfigError

APP = Path(__file__).resolve().parent.parent / "dashboards" / "app.py"
LAKE_ENV = "DECISIONPATH_LAKE"


def is_loopback(address: str) -> bool:
    """True when every address ``address`` resolves to is a loopback one (127.0.0.0/8, ::1)."""
    host = address.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback for i in infos)


def secrets_files(cwd: Path | None = None) -> list[Path]:
    """The secrets.toml files Streamlit reads by default (global, then project)."""
    cwd = cwd or Path.cwd()
    return [Path.home() / ".streamlit" / "secrets.toml", cwd / ".streamlit" / "secrets.toml"]


def auth_configured(files: Sequence[Path] | None = None) -> bool:
    """Whether an ``[auth]`` section usable by ``st.login`` (OIDC) is configured."""
    auth: dict[str, object] = {}
    for f in files if files is not None else secrets_files():
        if not f.is_file():
            continue
        try:
            data = tomllib.loads(f.read_text())
        except (OSError, tomllib.TOMLDecodeError):
            continue
        if isinstance(data.get("auth"), dict):
            auth.update(data["auth"])
    if not auth.get("redirect_uri") or not auth.get("cookie_secret"):
        return False
    providers = [v for v in auth.values() if isinstance(v, dict)]
    has_default = bool(auth.get("client_id") and auth.get("server_metadata_url"))
    return has_default or any(p.get("client_id") and p.get("server_metadata_url") for p in providers)


def check_address(address: str, allow_unauthenticated: bool, files: Sequence[Path] | None = None) -> None:
    """Raise ConfigError for a non-loopback bind with neither auth configured nor explicit consent."""
    if is_loopback(address) or allow_unauthenticated or auth_configured(files):
        return
    raise ConfigError(
        f"refusing to serve the dashboard on non-loopback address {address!r} without authentication: "
        "the lake holds identity and credential evidence. Configure Streamlit OIDC login ([auth] with "
        "redirect_uri, cookie_secret, client_id, client_secret, server_metadata_url in "
        ".streamlit/secrets.toml), bind 127.0.0.1 and use an SSH tunnel or reverse proxy, or pass "
        "--allow-unauthenticated-public if you really mean it"
    )


def streamlit_command(lake_dir: str | Path, port: int, address: str) -> list[str]:
    """The ``streamlit run`` command line for the dashboard."""
    return [
        sys.executable, "-m", "dashboards.server", "run", str(APP),  # `streamlit run`, with a warm-up beside it
        "--server.headless", "true",
        "--server.address", address,
        "--server.port", str(port),
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        "--browser.gatherUsageStats", "false",
        "--global.developmentMode", "false",
        "--client.toolbarMode", "viewer",
        "--theme.base", "light",
        "--", "--lake", str(Path(lake_dir).resolve()),
    ]


def start_dashboard(lake_dir: str | Path, port: int = 8501, address: str = "127.0.0.1",
                    allow_unauthenticated: bool = False, **popen: object) -> subprocess.Popen[bytes]:
    """Check the address and lake, then start the Streamlit server in a child process."""
    check_address(address, allow_unauthenticated)
    lake = Path(lake_dir)
    if not (lake / "events").exists():
        raise ConfigError(f"no lake at {lake}: ingest something first (decisionpath ingest file PATH --lake "
                          f"{lake}) or point --lake at an existing lake")
    env = dict(os.environ)
    env[LAKE_ENV] = str(lake.resolve())
    env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] = "false"
    proc: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
        streamlit_command(lake, port, address), env=env, **popen)
    return proc


def serve_dashboard(lake_dir: str | Path, port: int = 8501, address: str = "127.0.0.1",
                    allow_unauthenticated: bool = False) -> int:
    """Serve the dashboard until interrupted; returns the server's exit code."""
    proc = start_dashboard(lake_dir, port, address, allow_unauthenticated)
    if not is_loopback(address):
        print(f"decisionpath: serving on {address}:{port}"
              + (" WITHOUT authentication" if allow_unauthenticated and not auth_configured() else ""),
              file=sys.stderr)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        return 130
