"""go-e API v2 (V3 and later): status JSON → ChargerStatus, commands → `/api/set` query
values (each a JSON literal). Pure.

Sources: goecharger/go-eCharger-API-v2 http-en.md, apikeys-en.md (docs/protocol/go-e.md#http-v2).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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
    fields, soft, nrg = c.begin(payload, ApiVersion.V2)
    frc = soft.get(c.as_int, payload, "frc")
    if frc is not None:
        fields["force_state"] = FORCE_STATES.get(frc, f"unknown_{frc}")
    err = soft.get(c.as_int, payload, "err")
    if err is not None:
        fields["error_code"] = err
        fields["error"] = ERRORS_V2.get(err, "unknown")
    model = soft.get(c.as_int, payload, "modelStatus")
    if model is not None:
        fields["model_status_code"] = model
        fields["model_status"] = MODEL_STATUS.get(model, "unknown")

    fields["current_limit_a"] = soft.get(c.as_int, payload, "amp")
    fields["effective_current_a"] = soft.get(c.as_number, payload, "acu")
    fields["max_current_a"] = soft.get(c.as_int, payload, "ama")
    fields["cable_current_a"] = soft.get(c.as_int, payload, "cbl") or None

    fields.update(nrg)
    fields["phases_in_use"] = c.phases_in_use(nrg)
    fields.update(c.availability_fields(soft(lambda: c.pha_bits_v2(payload))))
    psm = soft.get(c.as_int, payload, "psm")
    if psm is not None:
        fields["phases"] = PSM_TO_PHASES.get(psm)

    fields["energy_total_wh"] = soft.get(c.as_number, payload, "eto")  # Wh on v2
    # `wh` resets after a phase switch or pause on V3+ (go-e API v2 #198, #223): the runtime
    # replaces it with the `eto` delta since plug-in (goe.derive.SessionEnergy) and keeps
    # this one as energy_session_charger_wh.
    fields["energy_session_wh"] = soft.get(c.as_number, payload, "wh")
    fields["energy_session_charger_wh"] = fields["energy_session_wh"]

    fields["temperature_c"] = soft(lambda: c.temperature(payload))
    fields["firmware"] = soft.get(c.as_identity, payload, "fwv")
    fields["serial"] = soft.get(c.as_identity, payload, "sse")
    fields["hardware"] = soft.get(c.as_identity, payload, "typ")
    fields["variant_kw"] = soft.get(c.as_int, payload, "var")
    fields["rfid_card"] = soft(lambda: _card(payload))
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
    fields["wifi_rssi_dbm"] = soft.get(c.as_int, payload, "rssi")
    fhz = soft.get(c.as_number, payload, "fhz")
    fields["frequency_hz"] = fhz or None  # 0 = unknown (apikeys-en.md)

    return ChargerStatus(
        api_version=ApiVersion.V2,
        raw=c.public_raw(payload),
        dropped=tuple(soft.dropped),
        **{k: v for k, v in fields.items() if v is not None},
    )


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
