"""Deterministic demo data for the Dataverse emulator, from the tenant's `[dataverse.seed]`.

`generate(tenant)` returns rows per entity set (`accounts`, `contacts`, `incidents`,
`bos_vehicles`): Norwegian-flavoured people and companies, cases in every state, vehicles with
plausible VINs and registration numbers. The same tenant always gives the same rows (ids
included). Owners go round-robin over `seed.owners` (user or app names, mapped to their Dataverse
system user ids). A lookup is a `Ref(entity_set, id)`; the emulator turns it into `_x_value`.

E-mail addresses use the reserved `.example` top-level domain, so no real mailbox is named.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import string
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Any

from devstack.tenant import Tenant

SEED_TABLES = ("accounts", "contacts", "incidents", "bos_vehicles")
EPOCH = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)  # fixed, so runs agree
TICKET_START = 1000

FIRST_NAMES = (
    "Ola", "Kari", "Ingrid", "Lars", "Sigrid", "Håkon", "Åse", "Øystein", "Bjørn", "Marit",
    "Solveig", "Eirik", "Sindre", "Nora", "Emma", "Jakob", "Filip", "Maja", "Astrid", "Magnus",
    "Henrik", "Tuva", "Ingeborg", "Even", "Ragnhild", "Torbjørn", "Kjersti", "Vegard", "Silje",
    "Mathias", "Anne-Lise", "Per Olav", "Guro", "Steinar", "Hanne", "Trond", "Line", "Aksel",
    "Live", "Sverre", "Ida", "Knut", "Mette", "Jørgen", "Thea", "Ørjan", "Åsmund", "Liv",
)  # fmt: skip
LAST_NAMES = (
    "Hansen", "Johansen", "Olsen", "Larsen", "Andersen", "Pedersen", "Nilsen", "Kristiansen",
    "Jensen", "Karlsen", "Johnsen", "Pettersen", "Eriksen", "Berg", "Haugen", "Hagen",
    "Johannessen", "Andreassen", "Jacobsen", "Dahl", "Jørgensen", "Halvorsen", "Henriksen",
    "Lund", "Sørensen", "Strand", "Solberg", "Bakken", "Moen", "Gundersen", "Lie", "Ødegård",
    "Aas", "Bråthen", "Sæther", "Fjeld", "Nygård", "Myhre", "Rønning", "Vik", "Brekke",
    "Tangen", "Holm", "Engen", "Aasen", "O'Neill", "Løvås", "Kvamme",
)  # fmt: skip
CITIES = (
    ("Oslo", "0150"), ("Bergen", "5003"), ("Trondheim", "7010"), ("Stavanger", "4006"),
    ("Drammen", "3015"), ("Fredrikstad", "1606"), ("Kristiansand", "4611"), ("Tromsø", "9008"),
    ("Sandnes", "4307"), ("Ålesund", "6002"), ("Bodø", "8006"), ("Lillestrøm", "2000"),
    ("Hamar", "2317"), ("Tønsberg", "3110"), ("Molde", "6413"), ("Gjøvik", "2815"),
)  # fmt: skip
STREETS = (
    "Storgata", "Kirkegata", "Skolegata", "Parkveien", "Bjørkeveien", "Fjordgata",
    "Sjøgata", "Granveien", "Industriveien", "Bryggen", "Elvegata", "Torggata",
)  # fmt: skip
COMPANY_STEMS = (
    "Nordlys", "Fjord", "Vestland", "Fjellheim", "Polar", "Havbris", "Skog og Vei", "Midtnorsk",
    "Trøndelag", "Viken", "Lofoten", "Sørlandets", "Romerike", "Hedmark", "Rogaland", "Bergens",
)  # fmt: skip
COMPANY_KINDS = (
    "Transport", "Bil", "Logistikk", "Bygg", "Rørlegger", "Elektro", "Taxi", "Utleie",
    "Entreprenør", "Anlegg", "Budservice", "Varetransport",
)  # fmt: skip
JOB_TITLES = (
    "Daglig leder", "Innkjøpsansvarlig", "Flåteansvarlig", "Økonomisjef", "Sjåfør",
    "Driftsleder", "Prosjektleder", "Servicekoordinator", None, None,
)  # fmt: skip
MAIL_DOMAINS = ("epost.example", "nettpost.example", "postkassen.example", "mail.example")

# make -> (world manufacturer identifier, [(model, first model year, electric)])
VEHICLES: dict[str, tuple[str, tuple[tuple[str, int, bool], ...]]] = {
    "Mercedes-Benz": (
        "W1K",
        (("A-Klasse", 2012, False), ("C-Klasse", 2012, False), ("E-Klasse", 2012, False),
         ("EQA", 2021, True), ("EQB", 2022, True), ("EQC", 2019, True), ("EQE", 2022, True),
         ("EQS", 2021, True), ("GLC", 2015, False)),
    ),
    "Mercedes-Benz Vans": (
        "W1V",
        (("Sprinter", 2012, False), ("Vito", 2012, False), ("eVito", 2019, True),
         ("eSprinter", 2020, True)),
    ),
    "Kia": (
        "KNA",
        (("Niro", 2016, False), ("e-Niro", 2019, True), ("EV6", 2021, True), ("EV9", 2023, True),
         ("Sportage", 2012, False), ("Sorento", 2012, False), ("Ceed", 2012, False),
         ("Picanto", 2012, False)),
    ),
    "Peugeot": (
        "VF3",
        (("208", 2012, False), ("e-208", 2020, True), ("2008", 2013, False),
         ("e-2008", 2020, True), ("308", 2013, False), ("3008", 2016, False),
         ("Partner", 2012, False), ("e-Expert", 2020, True)),
    ),
    "Citroën": (
        "VF7",
        (("C3", 2012, False), ("ë-C4", 2020, True), ("Berlingo", 2012, False),
         ("ë-Berlingo", 2021, True), ("C5 Aircross", 2018, False)),
    ),
    "Opel": (
        "W0V",
        (("Corsa", 2012, False), ("Corsa-e", 2020, True), ("Mokka-e", 2021, True),
         ("Astra", 2012, False), ("Vivaro-e", 2020, True)),
    ),
}  # fmt: skip
VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"  # no I, O, Q
VIN_YEAR_CODES = "ABCDEFGHJKLMNPRSTVWXY123456789"  # 2010 = A ... 2039 = 9
PLATE_LETTERS = "ABCDEFHJKLNPRSTUVWXYZ"
EV_PREFIXES = ("EB", "EC", "ED", "EE", "EF", "EH", "EJ", "EK", "EL", "EN", "EP", "ER", "ES", "EV")

CASE_TITLES = (
    "Service på {vehicle}",
    "Varsellampe lyser på {vehicle}",
    "Bestilling av vinterhjul",
    "Spørsmål om EU-kontroll",
    "Garantisak: {vehicle} starter ikke",
    "Lading fungerer ikke ({vehicle})",
    "Klage på faktura",
    "Endring av avtale for firmabil",
    "Bytte av bremseklosser",
    "Programvareoppdatering",
    "Skade etter parkering",
    "Ønsker prøvekjøring av {vehicle}",
)  # fmt: skip
CASE_DESCRIPTIONS = (
    "Kunden ringte og ba om å bli kontaktet i løpet av dagen.",
    "Kunden har lagt ved bilder i e-post.",
    "Bilen står på verkstedet i påvente av deler.",
    "Avtalt time neste uke, kunden trenger lånebil.",
    "Kunden opplyser at feilen oppstod etter siste service.",
    None,
)  # fmt: skip


@dataclass(frozen=True)
class Ref:
    """A lookup value in seed rows: the target entity set and key."""

    entity_set: str
    key: str


Rows = dict[str, list[dict[str, Any]]]


def owner_ids(tenant: Tenant) -> list[str]:
    """`seed.owners` (user or app names) as Dataverse system user ids."""
    ids = []
    for name in tenant.seed.owners:
        entry = next(
            (u for u in tenant.dataverse_users if name in (u.user, u.app)),
            None,
        )
        if entry is None:
            raise ValueError(f"seed owner {name!r} has no Dataverse user in the tenant")
        ids.append(entry.systemuserid.lower())
    return ids


def generate(tenant: Tenant) -> Rows:
    rng = random.Random(tenant.seed.random_seed)  # noqa: S311 - demo data, not secrets
    counts = {name: int(tenant.seed.counts.get(name, 0)) for name in SEED_TABLES}
    owners = owner_ids(tenant)
    ids = {name: [_guid(rng) for _ in range(count)] for name, count in counts.items()}
    owner = itertools.cycle(owners)

    accounts = [_account(rng, i, key, next(owner)) for i, key in enumerate(ids["accounts"])]
    contacts = [_contact(rng, key, accounts, next(owner)) for key in ids["contacts"]]
    vehicles = [_vehicle(rng, key, ids, next(owner)) for key in ids["bos_vehicles"]]
    incidents = [
        _incident(rng, i, key, ids, contacts, vehicles, next(owner))
        for i, key in enumerate(ids["incidents"])
    ]
    for account in accounts:  # each company's primary contact works there, when one does
        staff = [
            c
            for c in contacts
            if c["_parentcustomerid_value"] == Ref("accounts", account["accountid"])
        ]
        if staff:
            account["_primarycontactid_value"] = Ref("contacts", rng.choice(staff)["contactid"])
    return {
        "accounts": accounts,
        "contacts": contacts,
        "incidents": incidents,
        "bos_vehicles": vehicles,
    }


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _stamps(rng: random.Random, owner: str) -> dict[str, Any]:
    created = EPOCH - dt.timedelta(days=rng.uniform(1, 3 * 365), seconds=rng.randrange(86400))
    modified = min(EPOCH, created + dt.timedelta(days=rng.expovariate(1 / 30)))
    return {
        "createdon": _iso(created),
        "modifiedon": _iso(modified),
        "_ownerid_value": Ref("systemusers", owner),
        "_createdby_value": Ref("systemusers", owner),
        "_modifiedby_value": Ref("systemusers", owner),
    }


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _ascii(text: str) -> str:
    text = text.lower().replace("æ", "ae").replace("ø", "o").replace("å", "a")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in text.replace(" ", "-") if ch.isalnum() or ch in "-.")


def _phone(rng: random.Random, mobile: bool) -> str:
    def digits(n: int) -> str:
        return "".join(rng.choice(string.digits) for _ in range(n))

    if mobile:  # 4xx xx xxx / 9xx xx xxx
        return f"+47 {rng.choice('49')}{digits(2)} {digits(2)} {digits(3)}"
    return f"+47 {rng.choice('2357')}{digits(1)} {digits(2)} {digits(2)} {digits(2)}"


def _address(rng: random.Random) -> dict[str, Any]:
    city, postcode = rng.choice(CITIES)
    return {
        "address1_line1": f"{rng.choice(STREETS)} {rng.randrange(1, 120)}",
        "address1_postalcode": postcode,
        "address1_city": city,
        "address1_country": "Norge",
    }


def _state(rng: random.Random, inactive_share: float) -> dict[str, int]:
    inactive = rng.random() < inactive_share
    return {"statecode": 1, "statuscode": 2} if inactive else {"statecode": 0, "statuscode": 1}


def _account(rng: random.Random, index: int, key: str, owner: str) -> dict[str, Any]:
    name = f"{rng.choice(COMPANY_STEMS)} {rng.choice(COMPANY_KINDS)} AS"
    domain = _ascii(name.removesuffix(" AS")) + ".example"
    return {
        "accountid": key,
        "name": name,
        "accountnumber": f"K-{10001 + index}",
        "telephone1": _phone(rng, mobile=False),
        "emailaddress1": f"post@{domain}",
        "websiteurl": f"https://www.{domain}",
        **_address(rng),
        "numberofemployees": rng.choice((3, 8, 12, 25, 40, 75, 120, 300)),
        "revenue": float(rng.randrange(2, 400) * 250_000),
        "description": None,
        "_parentaccountid_value": None,
        "_primarycontactid_value": None,
        **_state(rng, 0.05),
        **_stamps(rng, owner),
    }


def _contact(
    rng: random.Random, key: str, accounts: list[dict[str, Any]], owner: str
) -> dict[str, Any]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    employer = rng.choice(accounts) if accounts and rng.random() < 0.6 else None
    domain = str(employer["emailaddress1"]).split("@")[1] if employer else rng.choice(MAIL_DOMAINS)
    return {
        "contactid": key,
        "firstname": first,
        "lastname": last,
        "fullname": f"{first} {last}",
        "jobtitle": rng.choice(JOB_TITLES) if employer else None,
        "emailaddress1": f"{_ascii(first)}.{_ascii(last)}@{domain}" if rng.random() < 0.9 else None,
        "telephone1": _phone(rng, mobile=False) if rng.random() < 0.3 else None,
        "mobilephone": _phone(rng, mobile=True) if rng.random() < 0.85 else None,
        **_address(rng),
        "description": None,
        "_parentcustomerid_value": Ref("accounts", employer["accountid"]) if employer else None,
        **_state(rng, 0.08),
        **_stamps(rng, owner),
    }


def _vin(rng: random.Random, wmi: str, year: int) -> str:
    descriptor = "".join(rng.choice(VIN_CHARS) for _ in range(5))
    year_code = VIN_YEAR_CODES[(year - 2010) % len(VIN_YEAR_CODES)]
    plant = rng.choice(VIN_CHARS)
    serial = f"{rng.randrange(0, 1_000_000):06d}"
    vin = f"{wmi}{descriptor}0{year_code}{plant}{serial}"
    return vin[:8] + _check_digit(vin) + vin[9:]


def _check_digit(vin: str) -> str:
    """ISO 3779 / North American check digit (position 9)."""
    values = {**{str(d): d for d in range(10)}}
    for letters, start in (("ABCDEFGH", 1), ("JKLMN", 1), ("P", 7), ("R", 9), ("STUVWXYZ", 2)):
        for offset, letter in enumerate(letters):
            values[letter] = start + offset
    weights = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
    total = sum(values[ch] * w for ch, w in zip(vin, weights, strict=True))
    remainder = total % 11
    return "X" if remainder == 10 else str(remainder)


def _plate(rng: random.Random, electric: bool) -> str:
    prefix = (
        rng.choice(EV_PREFIXES)
        if electric
        else "".join(rng.choice(PLATE_LETTERS) for _ in range(2))
    )
    return f"{prefix}{rng.randrange(10000, 100000)}"


def _vehicle(rng: random.Random, key: str, ids: dict[str, list[str]], owner: str) -> dict[str, Any]:
    make = rng.choice(sorted(VEHICLES))
    wmi, models = VEHICLES[make]
    model, first_year, electric = rng.choice(models)
    year = rng.randrange(max(first_year, 2012), 2027)
    plate = _plate(rng, electric)
    contacts = ids["contacts"]
    return {
        "bos_vehicleid": key,
        "bos_name": f"{make.removesuffix(' Vans')} {model} {plate}",
        "bos_vin": _vin(rng, wmi, year),
        "bos_registrationnumber": plate,
        "bos_make": make.removesuffix(" Vans"),
        "bos_model": model,
        "bos_modelyear": year,
        "_bos_ownercontactid_value": Ref("contacts", rng.choice(contacts))
        if contacts and rng.random() < 0.9
        else None,
        **_state(rng, 0.04),
        **_stamps(rng, owner),
    }


def _ticket(rng: random.Random, number: int) -> str:
    suffix = "".join(
        rng.choice(string.ascii_uppercase if i % 2 == 0 else string.digits) for i in range(6)
    )
    return f"CAS-{number:05d}-{suffix}"


def _incident(
    rng: random.Random,
    index: int,
    key: str,
    ids: dict[str, list[str]],
    contacts: list[dict[str, Any]],
    vehicles: list[dict[str, Any]],
    owner: str,
) -> dict[str, Any]:
    vehicle = rng.choice(vehicles) if vehicles else None
    label = f"{vehicle['bos_make']} {vehicle['bos_model']}" if vehicle else "bilen"
    contact = next(
        (
            c
            for c in contacts
            if vehicle and Ref("contacts", c["contactid"]) == vehicle["_bos_ownercontactid_value"]
        ),
        rng.choice(contacts) if contacts else None,
    )
    customer: Ref | None = None
    primary: Ref | None = None
    if contact is not None:
        customer = Ref("contacts", contact["contactid"])
        employer = contact["_parentcustomerid_value"]
        if isinstance(employer, Ref) and rng.random() < 0.3:
            customer, primary = employer, customer
    elif ids["accounts"]:
        customer = Ref("accounts", rng.choice(ids["accounts"]))
    roll = rng.random()
    if roll < 0.6:
        state = {"statecode": 0, "statuscode": rng.choice((1, 1, 1, 2, 3, 4))}
    elif roll < 0.9:
        state = {"statecode": 1, "statuscode": rng.choice((5, 5, 1000))}
    else:
        state = {"statecode": 2, "statuscode": rng.choice((6, 6, 2000))}
    return {
        "incidentid": key,
        "title": rng.choice(CASE_TITLES).format(vehicle=label),
        "ticketnumber": _ticket(rng, TICKET_START + 1 + index),
        "description": rng.choice(CASE_DESCRIPTIONS),
        "prioritycode": rng.choice((1, 2, 2, 2, 3)),
        "caseorigincode": rng.choice((1, 1, 2, 2, 3, 2483)),
        "casetypecode": rng.choice((1, 2, 2, 3)),
        "_customerid_value": customer,
        "_primarycontactid_value": primary,
        **state,
        **_stamps(rng, owner),
    }
