"""The generic controller: `<base>/<id>/<field>/set` and `<base>/<id>/set` (JSON object).

Lenient where people are used to it (`true/false/1/0/on/off`, `"16"`, `16.0`), strict where
it matters (range, type, unknown field): a rejected command is answered on
`<base>/<id>/result` with the reason and changes nothing. A retained command is applied
once, then cleared with a retained empty message (evcc does the same with its `/set`
topics).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from .. import jsontext, logs
from ..config import ChargerConfig
from ..goe.model import Target
from ..inputs import Invalid, parse_bool, parse_whole, shown
from ..publish.fields import SETTABLE, Topics, result_payload
from .base import Controller
from .plan import phase_support

log = logs.get("goe_bridge.control.mqtt")


class MqttController(Controller):
    source = "mqtt"

    def __init__(
        self,
        charger: ChargerConfig,
        *,
        on_target: Callable[[Target | None], None],
        on_state: Callable[[Mapping[str, Any]], None],
        topics: Topics,
        publish: Callable[..., None],
        on_intent: Callable[[Mapping[str, Any]], None] = lambda intent: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(charger, on_target=on_target, on_state=on_state, clock=clock)
        self.topics = topics
        self.publish = publish
        # every field commanded so far (the Target is made of them); kept by the runtime in
        # the bridge's record for its next start
        self.intent: dict[str, Any] = {}
        self.on_intent = on_intent
        # A flood of commands is summarised in the log, not written line by line.
        self.accepted = logs.Throttled(log, "info", "command.accepted")
        self.rejections = logs.Throttled(log, "warning", "command.rejected")

    # ------------------------------------------------------------------ validation

    def validate(self, field: str, value: Any) -> Any:
        if field == "allow_charging":
            return parse_bool(value)
        if field == "current_limit_a":
            amps = parse_whole(value)
            high = self.charger.limits.max_current_a
            if not 6 <= amps <= high:
                raise Invalid(f"{amps} A is outside 6..{high} A (limits.max_current_a)")
            return amps
        if field == "phases":
            if isinstance(value, str) and value.strip().lower() == "auto":
                phases: int | str = "auto"  # psm 0: the charger's own phase logic
            else:
                phases = parse_whole(value)
            if phases not in (1, 3, "auto"):
                raise Invalid(f"expected 1, 3 or auto, got {shown(value)}")
            reason = phase_support(self.status, phases)
            if reason is not None:
                raise Invalid(reason)
            return phases
        settable = ", ".join(SETTABLE)
        raise Invalid(f"unknown field {shown(field)}; settable: {settable}")

    # ------------------------------------------------------------------ messages

    def handle(self, topic: str, payload: bytes, retain: bool) -> None:
        if not payload or topic == self.topics.set("pv"):
            # an empty message deletes a retained one (ours, or the controller's): not a
            # command, and no answer; the PV input has its own handler
            return
        field = self.topics.set_field(topic)
        try:
            value = jsontext.decode_command(payload)
        except jsontext.BadPayload as exc:
            self._answer(False, field, None, str(exc))
            return
        accepted = self._handle_object(value) if field is None else self._handle_field(field, value)
        if accepted and retain:
            # Applied once, then cleared, so a new subscription does not get it again. Only
            # a command that really was retained, and only one that was carried out: an
            # empty message on every command made clients that echo it into a storm
            # (ioBroker's MQTT adapter writes it back as a `null` command). A rejected one
            # changes nothing wherever it stays. MQTT 5 flags what the publisher retained;
            # MQTT 3.1.1 only what came from the broker's store.
            self.publish(topic, b"", retain=True)

    def _handle_field(self, field: str, value: Any) -> bool:
        try:
            checked = self.validate(field, value)
        except Invalid as exc:
            self._answer(False, field, value, str(exc))
            return False
        self._apply({field: checked})
        self._answer(True, field, checked, None)
        return True

    def _handle_object(self, value: Any) -> bool:
        if not isinstance(value, Mapping) or not value:
            self._answer(False, "set", value, "expected a JSON object such as "
                         '{"allow_charging": true, "current_limit_a": 10}')  # fmt: skip
            return False
        checked: dict[str, Any] = {}
        errors = []
        for field, item in value.items():
            try:
                checked[field] = self.validate(str(field), item)
            except Invalid as exc:
                errors.append(f"{jsontext.excerpt(str(field))}: {exc}")
        if errors:
            self._answer(False, "set", value, "; ".join(errors))
            return False
        self._apply(checked)
        self._answer(True, "set", checked, None)
        return True

    def _apply(self, changes: Mapping[str, Any]) -> None:
        self.intent.update(changes)
        self.on_intent(self.intent)
        self.heard(self._target())

    def _target(self) -> Target:
        return Target(
            allow=self.intent.get("allow_charging"),
            current_a=(
                float(self.intent["current_limit_a"]) if "current_limit_a" in self.intent else None
            ),
            phases=self.intent.get("phases"),
        )

    def adopt(self, intent: Mapping[str, Any], *, live_at: float) -> list[str]:
        """The intent the bridge recorded in its last run (its memory record, read back at
        start): taken field by field as if commanded again, but as no sign of life (the
        failsafe times from `live_at`). Fields that are not valid today (a lower
        `limits.max_current_a`, phases on a v1 charger) are left out; returns them."""
        refused = []
        for field, value in intent.items():
            try:
                self.intent[field] = self.validate(str(field), value)
            except Invalid:
                refused.append(str(field))
        if self.intent:
            self.restored(self._target(), live_at=live_at)
        return refused

    def _answer(self, ok: bool, field: str | None, value: Any, error: str | None) -> None:
        if not ok:
            self.rejections.note(charger=self.charger.key, field=field, error=error)
        else:
            self.accepted.note(charger=self.charger.key, field=field, value=value)
        self.publish(self.topics.result, result_payload(ok, field, value, error))


def refuse(
    topics: Topics, publish: Callable[..., None], reason: str
) -> Callable[[str, bytes, bool], None]:
    """Handler for the set topics of a charger that another controller owns."""

    def handler(topic: str, payload: bytes, retain: bool) -> None:
        if not payload or topic == topics.set("pv"):
            return  # the PV input (control/pv_input.py) answers for itself
        field = topics.set_field(topic)
        publish(topics.result, result_payload(False, field or "set", None, reason))
        log.warning("command.refused", topic=topic, reason=reason)

    return handler
