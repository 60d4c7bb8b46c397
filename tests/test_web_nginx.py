"""The documented TLS reverse proxy for `bptwin web` (docs/web.md), run in a real nginx.

The nginx configuration is docs/examples/nginx-bptwin-web.conf, which docs/web.md shows word
for word, and the [web] settings are the document's; only ports, certificate paths and the
lab's network are replaced by the test's own. nginx runs as a foreground process in a
temporary prefix with a throwaway self-signed certificate. Threats: the control room served in
the clear (plain HTTP must only redirect to https), and a browser outside the lab's network
reaching it (nginx must turn it away before a session starts).
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import json
import re
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import tomllib

from tests.browser import (
    DEADLINE_S,
    chromium_binary,
    chromium_page,
    start_web,
    stop,
    wait_for_port,
    write_web_config,
)
from tests.fixtures.servers import free_port, server_missing
from tests.test_app_navigation import notebook_with_batch

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "web.md"
CONF = ROOT / "docs" / "examples" / "nginx-bptwin-web.conf"
LAB_NETWORK = "allow 10.20.0.0/16;"  # the document's: who may open the control room
LOOPBACK = "allow 127.0.0.1; allow ::1;"  # the test's browsers (Chromium takes ::1 for localhost)


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None


def documented_block(language: str, after: str) -> str:
    """The first fenced ``language`` block of docs/web.md after the heading ``after``."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(after)
    found = re.search(rf"```{language}\n(.*?)```", text[start:], re.DOTALL)
    assert found, f"docs/web.md has no {language} block after {after!r}"
    return found.group(1)


def replaced(text: str, replacements: dict[str, str]) -> str:
    """``text`` with each documented value replaced; a value missing from it is an error."""
    for old, new in replacements.items():
        assert old in text, f"the documented nginx config no longer holds {old!r}"
        text = text.replace(old, new)
    return text


@dataclass
class Certificate:
    cert: Path
    key: Path

    def chromium_trust(self) -> str:
        """The Chromium flag that trusts this one certificate (by its public key's hash)."""
        try:
            from cryptography import x509
            from cryptography.hazmat.primitives import serialization
        except ImportError:  # no way to hash the key here: trust any certificate instead
            return "--ignore-certificate-errors"
        public = x509.load_pem_x509_certificate(self.cert.read_bytes()).public_key()
        der = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        spki = base64.b64encode(hashlib.sha256(der).digest()).decode("ascii")
        return f"--ignore-certificate-errors-spki-list={spki}"


def self_signed(folder: Path) -> Certificate:
    """A throwaway certificate for localhost (the cryptography package, else openssl)."""
    cert, key = folder / "bptwin.pem", folder / "bptwin.key"
    try:
        import datetime as dt
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        san = "subjectAltName=DNS:localhost,IP:127.0.0.1"
        command = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt"]
        command += ["ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=localhost"]
        command += ["-keyout", str(key), "-out", str(cert), "-addext", san]
        subprocess.run(command, check=True, capture_output=True)
        return Certificate(cert, key)
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificate(cert, key)


@dataclass
class Proxy:
    https_port: int
    http_port: int

    @property
    def url(self) -> str:
        return f"https://localhost:{self.https_port}"


class Nginx:
    """The documented server blocks in a foreground nginx with everything under one prefix."""

    def __init__(self, binary: str, site: str) -> None:
        # Not under pytest's tmp_path (mode 0700): nginx started as root runs its worker as
        # nobody, which must reach its temporary folders inside the prefix.
        self.prefix = Path(tempfile.mkdtemp(prefix="bptwin-nginx-"))
        self.prefix.chmod(0o755)
        (self.prefix / "bptwin-web.conf").write_text(site, encoding="utf-8")
        temp = "\n".join(
            f"    {kind}_temp_path {self.prefix / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (self.prefix / "nginx.conf").write_text(
            f"worker_processes 1;\npid {self.prefix / 'nginx.pid'};\n"
            f"error_log {self.prefix / 'error.log'} info;\n"
            "events { worker_connections 64; }\n"
            f"http {{\n    access_log {self.prefix / 'access.log'};\n{temp}\n"
            f"    include {self.prefix / 'bptwin-web.conf'};\n}}\n",
            encoding="utf-8",
        )
        command = [binary, "-p", str(self.prefix), "-c", "nginx.conf"]
        command += ["-e", str(self.prefix / "error.log"), "-g", "daemon off;"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait(self, port: int) -> None:
        try:
            wait_for_port(port, self.process, "nginx")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log()}") from exc

    def log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        stop(self.process)
        shutil.rmtree(self.prefix, ignore_errors=True)


