"""go-e API v2 (V3 and later): status JSON → ChargerStatus, commands → `/api/set` query
values (each a JSON literal). Pure.

Sources: goecharger/go-eCharger-API-v2 http-en.md, apikeys-en.md (docs/protocol/go-e.md#http-v2).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from itertools import repeat
from typing import Any

from . import codec_common as c
from .model import (
    ERRORS_V2,
    FORCE_STATES,
    MODEL_STATUS,
    ApiVersion,
    ChargerStatus,
    CodecError,
    WireValue,
    WriteRejected,
    evolve,
)

# psm: 0 auto (the charger's own logic), 1 force one phase, 2 force three (apikeys-en.md row
# since removed, still emitted by fw 60.5: docs/protocol/go-e.md#phase-switch)
PSM_TO_PHASES: Mapping[int, int | str] = {0: "auto", 1: 1, 2: 3}
PHASES_TO_PSM: Mapping[int | str, int] = {"auto": 0, 1: 1, 3: 2}

# Keys the bridge writes on API v2 (`trx`: authorise a session, `ids`: the PV surplus input).
# Not `su`: it is a stored setting (60.4 export: `su | R/W | bool | Config |
# simulateUnpluggingShort`), not a command.
WRITABLE = frozenset({"amp", "frc", "psm", "trx", "ids"})

# Minimal filter for a periodic poll: everything ChargerStatus needs that changes at run
# time. Identity keys (fwv, sse, typ, var) come from the full status read at start-up;
# http-en.md: the full status "shouldn't be used for productive setups".
POLL_KEYS = (
    "car", "alw", "frc", "amp", "acu", "ama", "cbl", "err", "modelStatus", "nrg", "pha",
    "psm", "eto", "wh", "tma", "trx", "rssi", "fhz", "fwv", "acs", "lmo", "fup", "mcr",
)  # fmt: skip
# acs (60.4 key export): Open=0, Wait=1, EVCMS=2
ACCESS_CONTROL: Mapping[int, str] = {0: "open", 1: "wait", 2: "evcms"}
# What decode reads beyond POLL_KEYS, from the status read once at start-up: identity and
# the RFID card names (`cards`, or `c<n>n` on older firmware). A transport that polls with
# the filter needs to keep only these of the start-up status (unless the raw mirror is on).
STATIC_KEYS = frozenset({"sse", "typ", "var", "cards"})


def reads_static(key: str) -> bool:
    return key in STATIC_KEYS or (key[:1] == "c" and key[-1:] == "n" and key[1:-1].isdigit())


def decode(payload: Mapping[str, Any]) -> ChargerStatus:
    c.check_object(payload)
    soft = c.Lenient()  # one odd value costs that value, not the poll
    fields: dict[str, Any] = {}
    for read, _, _ in READERS:
        fields.update(read(payload, soft))
    return ChargerStatus(
        api_version=ApiVersion.V2,
        raw=c.public_raw(payload),
        dropped=tuple(soft.dropped),
        **{k: v for k, v in fields.items() if v is not None},
    )


class Decoder:
    """`decode()` for the statuses of one charger in turn: only the readers of the keys
    whose values changed run again, and the last status is copied with their fields; a
    status with the last one's values is the last status again. A status with a value left
    out (`dropped`), before or now, is decoded in full, so that the reasons come in
    decode()'s order. A poll of the simulator's 22 polled keys over 97 static ones: a full
    decode ~48 µs of CPU, ~17 µs when no value changed, ~6 µs for the objects of the last
    answer (HTTP: the same bytes are not parsed again); with noise, `nrg` changes every
    poll and `_core` with the comparison costs what a full decode does. go-e's MQTT sends
    one key a message: one reader runs, not sixteen (bench/RESULTS.md#against-the-corrected-floor).
    The result is `decode()`'s, value for value (tests/unit/test_incremental_decode.py)."""

    __slots__ = ("_payload", "_status")

    def __init__(self) -> None:
        self._payload: Mapping[str, Any] | None = None
        self._status: ChargerStatus | None = None

    def decode(self, payload: Mapping[str, Any]) -> ChargerStatus:
        last, status = self._payload, self._status
        if last is None or status is None or status.dropped or not isinstance(payload, Mapping):
            return self._keep(payload, decode(payload))
        readers: dict[Reader, dict[str, None]] = {}
        changed = False
        added = 0
        for key, value in payload.items():
            old = last.get(key, _NONE)
            if old is value:
                continue
            kind = type(value)
            if kind is type(old) and old == value and (kind not in _NESTED or same(old, value)):
                continue
            changed = True
            added += old is _NONE
            readers.update(_readers_of(key))
        if len(payload) - added != len(last):  # keys are gone
            changed = True
            for key in last:
                if key not in payload:
                    readers.update(_readers_of(key))
        if not changed:
            return status
        soft = c.Lenient()
        fields: dict[str, Any] = {}
        # in decode()'s order: of two readers that raise, decode()'s first one is the error
        for read in sorted(readers, key=_ORDER.__getitem__):
            fields.update(readers[read])  # None for each, unless the reader gives it
            fields.update(read(payload, soft))
        if soft.dropped:
            return self._keep(payload, decode(payload))  # `dropped` in decode's order
        return self._keep(payload, evolve(status, raw=c.public_raw(payload), **fields))

    def _keep(self, payload: Mapping[str, Any], status: ChargerStatus) -> ChargerStatus:
        # a copy: a transport may keep updating its dict (go-e MQTT, one key a message).
        # `raw` is one when no secret was left out of it (the polls have none): not a second
        # one of ~120 keys per charger (~5 kB each, 2.5 MB at 500 chargers)
        raw = status.raw
        self._payload = raw if len(raw) == len(payload) else dict(payload)
        self._status = status
        return status


_NONE = object()


def same(a: Any, b: Any) -> bool:
    """Equal JSON values of the same types throughout, as the readers see them: `true` is
    not `1`, `1` is not `1.0`, `-0.0` is not `0.0` (a firmware string of "-0.0")."""
    if a is b:
        return True
    kind = type(a)
    if kind is not type(b) or a != b:
        return False
    if kind is float:
        return math.copysign(1.0, a) == math.copysign(1.0, b)
    if kind is list:
        values, others = a, b
    elif kind is dict:
        values, others = list(a.values()), [b[key] for key in a]
    else:
        return True
    kinds = list(map(type, values))
    if kinds != list(map(type, others)):
        return False
    if float in kinds and kinds.count(float) == len(kinds):  # an nrg: the signs of zeros
        signs = list(map(math.copysign, repeat(1.0), values))
        return signs == list(map(math.copysign, repeat(1.0), others))
    if list in kinds or dict in kinds or float in kinds:
        return all(map(same, values, others))
    return True


# values whose == is not enough (see same())
_NESTED = frozenset({list, dict, float})


# Each reader takes the payload and the Lenient that notes what it had to leave out, and
# returns its fields (None: not reported). The core values are read strictly: a broken
# `car` or `nrg` fails the poll.


def _core(payload: Mapping[str, Any], soft: c.Lenient) -> dict[str, Any]:
    fields, nrg = c.core(payload, ApiVersion.V2)
    fields.update(nrg)
    fields["phases_in_use"] = c.phases_in_use(nrg)
    return fields


def _alw(payload: Mapping[str, Any], soft: c.Lenient) -> dict[str, Any]:
    return {"allow_charging": soft.get(c.as_bool, payload, "alw")}


def _frc(payload: Mapping[str, Any], soft: c.Lenient) -> dict[str, Any]:
    frc = soft.get(c.as_int, payload, "frc")
    return {} if frc is None else {"force_state": FORCE_STATES.get(frc, f"unknown_{frc}")}


def _err(payload: Mapping[str, Any], soft: c.Lenient) -> dict[str, Any]:
    err = soft.get(c.as_int, payload, "err")
    return {} if err is None else {"error_code": err, "error": ERRORS_V2.get(err, "unknown")}


def _model(payload: Mapping[str, Any], soft: c.Lenient) -> dict[str, Any]:
    model = soft.get(c.as_int, payload, "modelStatus")
    if model is None:
        return {}
    return {"model_status_code": model, "model_status": MODEL_STATUS.get(model, "unknown")}


def _currents(payload: Mapping[str, Any], soft: c.Lenient) -> dict[str, Any]:
    return {
        "current_limit_a": soft.get(c.as_int, payload, "amp"),
        "effective_current_a": soft.get(c.as_number, payload, "acu"),
        "max_current_a": soft.get(c.as_int, payload, "ama"),
        "cable_current_a": soft.get(c.as_int, payload, "cbl") or None,
    }


def _pha(payload: Mapping[str, Any], soft: c.Lenient) -> dict[str, Any]:
    return c.availability_fields(soft(lambda: c.pha_bits_v2(payload)))


def _psm(payload: Mapping[str, Any], soft: c.Lenient) -> dict[str, Any]:
    psm = soft.get(c.as_int, payload, "psm")
    return {} if psm is None else {"phases": PSM_TO_PHASES.get(psm)}


def _eto(payload: Mapping[str, Any], soft: c.Lenient) -> dict[str, Any]:
    return {"energy_total_wh": soft.get(c.as_number, payload, "eto")}  # Wh on v2


def _wh(payload: Mapping[str, Any], soft: c.Lenient) -> dict[str, Any]:
    # `wh` resets after a phase switch or pause on V3+ (go-e API v2 #198, #223): the runtime
    # replaces it with the `eto` delta since plug-in (goe.derive.SessionEnergy) and keeps
    # this one as energy_session_charger_wh.
    wh = soft.get(c.as_number, payload, "wh")
    return {"energy_session_wh": wh, "energy_session_charger_wh": wh}


def _temperature(payload: Mapping[str, Any], soft: c.Lenient) -> dict[str, Any]:
    return {"temperature_c": soft(lambda: c.temperature(payload))}


def _identity(payload: Mapping[str, Any], soft: c.Lenient) -> dict[str, Any]:
    return {
        "firmware": soft.get(c.as_identity, payload, "fwv"),
        "serial": soft.get(c.as_identity, payload, "sse"),
        "hardware": soft.get(c.as_identity, payload, "typ"),
        "variant_kw": soft.get(c.as_int, payload, "var"),
    }


def _rfid(payload: Mapping[str, Any], soft: c.Lenient) -> dict[str, Any]:
    return {"rfid_card": soft(lambda: _card(payload))}


def _access(payload: Mapping[str, Any], soft: c.Lenient) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    acs = soft.get(c.as_int, payload, "acs")
    if acs is not None:
        fields["access_control"] = ACCESS_CONTROL.get(acs, "unknown")
    if acs == 0:
        # Open: every session is authorised without a card or app (acs "Open=0", apikeys);
        # `trx` stays null then ("null when no transaction", apikeys-en.md)
        fields["session_authorized"] = True
    elif "trx" in payload:
        # Wait/EVCMS: authorised once a transaction runs, with a card (n) or without (0)
        fields["session_authorized"] = soft.get(c.as_int, payload, "trx") is not None
    return fields


def _rssi(payload: Mapping[str, Any], soft: c.Lenient) -> dict[str, Any]:
    return {"wifi_rssi_dbm": soft.get(c.as_int, payload, "rssi")}


def _fhz(payload: Mapping[str, Any], soft: c.Lenient) -> dict[str, Any]:
    fhz = soft.get(c.as_number, payload, "fhz")
    return {"frequency_hz": fhz or None}  # 0 = unknown (apikeys-en.md)


# The readers in decode order (the order of `dropped`), each with the keys it reads and
# every field it gives.
Reader = Callable[[Mapping[str, Any], c.Lenient], dict[str, Any]]
_NRG_FIELDS = tuple(name for name, _, _ in c.NRG_LAYOUT)
READERS: tuple[tuple[Reader, frozenset[str], tuple[str, ...]], ...] = (
    (_core, frozenset({"car", "nrg"}),
     ("car_state", "car", "plugged", "charging", "meter_fault", *_NRG_FIELDS, "phases_in_use")),
    (_alw, frozenset({"alw"}), ("allow_charging",)),
    (_frc, frozenset({"frc"}), ("force_state",)),
    (_err, frozenset({"err"}), ("error_code", "error")),
    (_model, frozenset({"modelStatus"}), ("model_status_code", "model_status")),
    (_currents, frozenset({"amp", "acu", "ama", "cbl"}),
     ("current_limit_a", "effective_current_a", "max_current_a", "cable_current_a")),
    (_pha, frozenset({"pha"}), ("phase_l1_available", "phase_l2_available", "phase_l3_available")),
    (_psm, frozenset({"psm"}), ("phases",)),
    (_eto, frozenset({"eto"}), ("energy_total_wh",)),
    (_wh, frozenset({"wh"}), ("energy_session_wh", "energy_session_charger_wh")),
    (_temperature, frozenset({"tmp", "tma"}), ("temperature_c",)),
    (_identity, frozenset({"fwv", "sse", "typ", "var"}),
     ("firmware", "serial", "hardware", "variant_kw")),
    (_rfid, frozenset({"trx", "cards"}), ("rfid_card",)),  # and the card names `c<n>n`
    (_access, frozenset({"acs", "trx"}), ("access_control", "session_authorized")),
    (_rssi, frozenset({"rssi"}), ("wifi_rssi_dbm",)),
    (_fhz, frozenset({"fhz"}), ("frequency_hz",)),
)  # fmt: skip
# key → the readers that read it, with the fields they give (all None)
_READERS_OF: dict[str, dict[Reader, dict[str, None]]] = {}
for _read, _keys, _given in READERS:
    for _key in _keys:
        _READERS_OF.setdefault(_key, {})[_read] = dict.fromkeys(_given)
_ORDER: dict[Reader, int] = {read: index for index, (read, _, _) in enumerate(READERS)}
_CARD_NAME: dict[Reader, dict[str, None]] = {_rfid: dict.fromkeys(("rfid_card",))}
_NO_READER: dict[Reader, dict[str, None]] = {}


def _readers_of(key: str) -> dict[Reader, dict[str, None]]:
    """The readers of `key`: a card name (`c<n>n`, n = trx - 1 of any integer trx, so also
    `c-2n`) is the card reader's, any other key no reader names is only in `raw`."""
    readers = _READERS_OF.get(key)
    if readers is not None:
        return readers
    card = key[:1] == "c" and key[-1:] == "n" and key[1:-1].removeprefix("-").isdigit()
    return _CARD_NAME if card else _NO_READER


def _card(payload: Mapping[str, Any]) -> str | None:
    """trx: null = no transaction, 0 = without card, n = card n-1 (apikeys-en.md)."""
    trx = c.as_int(payload, "trx")
    if not trx:
        return None
    cards = payload.get("cards")
    if isinstance(cards, list) and 0 <= trx - 1 < len(cards):
        card = cards[trx - 1]
        if isinstance(card, Mapping) and isinstance(card.get("name"), str):
            name = str(card["name"])
            if name and name != "n/a":
                return name
    name_key = f"c{trx - 1}n"
    if isinstance(payload.get(name_key), str) and payload[name_key]:
        return str(payload[name_key])
    return f"card {trx}"


def encode_set(changes: Mapping[str, WireValue]) -> dict[str, str]:
    """Query parameters for `/api/set`: every value a JSON literal (http-en.md: `amp=16`,
    `fna="name"`, `dwo=null`)."""
    out: dict[str, str] = {}
    for key, value in changes.items():
        if key not in WRITABLE:
            raise ValueError(f"{key}: not a key the bridge writes on API v2")
        if isinstance(value, float):
            raise ValueError(f"{key}: API v2 takes whole numbers here, got {value!r}")  # noqa: TRY004
        out[key] = json.dumps(value, separators=(",", ":"))
    return out


def check_set_answer(changes: Mapping[str, Any], answer: Any) -> None:
    """`/api/set` answers one entry per key: `true`, or the charger's error text."""
    if not isinstance(answer, Mapping):
        raise WriteRejected(",".join(changes), f"unexpected answer {answer!r:.80}")
    for key in changes:
        result = answer.get(key)
        if result is not True:
            reason = result if isinstance(result, str) else f"answered {result!r}"
            raise WriteRejected(key, reason)


def split_topic(topic: str) -> tuple[str, str] | None:
    """`[/]<prefix>/<serial>/<key>` → (serial, key); the write-side topics (`/set`,
    `/result`) give None. Prefixes may start with '/' (docs/protocol/go-e.md#mqtt-prefix)."""
    parts = topic.lstrip("/").split("/")
    if len(parts) < 3 or (parts[-1] in ("set", "result") and len(parts) > 3):
        return None
    return parts[-2], parts[-1]


def parse_value(key: str, payload: bytes | str) -> Any:
    """One go-e MQTT v2 value: always JSON, strings quoted (mqtt-de.md)."""
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    try:
        return json.loads(text)
    except ValueError:
        raise CodecError(f"{key}: value is not JSON: {text[:60]!r}") from None


def assemble_lines(lines: list[str]) -> dict[str, Any]:
    """A capture of `<topic> <payload>` lines → one status, the last value per key winning
    (the way a subscriber builds it from retained and periodic messages)."""
    status: dict[str, Any] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        topic, _, payload = line.strip().partition(" ")
        split = split_topic(topic)
        if split is None:
            raise CodecError(f"line {number}: not a go-e status topic: {topic[:60]!r}")
        status[split[1]] = parse_value(split[1], payload)
    if not status:
        raise CodecError("no status lines")
    return status
