"""The broker as shipped in central/mosquitto/, on free loopback ports: identities issued by the
shipped `issue-cert.sh` (and the same usernames in a mosquitto_passwd file), and the shipped
`roomwarden.conf` with only its ports and file paths templated — its `acl_file` is the shipped
`roomwarden.acl` itself, read where it lies in the repository."""

from __future__ import annotations

import getpass
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gateway.localservices import free_port, port_open
from tests.fixtures.services import Broker, wait_for

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "central" / "mosquitto"
CONF = SHIPPED / "roomwarden.conf"
ACL = SHIPPED / "roomwarden.acl"
ISSUE = SHIPPED / "issue-cert.sh"
ETC = "/etc/mosquitto/roomwarden/"
OPENSSL = shutil.which("openssl")
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


@dataclass(frozen=True)
class Identity:
    """One MQTT identity: its username (= certificate CN), certificate, key and password."""

    name: str
    cert: Path
    key: Path
    password: str


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: Path
    identities: dict[str, Identity]

    def __getitem__(self, name: str) -> Identity:
        return self.identities[name]


def issue(pki: Path, *args: str) -> list[Path]:
    """Run the shipped script; it prints the files it wrote (certificate, then key)."""
    out = subprocess.run(["sh", str(ISSUE), "--pki", str(pki), "--days", "2", *args],
                         check=True, capture_output=True, text=True).stdout
    return [Path(line) for line in out.splitlines()]


def make_pki(directory: Path, gateways: list[tuple[str, str]], central: list[str]) -> Pki:
    """A CA, the broker's certificate for 127.0.0.1, one certificate per gateway
    (`site/gateway`) and per central name, all by `issue-cert.sh`; and `passwd`, the same
    usernames with random passwords (mosquitto_passwd), where the shipped config expects it."""
    issue(directory, "ca")
    issue(directory, "broker", "127.0.0.1", "localhost")
    identities: dict[str, Identity] = {}
    for name, args in ([(f"{s}/{g}", ("gateway", s, g)) for s, g in gateways]
                       + [(n, ("central", n)) for n in central]):
        cert, key = issue(directory, *args)
        identities[name] = Identity(name, cert, key, secrets.token_urlsafe(16))
    passwd = directory / "passwd"
    for i, ident in enumerate(identities.values()):
        subprocess.run([MOSQUITTO_PASSWD, *(["-c"] if i == 0 else []), "-b", str(passwd),
                        ident.name, ident.password], check=True, capture_output=True)
    # mosquitto runs as the test's user here (not `mosquitto`), so it can read what we made
    return Pki(directory, directory / "ca.pem", identities)


def render(conf: str, *, port: int, password_port: int, files: Path,
           acl: Path | None) -> str:
    """The shipped config with its two listeners on loopback ports and its files in `files`;
    `acl=None` drops the acl_file lines (to show what happens without them)."""
    subs = [("listener 8883\n", f"listener {port} 127.0.0.1\n"),
            ("listener 8884\n", f"listener {password_port} 127.0.0.1\n"),
            (f"acl_file {ETC}roomwarden.acl\n", f"acl_file {acl}\n" if acl else "")]
    for old, new in subs:
        assert old in conf, f"the shipped config has no {old.strip()!r} line any more"
        conf = conf.replace(old, new)
    conf = conf.replace(ETC, f"{files}/")
    assert not [ln for ln in conf.splitlines() if "/etc/" in ln and not ln.startswith("#")]
    return conf


class ShippedBroker(Broker):
    """The shipped config; `port` is the certificate listener (8883 in production),
    `password_port` the password one (8884)."""

    def __init__(self, directory: Path, pki: Pki, *, acl: bool = True) -> None:
        super().__init__(directory)
        self.password_port = free_port()
        text = render(CONF.read_text(), port=self.port, password_port=self.password_port,
                      files=pki.dir, acl=ACL if acl else None)
        self.conf.write_text(text + "\n".join([
            "", "# the test's own: log to a file, stay who we are, keep nothing",
            f"user {getpass.getuser()}", f"log_dest file {self.log}", "log_type all",
            "persistence false", ""]))

    def start(self) -> None:
        super().start()  # waits for the first listener; the second opens just after
        wait_for(lambda: port_open(self.password_port), timeout=10,
                 what="the password listener")
