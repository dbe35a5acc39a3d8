"""Latency profiles in the emulators (devstack/latency.py, applied by devstack/control.py).

Against the session's real emulators over HTTPS. Every test leaves both emulators on the
profile they started with (none), which the autouse fixture restores and then checks. Timing
bounds are generous on purpose: a delay is checked to be applied (at least its minimum), and
concurrent delays to overlap (well under the serialized sum), never a speed.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.__main__ import banner
from devstack.config import ROOT, read_env
from devstack.latency import AZURE, Delay, Latency, LatencySetting
from devstack.pki import Material
from devstack.stack import RunningStack
from devstack.tenant import Tenant
from tests.devstack.dataverse_helpers import API, Tokens

CONTROL = "/_emulator"


# --- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def restored(entra: Any, dataverse: Any) -> Iterator[None]:
    yield
    for url in (entra.url, dataverse.url):
        requests.delete(f"{url}{CONTROL}/faults", timeout=5).raise_for_status()
        requests.delete(f"{url}{CONTROL}/latency", timeout=5).raise_for_status()
        assert requests.get(f"{url}{CONTROL}/latency", timeout=5).json()["profile"] == "none"
    requests.delete(f"{dataverse.url}{CONTROL}/limits", timeout=5).raise_for_status()


@pytest.fixture(scope="module")
def tokens(entra: Any, tenant: Tenant, dataverse: Any) -> Tokens:
    return Tokens(entra.app.state.entra, tenant, dataverse.url)


def _put_latency(url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.put(f"{url}{CONTROL}/latency", json=body, timeout=5)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _log_since(url: str, seq: int) -> list[dict[str, Any]]:
    log = requests.get(f"{url}{CONTROL}/requests?since={seq}", timeout=5).json()["requests"]
    return list(log)


def _last_seq(url: str) -> int:
    log = _log_since(url, 0)
    return int(log[-1]["seq"]) if log else 0


Call = Callable[[], requests.Response]


def _entra_calls(entra: Any, tenant: Tenant, material: Material) -> dict[str, list[Call]]:
    """One request of every Entra endpoint class."""
    base = f"{entra.url}/{tenant.id}"
    form = {
        "grant_type": "client_credentials",
        "client_id": tenant.app("central-api").client_id,
        "client_secret": material.client_secret("central-api"),
        "scope": f"{tenant.app('dataverse').identifier_uris[0]}/.default",
    }
    upn = tenant.user("alice").upn
    return {
        "token": [lambda: requests.post(f"{base}/oauth2/v2.0/token", data=form, timeout=10)],
        "metadata": [
            lambda: requests.get(f"{base}/v2.0/.well-known/openid-configuration", timeout=10),
            lambda: requests.get(f"{base}/discovery/v2.0/keys", timeout=10),
        ],
        "other": [lambda: requests.get(f"{entra.url}/common/userrealm/{upn}", timeout=10)],
    }


def _dataverse_calls(dataverse: Any, tokens: Tokens) -> dict[str, list[Call]]:
    """One request of every Dataverse endpoint class (the write is refused: no such row)."""
    headers = {"Authorization": f"Bearer {tokens.user('bob')}"}
    api = f"{dataverse.url}{API}"
    missing = uuid.uuid4()
    return {
        "read": [lambda: requests.get(f"{api}/contacts?$top=1", headers=headers, timeout=10)],
        "write": [
            lambda: requests.delete(f"{api}/contacts({missing})", headers=headers, timeout=10)
        ],
        "other": [lambda: requests.get(f"{dataverse.url}/elsewhere", timeout=10)],
    }


def _timed(call: Call) -> float:
    started = time.perf_counter()
    call().close()
    return time.perf_counter() - started


# --- the setting ---------------------------------------------------------------------------------


def test_setting_defaults_to_none_and_reads_the_profile_and_seed() -> None:
    assert LatencySetting.from_env({}) == LatencySetting("none", None)
    assert LatencySetting.from_env({"DEVSTACK_LATENCY": ""}) == LatencySetting("none", None)
    assert LatencySetting.from_env({"DEVSTACK_LATENCY": " Azure "}).profile == "azure"
    setting = LatencySetting.from_env({"DEVSTACK_LATENCY": "azure", "DEVSTACK_LATENCY_SEED": "42"})
    assert setting == LatencySetting("azure", 42)
    assert setting.as_env() == {"DEVSTACK_LATENCY": "azure", "DEVSTACK_LATENCY_SEED": "42"}
    assert LatencySetting().as_env() == {"DEVSTACK_LATENCY": "none"}


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"DEVSTACK_LATENCY": "fast-ish"}, "DEVSTACK_LATENCY"),
        (
            {"DEVSTACK_LATENCY": "azure", "DEVSTACK_LATENCY_SEED": "fast-ish"},
            "DEVSTACK_LATENCY_SEED",
        ),
    ],
)
def test_a_bad_setting_is_refused_by_name_without_its_value(
    environ: dict[str, str], named: str
) -> None:
    with pytest.raises(ValueError, match=named) as caught:
        LatencySetting.from_env(environ)
    assert "fast-ish" not in str(caught.value)


def test_make_run_fails_at_start_with_one_line_naming_the_setting(tmp_path: Path) -> None:
    env = {**os.environ, "DEVSTACK_DIR": str(tmp_path), "DEVSTACK_LATENCY": "fast-ish"}
    result = subprocess.run(
        [sys.executable, "-m", "devstack", "run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: DEVSTACK_LATENCY must be one of: none, azure"
    ]
    assert not (tmp_path / "stack.env").exists()


def test_stack_env_and_banner_name_the_profile(stack: RunningStack) -> None:
    written = read_env(Path(stack.settings["DEVSTACK_DIR"]) / "stack.env")
    assert written["DEVSTACK_LATENCY"] == "none"
    assert "Latency profile     none" in banner(stack.settings)
    seeded = {**stack.settings, **LatencySetting("azure", 7).as_env()}
    assert "Latency profile     azure, seed 7" in banner(seeded)


# --- the distribution ----------------------------------------------------------------------------


def test_draws_are_log_normal_around_the_median_and_clamped() -> None:
    delay = Delay(80, 200, 30, 1000)
    rng = random.Random(1)
    draws = sorted(delay.draw(rng) for _ in range(20_000))
    assert 75 <= draws[len(draws) // 2] <= 85
    assert 185 <= draws[int(len(draws) * 0.95)] <= 215
    assert draws[0] >= 30
    assert draws[-1] <= 1000
    assert Delay.from_json({"median_ms": 100}).draw(rng) == 100  # fixed: no jitter
    assert delay.mean_ms == pytest.approx(statistics.fmean(draws), rel=0.02)


def test_a_seed_repeats_the_draws_class_by_class() -> None:
    def seeded(seed: int) -> Latency:
        classes = ("read", "write", "other")
        return Latency("dataverse", classes=classes, setting=LatencySetting("azure", seed))

    def reads(latency: Latency) -> list[float]:
        return [latency.draw("read") for _ in range(5)]

    one, two = seeded(3), seeded(3)
    two.draw("write")  # another class's traffic does not shift the reads
    first = reads(one)
    assert first == reads(two)
    one.restore()
    assert reads(one) == first
    assert reads(seeded(4)) != first


# --- the profiles, end to end --------------------------------------------------------------------


def test_azure_profile_delays_every_class_by_at_least_its_minimum(
    entra: Any, dataverse: Any, tenant: Tenant, material: Material, tokens: Tokens
) -> None:
    tokens.user("bob")  # sign before the profile, so the clock starts at the request
    for url in (entra.url, dataverse.url):
        assert _put_latency(url, {"profile": "azure"})["profile"] == "azure"
    emulators = [
        ("entra", entra.url, _entra_calls(entra, tenant, material)),
        ("dataverse", dataverse.url, _dataverse_calls(dataverse, tokens)),
    ]
    for emulator, url, calls in emulators:
        for cls, cls_calls in calls.items():
            minimum = AZURE[emulator][cls].min_ms
            for call in cls_calls:
                seq = _last_seq(url)
                elapsed = _timed(call)
                [entry] = _log_since(url, seq)
                assert entry["latency_class"] == cls, entry["path"]
                assert minimum <= entry["latency_ms"] <= AZURE[emulator][cls].max_ms
                assert elapsed * 1000 >= entry["latency_ms"], (emulator, cls)
                assert entry["duration_ms"] >= entry["latency_ms"]


def test_none_profile_adds_nothing(
    entra: Any, dataverse: Any, tenant: Tenant, material: Material, tokens: Tokens
) -> None:
    for url in (entra.url, dataverse.url):
        assert requests.get(f"{url}{CONTROL}/latency", timeout=5).json()["profile"] == "none"
    emulators = [
        ("entra", entra.url, _entra_calls(entra, tenant, material)),
        ("dataverse", dataverse.url, _dataverse_calls(dataverse, tokens)),
    ]
    for emulator, url, calls in emulators:
        for cls, cls_calls in calls.items():
            seq = _last_seq(url)
            for call in cls_calls * 5:
                call().close()
            entries = _log_since(url, seq)
            assert {e["latency_ms"] for e in entries} == {0}
            # Generous: the emulator's own time stays below what azure would add.
            durations = sorted(e["duration_ms"] for e in entries)
            assert durations[len(durations) // 2] < AZURE[emulator][cls].min_ms, (emulator, cls)


def test_the_control_plane_is_never_delayed(entra: Any, dataverse: Any) -> None:
    for url in (entra.url, dataverse.url):
        _put_latency(url, {"classes": {"*": {"median_ms": 1000}}})
        for path in ("/latency", "/requests", "/faults"):
            elapsed = _timed(lambda u=url, p=path: requests.get(f"{u}{CONTROL}{p}", timeout=10))
            assert elapsed < 1.0, path
        assert _timed(lambda u=url: requests.get(f"{u}/anything", timeout=10)) >= 1.0


def test_concurrent_delayed_requests_overlap(
    entra: Any, dataverse: Any, tenant: Tenant, tokens: Tokens
) -> None:
    count, delay = 20, 0.3
    headers = {"Authorization": f"Bearer {tokens.user('bob')}"}
    targets = [
        (entra.url, f"{entra.url}/{tenant.id}/discovery/v2.0/keys", {}),
        (dataverse.url, f"{dataverse.url}{API}/contacts?$top=1", headers),
    ]
    for url, target, extra in targets:
        sessions = [requests.Session() for _ in range(count)]
        for session in sessions:  # connections open (control plane: no delay) before the clock
            session.get(f"{url}{CONTROL}/latency", timeout=10).raise_for_status()
        _put_latency(url, {"classes": {"*": {"median_ms": delay * 1000}}})
        seq = _last_seq(url)

        def get(
            session: requests.Session, target: str = target, extra: dict[str, str] = extra
        ) -> int:
            return session.get(target, headers=extra, timeout=30).status_code

        with ThreadPoolExecutor(count) as pool:
            started = time.perf_counter()
            statuses = list(pool.map(get, sessions))
            wall = time.perf_counter() - started
        for session in sessions:
            session.close()
        assert statuses == [200] * count
        assert delay <= wall < count * delay / 2, f"{target}: {wall:.2f} s"
        assert [e["latency_ms"] for e in _log_since(url, seq)] == [delay * 1000] * count


def test_delayed_dataverse_requests_count_as_in_flight_for_the_limits(
    dataverse: Any, tokens: Tokens
) -> None:
    """As in Azure: a request is in flight for its whole latency, so one caller's concurrent
    requests beyond the concurrent-request limit are refused (429) while the others wait."""
    requests.put(f"{dataverse.url}{CONTROL}/limits", json={"concurrent": 3}, timeout=5)
    _put_latency(dataverse.url, {"classes": {"read": {"median_ms": 500}}})
    headers = {"Authorization": f"Bearer {tokens.user('bob')}"}
    target = f"{dataverse.url}{API}/contacts?$top=1"
    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(
            pool.map(
                lambda _: requests.get(target, headers=headers, timeout=30).status_code, range(8)
            )
        )
    assert statuses.count(200) >= 3
    assert 429 in statuses


def test_a_fault_delay_adds_to_the_profile(entra: Any, tenant: Tenant) -> None:
    _put_latency(entra.url, {"classes": {"metadata": {"median_ms": 200}}})
    fault = {"path": "*/discovery/*", "delay_ms": 200, "count": 1}
    requests.post(f"{entra.url}{CONTROL}/faults", json=fault, timeout=5).raise_for_status()
    seq = _last_seq(entra.url)
    elapsed = _timed(lambda: requests.get(f"{entra.url}/{tenant.id}/discovery/keys", timeout=10))
    [entry] = _log_since(entra.url, seq)
    assert elapsed >= 0.4
    assert entry["latency_ms"] == 200
    assert entry["fault"] is not None


def test_a_faulted_answer_waits_the_profile_too(entra: Any, tenant: Tenant) -> None:
    _put_latency(entra.url, {"classes": {"token": {"median_ms": 200}}})
    fault = {"path": "*/token", "status": 503, "count": 1}
    requests.post(f"{entra.url}{CONTROL}/faults", json=fault, timeout=5).raise_for_status()
    seq = _last_seq(entra.url)
    url = f"{entra.url}/{tenant.id}/oauth2/v2.0/token"
    elapsed = _timed(lambda: requests.post(url, data={}, timeout=10))
    [entry] = _log_since(entra.url, seq)
    assert (entry["status"], entry["latency_ms"]) == (503, 200)
    assert elapsed >= 0.2


def test_the_dataverse_emulators_own_key_fetch_is_not_delayed(entra: Any, dataverse: Any) -> None:
    _put_latency(entra.url, {"profile": "azure"})
    seq = _last_seq(entra.url)
    response = requests.post(f"{dataverse.url}{CONTROL}/keys/refresh", timeout=10)
    response.raise_for_status()
    [entry] = _log_since(entra.url, seq)
    assert entry["latency_class"] == "metadata"
    assert entry["latency_ms"] == 0


def test_a_seeded_profile_repeats_its_delays_over_http(entra: Any, tenant: Tenant) -> None:
    target = f"{entra.url}/{tenant.id}/discovery/v2.0/keys"

    def run() -> list[float]:
        _put_latency(entra.url, {"profile": "azure", "seed": 12})
        seq = _last_seq(entra.url)
        for _ in range(4):
            requests.get(target, timeout=10).raise_for_status()
        return [e["latency_ms"] for e in _log_since(entra.url, seq)]

    first = run()
    assert first == run()
    assert len(set(first)) > 1  # jitter, not a fixed delay


# --- switching at run time -----------------------------------------------------------------------


def test_get_and_put_describe_and_switch_the_profile(entra: Any, dataverse: Any) -> None:
    entra_now = requests.get(f"{entra.url}{CONTROL}/latency", timeout=5).json()
    assert entra_now == {
        "profile": "none",
        "base": "none",
        "seed": None,
        "classes": {
            key: {"median_ms": 0.0, "p95_ms": 0.0, "min_ms": 0.0, "max_ms": 0.0}
            for key in ("token", "metadata", "other")
        },
    }
    azure = _put_latency(dataverse.url, {"profile": "azure"})
    assert azure["profile"] == "azure"
    assert azure["classes"]["write"] == {
        "median_ms": 120,
        "p95_ms": 300,
        "min_ms": 50,
        "max_ms": 1500,
    }
    custom = _put_latency(dataverse.url, {"classes": {"read": {"median_ms": 100}}})
    assert (custom["profile"], custom["base"]) == ("custom", "azure")
    assert custom["classes"]["read"] == {
        "median_ms": 100,
        "p95_ms": 100,
        "min_ms": 100,
        "max_ms": 100,
    }
    assert custom["classes"]["write"] == azure["classes"]["write"]  # the others stay


@pytest.mark.parametrize(
    "body",
    [
        {"profile": "fast"},
        {"classes": {"token": {"median_ms": 10}}},  # not a Dataverse class
        {"classes": {"read": {"median_ms": 100, "p95_ms": 50}}},
        {"classes": {"read": {"median_ms": -1}}},
        {"classes": {"read": {"median_ms": True}}},
        {"classes": {"read": {"median_ms": 10, "extra": 1}}},
        {"seed": "x", "profile": "azure"},
        {},
        [],
    ],
)
def test_a_bad_profile_change_is_400_and_changes_nothing(dataverse: Any, body: Any) -> None:
    before = requests.get(f"{dataverse.url}{CONTROL}/latency", timeout=5).json()
    response = requests.put(f"{dataverse.url}{CONTROL}/latency", json=body, timeout=5)
    assert response.status_code == 400
    assert "error" in response.json()
    assert requests.get(f"{dataverse.url}{CONTROL}/latency", timeout=5).json() == before


def test_delete_and_reset_restore_the_profile_the_emulator_started_with(entra: Any) -> None:
    for restore in (
        lambda: requests.delete(f"{entra.url}{CONTROL}/latency", timeout=5),
        lambda: requests.post(f"{entra.url}{CONTROL}/reset", timeout=5),
    ):
        _put_latency(entra.url, {"profile": "azure", "seed": 5})
        assert restore().status_code == 204
        now = requests.get(f"{entra.url}{CONTROL}/latency", timeout=5).json()
        assert (now["profile"], now["seed"]) == ("none", None)


def test_an_emulator_started_with_azure_restores_azure() -> None:
    setting = LatencySetting("azure", 9)
    latency = Latency("entra", classes=("token", "metadata", "other"), setting=setting)
    latency.update({"profile": "none"})
    assert latency.draw("token") == 0
    latency.restore()
    assert latency.snapshot()["profile"] == "azure"
    assert latency.snapshot()["seed"] == 9
    assert latency.draw("token") >= AZURE["entra"]["token"].min_ms


def test_the_readme_table_gives_the_profiles_figures() -> None:
    text = (ROOT / "docs" / "devstack.md").read_text(encoding="utf-8")
    section = text.split("## Latency profiles", 1)[1].split("\n## ", 1)[0]
    names = {"Entra ID": "entra", "Dataverse": "dataverse"}
    documented: dict[tuple[str, str], list[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 8 and cells[0] in names:
            documented[(names[cells[0]], cells[1].strip("`"))] = cells[3:7]
    expected = {
        (emulator, cls): [
            f"{d.median_ms:,.0f} ms",
            f"{d.p95_ms:,.0f} ms",
            f"{d.min_ms:,.0f}–{d.max_ms:,.0f} ms",
            f"{d.mean_ms:,.0f} ms",
        ]
        for emulator, classes in AZURE.items()
        for cls, d in classes.items()
    }
    assert documented == expected
