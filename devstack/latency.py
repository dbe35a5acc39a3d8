"""Latency profiles: how long the emulators take to answer, as Entra ID and Dataverse do in Azure.

The emulators answer in a millisecond or two; Entra ID and Dataverse take tens to hundreds. A
profile gives each endpoint class of an emulator a `Delay`, and every request (never the control
plane) waits a delay drawn from its class before its answer is sent: an `asyncio.sleep` on the
emulator's event loop, holding no lock and no thread, so that delayed requests wait side by side
as they would against Azure and never queue behind one another (bench/emulator_latency.py
measures it, and what an emulator's own CPU then allows). `devstack/control.py` applies the
delay and logs it (`latency_ms`) with each request.

`DEVSTACK_LATENCY` names the profile the emulators start with:

- `none` (the default, and what tests get): no delay at all, the emulators as fast as they are.
- `azure`: the figures in `AZURE` below, chosen from published measurements where there are any;
  README.md ("Latency profiles") has the table and its sources.

`DEVSTACK_LATENCY_SEED` (an integer) makes the draws repeatable: each class of each emulator has
its own generator seeded from it, so a sequential client sees the same delays run after run, and
one class's traffic does not shift another's draws. Concurrent clients get the same delays in
arrival order, which the scheduler decides.

**The distribution.** Each delay is log-normal, given by its median and its 95th percentile, and
clamped to `[min_ms, max_ms]`. Service latencies are positive and right-skewed: most requests
take about the median, a few take several times it, none take less than the network's floor. A
log-normal has exactly that shape and is the usual model of it (the product of many independent
slowdowns); two published figures (a typical value and a high percentile) fix its two
parameters: mu = ln(median), sigma = ln(p95 / median) / 1.645. The clamp keeps the floor (a
request is never faster than `min_ms`, which tests rely on) and cuts the far tail, so that one
unlucky draw cannot stall a benchmark. A delay whose p95 equals its median is fixed, without
jitter (`{"median_ms": 100}`: the bench's fixed 100 ms profile).

At run time the control plane (`/_emulator/latency` on each emulator) reads the profile, switches
it or sets custom figures per class; `POST /_emulator/reset` and `DELETE /_emulator/latency`
restore the one the emulator started with.
"""

from __future__ import annotations

import math
import os
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

SETTING = "DEVSTACK_LATENCY"
SEED_SETTING = "DEVSTACK_LATENCY_SEED"
NONE = "none"
CUSTOM = "custom"  # what GET reports once figures were set per class
ALL_CLASSES = "*"  # in a PUT: every class of the emulator
MAX_DELAY_MS = 60_000.0
Z_95 = 1.6448536269514722  # the standard normal's 95th percentile

# A request method and path -> the endpoint class whose delay it waits.
Classify = Callable[[str, str], str]


