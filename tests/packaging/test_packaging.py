"""The hub as a user installs it: an sdist, a wheel built from it, installed into a fresh venv.

The checkout's data (firmware profiles, the MySensors node, sentences, reply catalogs,
migrations) is found through the source tree in a checkout; these tests make sure a hub
installed from a wheel, far from that tree, finds its own copy and works the same.

Building needs hatchling: the project's build backend, fetched from the package index by pip
(as ``pip wheel`` or ``python -m build`` would) when the venv does not already have it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

# Data the hub reads at run time, as (folder in the checkout, folder in the wheel).
DATA_DIRS = (
    ("firmware-bridges", "adapters/firmware/firmware-bridges"),
    ("hub/conversation/sentences", "hub/conversation/sentences"),
    ("hub/conversation/locale", "hub/conversation/locale"),
    ("hub/storage/migrations", "hub/storage/migrations"),
)

# Run by the installed hub and by the checkout: where its data came from, and what it read.
PROBE = """\
import asyncio, json, sqlite3, sys

import adapters.firmware.profile as profile
import hub
from hub.conversation import i18n, parse
from hub.storage import Storage


async def migrate(url: str) -> None:
    storage = Storage(url)
    await storage.start()  # runs the alembic migrations on a new database
    await storage.close()


asyncio.run(migrate("sqlite+aiosqlite:///" + sys.argv[1]))
db = sqlite3.connect(sys.argv[1])
print(json.dumps({
    "modules": [profile.__file__, hub.__file__],
    "bundled_dir": str(profile.BUNDLED_DIR),
    "profiles": sorted(p.stem for p in profile.BUNDLED_DIR.glob("*.yaml")),
    "node": sorted(p.name for p in (profile.BUNDLED_DIR / "mysensors-node").glob("*.*")),
    "languages": list(parse.languages()),
    "parsed": repr(parse.parse("turn off the kitchen light", "en")),
    "replies": list(i18n.available_languages()),
    "de_off": i18n.gettext_for("de")("off"),
    "revision": db.execute("SELECT version_num FROM alembic_version").fetchall(),
    "tables": [r[0] for r in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")],
}))
"""


@dataclass(frozen=True)
class Built:
    """The artifacts built from the checkout, and a venv with the wheel installed."""

    sdist: Path
    wheel: Path
    venv: Path


def _run(args: list[str | Path], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that would point Python at the checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return {**env, **extra}


def _data_files(folder: Path) -> list[str]:
    """Every file under ``folder`` a build takes, relative to it (no bytecode caches)."""
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """sdist from the checkout, wheel from the unpacked sdist, wheel installed in a fresh venv.

    Building the wheel from the sdist is what ``python -m build`` and ``pip install
    hub-0.1.0.tar.gz`` do, so a file the sdist misses fails here too.
    """
    root = tmp_path_factory.mktemp("packaging")
    env = _clean_env()
    if importlib.util.find_spec("hatchling") is None:
        backend = root / "backend"
        _run([sys.executable, "-m", "pip", "install", "-q", "--target", backend, "hatchling"], root)
        env["PYTHONPATH"] = str(backend)
    dist = root / "dist"
    _run([sys.executable, "-m", "hatchling", "build", "-t", "sdist", "-d", dist], REPO, env)
    (sdist,) = dist.glob("hub-*.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(root / "unpacked", filter="data")
    (source,) = (root / "unpacked").iterdir()
    _run([sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", dist], source, env)
    (wheel,) = dist.glob("hub-*.whl")

    # A fresh venv without pip; the project venv's pip installs the wheel into it. Only then
    # does a .pth file lend it the project venv's installed dependencies (offline): pip never
    # sees the checkout's editable `hub` there, and a plain path line in a .pth file does not
    # run the .pth files of that folder, so the checkout itself stays off sys.path.
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], root)
    pip = [sys.executable, "-m", "pip", "--python", _venv_python(venv)]
    _run([*pip, "install", "-q", "--no-deps", "--no-index", wheel], root, _clean_env())
    site = Path(
        _run(
            [_venv_python(venv), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            root,
            _clean_env(),
        ).strip()
    )
    (site / "project-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return Built(sdist, wheel, venv)


def test_the_sdist_carries_the_profiles_the_node_and_the_core_data(built: Built) -> None:
    with tarfile.open(built.sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for folder, _ in DATA_DIRS:
        expected = {f"{folder}/{name}" for name in _data_files(REPO / folder)}
        assert expected, folder
        assert expected <= names, sorted(expected - names)
    assert "firmware-bridges/mysensors-node/PROTOCOL.md" in names


def test_the_wheel_carries_the_profiles_the_node_and_the_core_data(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as archive:
        names = set(archive.namelist())
    for folder, inside in DATA_DIRS:
        expected = {f"{inside}/{name}" for name in _data_files(REPO / folder)}
        assert expected, folder
        assert expected <= names, sorted(expected - names)
    for name in ("tasmota.yaml", "shelly-gen2.yaml", "mysensors-node/PROTOCOL.md"):
        assert f"adapters/firmware/firmware-bridges/{name}" in names
    # Only the packaged copy: no stray top-level folder in site-packages.
    assert not any(name.startswith("firmware-bridges/") for name in names)


def _hub_check(built: Built, folder: Path, firmware: str) -> subprocess.CompletedProcess[str]:
    """The installed ``hub check`` on a hub.yaml with only the firmware adapter."""
    folder.mkdir()
    (folder / "hub.yaml").write_text("adapters:\n  firmware:\n" + textwrap.indent(firmware, "    "))
    return subprocess.run(
        [built.venv / "bin" / "hub", "check", "--config", "hub.yaml"],
        capture_output=True,
        text=True,
        cwd=folder,
        env=_clean_env(),
        timeout=120,
        check=False,
    )


def test_the_installed_hub_checks_the_bundled_profiles(built: Built, tmp_path: Path) -> None:
    result = _hub_check(
        built,
        tmp_path / "home",
        "profiles: [tasmota, shelly-gen2]\n"
        "tasmota:\n"
        "  devices: [{topic: kitchen_plug, name: Kitchen plug, area: kitchen}]\n"
        "shelly-gen2:\n"
        "  devices: [shellyplus1pm-a8032ab12345]\n",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "hub.yaml: OK"

    # A misspelt profile: the installed hub lists what it bundles (and checks the settings of
    # the other one against its real profile: shelly-gen2 has no option 'colour').
    result = _hub_check(
        built, tmp_path / "typo", "profiles: [tasmot, shelly-gen2]\nshelly-gen2:\n  colour: red\n"
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "hub.yaml:3:16: adapters.firmware.profiles[0]: no bundled profile 'tasmot' "
        "(did you mean 'tasmota'?); bundled: esphome, generic-json, shelly-gen2, tasmota;"
    ) in result.stdout
    assert "adapters.firmware.shelly-gen2.colour: the shelly-gen2 profile has no option" in (
        result.stdout
    )


def test_the_installed_hub_reads_its_own_data_like_the_checkout(
    built: Built, tmp_path: Path
) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    installed = json.loads(
        _run([_venv_python(built.venv), probe, outside / "installed.db"], outside, _clean_env())
    )
    checkout = json.loads(
        _run([sys.executable, probe, outside / "checkout.db"], outside, _clean_env())
    )

    # The installed copy ran, with its data from inside site-packages, not from the checkout.
    for module in installed["modules"]:
        assert Path(module).is_relative_to(built.venv), module
    bundled = Path(installed["bundled_dir"])
    assert bundled.is_relative_to(built.venv)
    assert bundled.parts[-3:] == ("adapters", "firmware", "firmware-bridges")
    assert Path(checkout["bundled_dir"]) == REPO / "firmware-bridges"

    assert installed["profiles"] == ["esphome", "generic-json", "shelly-gen2", "tasmota"]
    assert installed["node"] == ["PROTOCOL.md", "main.py", "mysnode.py"]
    assert "de" in installed["languages"]
    assert "de" in installed["replies"]
    assert installed["de_off"] != "off"  # the German catalog was read
    assert installed["parsed"] != "None"
    assert installed["revision"], "the migrations did not run"
    # Same answers, same schema, same migration head as the checkout.
    for key in ("profiles", "node", "languages", "parsed", "replies", "de_off"):
        assert installed[key] == checkout[key], key
    assert installed["revision"] == checkout["revision"]
    assert installed["tables"] == checkout["tables"]