@dataclass
class Station:
    """`bptwin web` behind the proxy: its own port, the proxy's ports, the certificate."""

    web_port: int
    proxy: Proxy
    certificate: Certificate
    nginx: str

    @contextmanager
    def behind_nginx(self, lab_network: str = LOOPBACK) -> Iterator[Nginx]:
        """The documented config in nginx, its `allow` of the lab's network by ``lab_network``."""
        https, http = self.proxy.https_port, self.proxy.http_port
        site = replaced(
            CONF.read_text(encoding="utf-8"),
            {
                # Loopback only: the test's proxy is not for the machine's neighbours.
                "listen 443 ssl;": f"listen 127.0.0.1:{https} ssl;",
                "listen [::]:443 ssl;": f"listen [::1]:{https} ssl;",
                "listen 80;": f"listen 127.0.0.1:{http};",
                "listen [::]:80;": f"listen [::1]:{http};",
                "/etc/ssl/certs/bptwin.lab.example.pem": str(self.certificate.cert),
                "/etc/ssl/private/bptwin.lab.example.key": str(self.certificate.key),
                "http://127.0.0.1:8200;": f"http://127.0.0.1:{self.web_port};",
                LAB_NETWORK: lab_network,
            },
        )
        nginx = Nginx(self.nginx, site)
        try:
            nginx.wait(https)
            nginx.wait(http)
            yield nginx
        finally:
            nginx.stop()


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    """`bptwin web` with the document's [web] settings, batch 17 running on R1."""
    nginx = nginx_binary()
    if nginx is None:
        server_missing("nginx is not installed (apt-get install nginx)")
        raise AssertionError("unreachable")
    from bptwin.tui.settings import Settings

    folder = tmp_path_factory.mktemp("web-nginx")
    settings = Settings()
    settings.station.data_dir = folder / "data"
    notebook_with_batch(settings)
    web = tomllib.loads(documented_block("toml", "## TLS behind nginx"))["web"]
    assert web["public_url"] == "https://bptwin.lab.example" and web["port"] == 8200
    proxy = Proxy(free_port(), free_port())
    web_port = free_port()
    documented = {**web, "port": web_port, "public_url": proxy.url}
    config = write_web_config(
        folder / "bptwin.toml",
        settings.station.data_dir,
        web_port,
        web="".join(
            f"{key} = {json.dumps(value)}\n"
            for key, value in documented.items()
            if key not in ("port", "allow_writes")
        ),
    )
    server = start_web(config, web_port)
    try:
        yield Station(web_port, proxy, self_signed(folder), nginx)
    finally:
        stop(server)


def trusting(certificate: Certificate) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate.cert))


async def test_through_the_documented_proxy_the_page_loads_and_its_websocket_upgrades(
    station: Station,
) -> None:
    with station.behind_nginx():
        tls = trusting(station.certificate)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{station.proxy.url}/", ssl=tls) as response:
                assert response.status == 200
                page = await response.text()
            assert 'class="textual-terminal' in page
            # The page opens its websocket through the proxy, encrypted (public_url).
            assert (
                f'data-session-websocket-url="wss://localhost:{station.proxy.https_port}/ws' in page
            )
            url = f"wss://localhost:{station.proxy.https_port}/ws?width=140&height=40"
            async with http.ws_connect(url, ssl=tls) as socket:
                drawn = await read_until(socket, "read-only (web)")
            assert "batch 17" in drawn or "Dashboard" in drawn


async def read_until(socket: aiohttp.ClientWebSocketResponse, text: str) -> str:
    """What the app draws on a websocket session, until ``text`` is among it."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    drawn = ""
    until = time.monotonic() + DEADLINE_S
    while text not in drawn:
        left = until - time.monotonic()
        assert left > 0, f"{text!r} never drawn; the end of what was: {drawn[-1500:]!r}"
        message = await socket.receive(timeout=left)
        assert message.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT), message
        if message.type == aiohttp.WSMsgType.BINARY:
            drawn += decoder.decode(message.data)
    return drawn


async def test_plain_http_is_only_redirected_to_https(station: Station) -> None:
    with station.behind_nginx():
        async with aiohttp.ClientSession() as http:
            # Port 80: a redirect to the same address over https, and nothing of the app.
            async with http.get(
                f"http://127.0.0.1:{station.proxy.http_port}/ws?width=80",
                headers={"Host": "bptwin.lab.example"},
                allow_redirects=False,
            ) as response:
                assert response.status == 301
                assert response.headers["Location"] == "https://bptwin.lab.example/ws?width=80"
                assert "textual" not in await response.text()
            # Plain HTTP to the TLS port: refused by nginx.
            async with http.get(f"http://127.0.0.1:{station.proxy.https_port}/") as response:
                assert response.status == 400
                assert "textual" not in await response.text()


async def test_a_browser_outside_the_lab_network_is_turned_away_by_the_proxy(
    station: Station,
) -> None:
    """The document's `allow` as written (the lab's 10.20.0.0/16): loopback is outside it."""
    with station.behind_nginx(lab_network=LAB_NETWORK) as nginx:
        async with aiohttp.ClientSession() as http:
            async with http.get(
                f"{station.proxy.url}/", ssl=trusting(station.certificate)
            ) as response:
                assert response.status == 403
                assert "textual" not in await response.text()
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(
                    f"wss://localhost:{station.proxy.https_port}/ws",
                    ssl=trusting(station.certificate),
                )
            assert refused.value.status == 403
        assert "access forbidden by rule" in nginx.log()


async def test_the_dashboard_is_drawn_in_chromium_through_the_proxy(
    station: Station, tmp_path: Path
) -> None:
    if chromium_binary() is None:
        server_missing("Debian's chromium is not installed (apt-get install chromium)")
    with station.behind_nginx():
        trust = station.certificate.chromium_trust()
        async with chromium_page(tmp_path / "chromium", trust) as page:
            await page.send("Page.navigate", url=f"{station.proxy.url}/")
            await page.wait_drawn("read-only (web)")
            await page.wait_drawn("batch 17")
            assert await page.evaluate("location.protocol") == "https:"


def test_the_document_shows_the_tested_config_word_for_word() -> None:
    assert documented_block("nginx", "## TLS behind nginx") == CONF.read_text(encoding="utf-8")