@dataclass(frozen=True)
class Delay:
    """A log-normal delay by its median and 95th percentile, clamped to [min_ms, max_ms]."""

    median_ms: float
    p95_ms: float
    min_ms: float
    max_ms: float

    @classmethod
    def fixed(cls, ms: float) -> Delay:
        return cls(ms, ms, ms, ms)

    @classmethod
    def from_json(cls, data: Any) -> Delay:
        """`{"median_ms": m, "p95_ms"?: p, "min_ms"?: lo, "max_ms"?: hi}`. p95 defaults to the
        median: a fixed delay. With jitter, min defaults to 0 and max to three times the p95."""
        if not isinstance(data, dict):
            raise ValueError("a delay is a JSON object with median_ms")
        unknown = set(data) - {"median_ms", "p95_ms", "min_ms", "max_ms"}
        if unknown:
            raise ValueError(f"unknown delay fields: {sorted(unknown)}")
        if "median_ms" not in data:
            raise ValueError("a delay needs median_ms")
        median = _milliseconds(data, "median_ms")
        p95 = _milliseconds(data, "p95_ms") if "p95_ms" in data else median
        if p95 == median:
            low, high = median, median
        else:
            low, high = 0.0, min(3 * p95, MAX_DELAY_MS)
        if "min_ms" in data:
            low = _milliseconds(data, "min_ms")
        if "max_ms" in data:
            high = _milliseconds(data, "max_ms")
        return cls(median, p95, low, high).checked()

    def checked(self) -> Delay:
        if not self.median_ms <= self.p95_ms:
            raise ValueError("p95_ms must be at least median_ms")
        if not self.min_ms <= self.median_ms <= self.max_ms:
            raise ValueError("median_ms must lie between min_ms and max_ms")
        return self

    @property
    def sigma(self) -> float:
        if self.median_ms <= 0 or self.p95_ms == self.median_ms:
            return 0.0
        return math.log(self.p95_ms / self.median_ms) / Z_95

    @property
    def mean_ms(self) -> float:
        """The mean of the clamped distribution: what a benchmark dividing by the mean emulated
        latency should expect (the request log's `latency_ms` has what was drawn)."""
        sigma = self.sigma
        if sigma == 0.0:
            return min(max(self.median_ms, self.min_ms), self.max_ms)
        mu = math.log(self.median_ms)

        def cdf(x: float) -> float:  # P(ln X <= x), ln X ~ N(mu, sigma)
            return 0.5 * (1 + math.erf((x - mu) / (sigma * math.sqrt(2))))

        low = math.log(self.min_ms) if self.min_ms > 0 else -math.inf
        high = math.log(self.max_ms)
        # E[X; low < ln X < high] for a log-normal, plus the clamped tails at their bounds.
        inside = math.exp(mu + sigma**2 / 2) * (cdf(high - sigma**2) - cdf(low - sigma**2))
        return self.min_ms * cdf(low) + inside + self.max_ms * (1 - cdf(high))

    def draw(self, rng: random.Random) -> float:
        """One delay in milliseconds."""
        sigma = self.sigma
        if sigma == 0.0:
            return self.median_ms
        value = math.exp(rng.normalvariate(math.log(self.median_ms), sigma))
        return min(max(value, self.min_ms), self.max_ms)

    def as_json(self) -> dict[str, float]:
        return asdict(self)


def _milliseconds(data: Mapping[str, Any], name: str) -> float:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of milliseconds")
    if not 0 <= value <= MAX_DELAY_MS:
        raise ValueError(f"{name} must be from 0 to {MAX_DELAY_MS:.0f}")
    return float(value)


NO_DELAY = Delay.fixed(0.0)

# The azure profile, per emulator and endpoint class: Delay(median, p95, min, max) in ms.
# Sources and reasoning: docs/devstack.md, "Latency profiles". Reads and the metadata documents are
# assumptions (no published measurement was found); the token endpoint and writes are from the
# published figures cited there.
AZURE: dict[str, dict[str, Delay]] = {
    "entra": {
        "token": Delay(150, 300, 60, 1000),  # every grant: client credentials, OBO, password...
        "metadata": Delay(50, 120, 15, 500),  # OpenID discovery documents and JWKS
        "other": Delay(50, 120, 15, 500),  # userrealm and anything unknown (404)
    },
    "dataverse": {
        "read": Delay(80, 200, 30, 1000),  # GET and HEAD under /api/data/v9.2/
        "write": Delay(120, 300, 50, 1500),  # POST, PATCH, PUT, DELETE (actions, $batch too)
        "other": Delay(80, 200, 30, 1000),  # OPTIONS, paths outside the Web API (404)
    },
}
PROFILES = (NONE, "azure")


@dataclass(frozen=True)
class LatencySetting:
    """What `DEVSTACK_LATENCY` and `DEVSTACK_LATENCY_SEED` say: a profile's name and a seed."""

    profile: str = NONE
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"{SETTING} must be one of: {', '.join(PROFILES)}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> LatencySetting:
        """The setting from the environment; ValueError naming the setting, never its value."""
        profile = environ.get(SETTING, "").strip().lower() or NONE
        if profile not in PROFILES:
            raise ValueError(f"{SETTING} must be one of: {', '.join(PROFILES)}")
        raw_seed = environ.get(SEED_SETTING, "").strip()
        seed: int | None = None
        if raw_seed:
            try:
                seed = int(raw_seed)
            except ValueError:
                raise ValueError(f"{SEED_SETTING} must be a whole number") from None
        return cls(profile, seed)

    def as_env(self) -> dict[str, str]:
        """For stack.env: the profile, and the seed when there is one."""
        env = {SETTING: self.profile}
        if self.seed is not None:
            env[SEED_SETTING] = str(self.seed)
        return env


def profile_delays(profile: str, emulator: str, classes: Iterable[str]) -> dict[str, Delay]:
    figures = AZURE.get(emulator, {}) if profile == "azure" else {}
    return {name: figures.get(name, NO_DELAY) for name in classes}


