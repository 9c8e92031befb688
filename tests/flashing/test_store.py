"""The gateway's config store: boot choice, stage/commit/discard, replay and downgrade
checks, damage handling, and a SIGKILL at random moments of stage/commit."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.flashing.envelope import EnvelopeRejected, envelope_digest, sign_config
from gateway.flashing.store import SEEN_DIGESTS, ConfigMeta, ConfigStore
from tests.flashing.conftest import GATEWAY
from tests.flashing.crash_child import make_text

ROOT = Path(__file__).resolve().parents[2]
FACTORY = "gateway: {id: gw-bj-yz-01, site: s}\n# factory\n"


@pytest.fixture
def factory(tmp_path: Path) -> Path:
    path = tmp_path / "factory.yaml"
    path.write_text(FACTORY)
    return path


def local_meta(text: str, version: int) -> ConfigMeta:
    return ConfigMeta(version=version, sha256=hashlib.sha256(text.encode()).hexdigest(),
                      source="local", author="tech")


def test_boot_without_a_store_uses_the_factory_file_as_version_0(tmp_path: Path,
                                                                 factory: Path) -> None:
    store = ConfigStore(tmp_path / "config")
    choice = store.boot(factory)
    assert (choice.path, choice.text, choice.meta.version, choice.meta.source) == (
        factory, FACTORY, 0, "factory")
    assert not choice.recovered and choice.interrupted is None
    assert store.active_meta() is None and store.highest_version() == 0


def test_stage_commit_makes_last_known_good(tmp_path: Path, factory: Path) -> None:
    store = ConfigStore(tmp_path / "config")
    staged = store.stage("a: 1\n", local_meta("a: 1\n", 1))
    assert staged.read_text() == "a: 1\n" and store.applying
    assert store.active_meta() is None  # not yet
    meta = store.commit(now_ns=42)
    assert (meta.version, meta.applied_ns, store.applying) == (1, 42, False)
    store.stage("a: 2\n", local_meta("a: 2\n", 2))
    store.commit()
    choice = ConfigStore(tmp_path / "config").boot(factory)
    assert (choice.text, choice.meta.version, choice.meta.author) == ("a: 2\n", 2, "tech")
    assert choice.path.read_text() == "a: 2\n"
    assert store.previous_meta() is not None and store.previous_meta().version == 1  # type: ignore[union-attr]
    assert (tmp_path / "config" / "active" / "config.yaml").read_text() == "a: 2\n"
    assert (tmp_path / "config" / "previous" / "config.yaml").read_text() == "a: 1\n"
    assert len(list((tmp_path / "config" / "configs").iterdir())) == 2  # old ones collected


def test_discard_keeps_the_active_config(tmp_path: Path, factory: Path) -> None:
    store = ConfigStore(tmp_path / "config")
    store.stage("a: 1\n", local_meta("a: 1\n", 1))
    store.commit()
    store.stage("a: 2\n", local_meta("a: 2\n", 2))
    dropped = store.discard()
    assert dropped is not None and dropped.version == 2
    assert store.boot(factory).text == "a: 1\n"
    assert len(list((tmp_path / "config" / "configs").iterdir())) == 1


def test_a_restart_while_applying_boots_the_last_known_good(tmp_path: Path,
                                                             factory: Path) -> None:
    store = ConfigStore(tmp_path / "config")
    store.stage("a: 1\n", local_meta("a: 1\n", 1))
    store.commit()
    store.stage("a: 2\n", local_meta("a: 2\n", 2))  # … and the process dies
    choice = ConfigStore(tmp_path / "config").boot(factory)
    assert choice.recovered and choice.text == "a: 1\n"
    assert choice.interrupted is not None and choice.interrupted.version == 2
    again = ConfigStore(tmp_path / "config").boot(factory)
    assert not again.recovered and again.text == "a: 1\n"  # reported once
    # the first flash interrupted: the factory config stays
    fresh = ConfigStore(tmp_path / "fresh")
    fresh.stage("b: 1\n", local_meta("b: 1\n", 1))
    choice = ConfigStore(tmp_path / "fresh").boot(factory)
    assert choice.recovered and choice.meta.version == 0 and choice.text == FACTORY


def test_a_damaged_active_config_falls_back_to_the_previous(tmp_path: Path,
                                                             factory: Path) -> None:
    store = ConfigStore(tmp_path / "config")
    for version in (1, 2):
        text = f"a: {version}\n"
        store.stage(text, local_meta(text, version))
        store.commit()
    (tmp_path / "config" / "active" / "config.yaml").write_text("a: 2  # edited by hand\n")
    choice = store.boot(factory)
    assert choice.text == "a: 1\n" and choice.meta.version == 1
    assert any("does not match its sha256" in p for p in choice.problems)
    assert store.active_meta() is not None and store.active_meta().version == 1  # type: ignore[union-attr]


def test_a_damaged_state_file_is_rebuilt_from_the_committed_configs(
        tmp_path: Path, factory: Path) -> None:
    store = ConfigStore(tmp_path / "config")
    for version in (1, 2):
        text = f"a: {version}\n"
        store.stage(text, local_meta(text, version))
        store.commit(now_ns=version)
    store.stage("a: 3\n", local_meta("a: 3\n", 3))  # staged, never committed
    (tmp_path / "config" / "state.json").write_text("{garbage")
    choice = ConfigStore(tmp_path / "config").boot(factory)
    assert choice.text == "a: 2\n" and any("unreadable" in p for p in choice.problems)
    assert store.previous_meta() is not None and store.previous_meta().version == 1  # type: ignore[union-attr]


def test_stage_refuses_a_meta_that_does_not_match(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path / "config")
    with pytest.raises(RuntimeError, match="sha256"):
        store.stage("a: 1\n", local_meta("a: 2\n", 1))
    assert store.staged_meta() is None and not store.applying


def sign(key: Ed25519PrivateKey, version: int, *, force: bool = False, text: str = "a: 1\n",
         request_id: str = "r") -> object:
    return sign_config(text, gateway=GATEWAY, version=version, author="li", private_key=key,
                       force=force, request_id=request_id, now_ns=1)


def test_replay_and_downgrade(tmp_path: Path, signer: Ed25519PrivateKey) -> None:
    store = ConfigStore(tmp_path / "config")
    v3 = sign_config("a: 3\n", gateway=GATEWAY, version=3, author="li", private_key=signer)
    store.check_fresh(v3)
    store.remember(v3)
    store.stage(v3)
    store.commit()
    assert store.active_meta() is not None
    assert store.active_meta().key_id == v3.key_id  # type: ignore[union-attr]

    def code(env: object) -> str:
        with pytest.raises(EnvelopeRejected) as info:
            store.check_fresh(env)  # type: ignore[arg-type]
        return info.value.code

    assert code(v3) == "replayed"  # the very same envelope
    # another config under the active version's number: not an envelope seen before
    assert code(sign_config("a: 3b\n", gateway=GATEWAY, version=3, author="li",
                            private_key=signer)) == "downgrade"
    assert code(sign_config("a: 2\n", gateway=GATEWAY, version=2, author="li",
                            private_key=signer)) == "downgrade"
    forced = sign_config("a: 2\n", gateway=GATEWAY, version=2, author="li",
                         private_key=signer, force=True)
    store.check_fresh(forced)  # a signed downgrade
    store.remember(forced)
    assert code(forced) == "replayed"  # … once
    assert code(sign_config("a: 3c\n", gateway=GATEWAY, version=3, author="li",
                            private_key=signer, force=True)) == "downgrade"  # the active one
    # a version accepted and rolled back still counts: no going back to it
    v5 = sign_config("a: 5\n", gateway=GATEWAY, version=5, author="li", private_key=signer)
    store.check_fresh(v5)
    store.remember(v5)
    store.stage(v5)
    store.discard()
    assert store.highest_version() == 5
    assert code(sign_config("a: 4\n", gateway=GATEWAY, version=4, author="li",
                            private_key=signer)) == "downgrade"
    store.check_fresh(sign_config("a: 6\n", gateway=GATEWAY, version=6, author="li",
                                  private_key=signer))


def test_seen_digests_are_bounded(tmp_path: Path, signer: Ed25519PrivateKey,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert SEEN_DIGESTS == 1000
    monkeypatch.setattr("gateway.flashing.seen.SEEN_DIGESTS", 20)
    store = ConfigStore(tmp_path / "config")
    first = sign_config("a\n", gateway=GATEWAY, version=1, author="li", private_key=signer,
                        request_id="r0", now_ns=0)
    store.remember(first, accepted=False)
    for i in range(1, 25):
        env = sign_config("a\n", gateway=GATEWAY, version=1, author="li", private_key=signer,
                          request_id=f"r{i}", now_ns=i)
        store.remember(env, accepted=False)
    seen = json.loads((tmp_path / "config" / "seen.json").read_text())
    assert len(seen["digests"]) == 20 and seen["highest"] == 0
    assert envelope_digest(first) not in seen["digests"]


# ---------------------------------------------------------------- SIGKILL

def test_sigkill_during_stage_or_commit_always_boots_a_whole_config(
        tmp_path: Path, factory: Path) -> None:
    """Kill a process that stages and commits configs in a loop at random moments; after each
    kill the store boots a complete, hash-consistent config — the last one committed or the
    one being committed — never a mix, a torn file or an older one."""
    directory = tmp_path / "config"
    rng = random.Random(20260101)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    booted = 0
    recoveries = 0
    for _round in range(24):
        child = subprocess.Popen([sys.executable, "-m", "tests.flashing.crash_child",
                                  str(directory)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                 text=True)
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.0, 0.25))
        child.send_signal(signal.SIGKILL)
        lines = child.stdout.read().split()
        child.wait()
        child.stdout.close()
        done = [int(v) for word, v in zip(lines[::2], lines[1::2], strict=False)
                if word == "committed"]
        staged = [int(v) for word, v in zip(lines[::2], lines[1::2], strict=False)
                  if word == "staged"]
        choice = ConfigStore(directory).boot(factory)
        text = choice.text
        assert hashlib.sha256(text.encode()).hexdigest() == choice.meta.sha256
        if choice.meta.version == 0:
            assert text == FACTORY
        else:
            assert text == make_text(choice.meta.version)  # whole, and the version it says
        # never older than what was committed before the kill, never newer than staged
        assert choice.meta.version >= max([booted, *done])
        assert choice.meta.version <= max([booted, *staged])
        assert choice.meta.version % 4 != 0 or choice.meta.version == 0  # discarded ones
        booted = choice.meta.version
        recoveries += choice.recovered
        assert len(list((directory / "configs").iterdir())) <= 2
        assert not ConfigStore(directory).applying
    assert booted > 0  # the loop did make progress between kills
    print(f"booted version {booted}, {recoveries} kills landed while applying")
    assert recoveries > 0  # some kills did land between stage and commit