class Latency:
    """One emulator's delays: a profile's figures per class, switchable at run time.

    Thread-safe: draws come from the emulator's event loop, changes from the control plane or
    from tests in process. The lock is held to draw a number, never while a request waits.
    """

    def __init__(
        self,
        emulator: str,
        *,
        classes: Iterable[str] = ("other",),
        classify: Classify | None = None,
        setting: LatencySetting | None = None,
    ) -> None:
        self.emulator = emulator
        self.classes = tuple(classes)
        self._classify = classify or (lambda method, path: self.classes[-1])
        self._initial = setting or LatencySetting()
        self._lock = threading.Lock()
        self._profile = NONE
        self._custom = False
        self._seed: int | None = None
        self._delays: dict[str, Delay] = {}
        self._rngs: dict[str, random.Random] = {}
        self.restore()

    @property
    def profile(self) -> str:
        """The named profile in force, or "custom" once figures were set per class."""
        return CUSTOM if self._custom else self._profile

    def classify(self, method: str, path: str) -> str:
        return self._classify(method, path)

    def draw(self, latency_class: str) -> float:
        """A delay in milliseconds for one request of `latency_class`."""
        with self._lock:
            rng = self._rngs.get(latency_class)
            return self._delays[latency_class].draw(rng) if rng is not None else 0.0

    def restore(self) -> None:
        """Back to the profile and seed the emulator started with."""
        self.switch(self._initial.profile, seed=self._initial.seed)

    def switch(
        self,
        profile: str | None,
        *,
        seed: int | None = None,
        delays: Mapping[str, Delay] | None = None,
    ) -> None:
        """`profile`'s figures (None: the figures in force), with `delays` (class -> Delay; `*`
        for every class) over them; every class's generator seeded afresh from `seed`."""
        if profile is not None and profile not in PROFILES:
            raise ValueError(f"profile must be one of: {', '.join(PROFILES)}")
        with self._lock:
            current = dict(self._delays)
        if profile is None:
            figures = current
        else:
            figures = profile_delays(profile, self.emulator, self.classes)
        overrides = dict(delays or {})
        if ALL_CLASSES in overrides:
            figures = dict.fromkeys(self.classes, overrides.pop(ALL_CLASSES))
        for name, delay in overrides.items():
            if name not in figures:
                raise ValueError(f"unknown latency class {name!r}; known: {list(self.classes)}")
            figures[name] = delay
        with self._lock:
            if profile is not None:
                self._profile = profile
                self._custom = False
            self._custom = self._custom or bool(delays)
            self._seed = seed
            self._delays = figures
            self._rngs = {name: self._rng(seed, name) for name in self.classes}

    def _rng(self, seed: int | None, latency_class: str) -> random.Random:
        # Jitter, not secrets. A string seed is hashed with SHA-512: the same across runs.
        if seed is None:
            return random.Random()  # noqa: S311
        return random.Random(f"{seed}:{self.emulator}:{latency_class}")  # noqa: S311

    def update(self, data: Any) -> None:
        """A control-plane PUT: `{"profile"?: name, "classes"?: {class: DELAY}, "seed"?: int}`.
        Without `profile`, `classes` change the figures in force and leave the others be; without
        `seed`, the seed in force stays."""
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        unknown = set(data) - {"profile", "classes", "seed"}
        if unknown:
            raise ValueError(f"unknown latency fields: {sorted(unknown)}")
        profile = data.get("profile")
        if profile is not None and not isinstance(profile, str):
            raise ValueError("profile must be a string")
        seed = data.get("seed", self._seed)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError("seed must be a whole number or null")
        classes = data.get("classes", {})
        if not isinstance(classes, dict):
            raise ValueError("classes must be an object of class -> delay")
        if profile is None and not classes:
            raise ValueError("give a profile, classes or both")
        delays = {str(name): Delay.from_json(value) for name, value in classes.items()}
        self.switch(profile, seed=seed, delays=delays)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "profile": CUSTOM if self._custom else self._profile,
                "base": self._profile,
                "seed": self._seed,
                "classes": {name: delay.as_json() for name, delay in self._delays.items()},
            }


__all__ = [
    "AZURE",
    "PROFILES",
    "SEED_SETTING",
    "SETTING",
    "Delay",
    "Latency",
    "LatencySetting",
]
