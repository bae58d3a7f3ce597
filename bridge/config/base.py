"""How the config model uses pydantic: a strict, frozen base model that reports unknown keys
with the valid ones, types environment values by their key, reads `<secret>_file`, and takes an
empty section for its defaults; the Secret type; problems in the config's own words."""

import dataclasses
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError, PydanticKnownError, core_schema


def problem(message: str, instead_of: str | None = None) -> PydanticCustomError:
    """A problem in the config's own words, reported at the key being validated or at the
    sibling key `instead_of` (`password_file` for a password read from a file)."""
    return PydanticCustomError("problem", "{problem}", {"problem": message, "key": instead_of})


def problems(found: list[tuple[tuple[str | int, ...], str]]) -> ValidationError:
    """Problems found by a model's own check, each at its place below the model."""
    details: list[Any] = [
        {"type": problem(message), "loc": loc, "input": None} for loc, message in found
    ]
    return ValidationError.from_exception_data("config", details)


class Secret(str):
    """A string that never shows itself in repr(), logs or the normalized config."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret('***')"

    def reveal(self) -> str:
        return str.__str__(self)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _secret,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda _: "***"),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        return {"type": "string", "format": "password", "writeOnly": True}


@dataclasses.dataclass(frozen=True)
class SecretFile:
    """`password_file: …` standing in for `password` until validation reads it."""

    name: str
    path: str
    also_given: bool

    def read(self) -> Secret:
        if self.also_given:
            raise problem(f"give either {self.name} or {self.name}_file", f"{self.name}_file")
        try:
            return Secret(Path(self.path).read_text(encoding="utf-8").strip())
        except OSError as exc:
            reason = exc.strerror or exc
            raise problem(f"cannot read {self.path}: {reason}", f"{self.name}_file") from None


def _secret(value: Any) -> Secret:
    if isinstance(value, SecretFile):
        return value.read()
    if isinstance(value, str):
        return Secret(value)
    raise PydanticKnownError("string_type")


def _is_text(tp: Any) -> bool:
    """Does a key of this type take text (so an environment value stays verbatim)?"""
    origin = get_origin(tp)
    if origin in (Union, UnionType):
        return all(arg is NoneType or _is_text(arg) for arg in get_args(tp))
    if origin is Annotated:
        return _is_text(get_args(tp)[0])
    if origin is Literal:
        return all(isinstance(arg, str) for arg in get_args(tp))
    return tp in (str, Secret)


class EnvText(str):
    """A value from an environment variable, parsed once its key's type is known."""

    __slots__ = ()

    def parsed(self, text: bool) -> Any:
        if text:
            return str(self)
        value = yaml.safe_load(str(self))
        return str(self) if isinstance(value, dict | list) else value


@dataclasses.dataclass(frozen=True)
class UnknownKey:
    """The value of a key the model does not have, carrying the keys it has."""

    value: Any
    valid: tuple[str, ...]


class StrictModel(BaseModel):
    """No conversions (a YAML number is no text, a text no number), unknown keys refused, frozen
    (assigning raises AttributeError, as for a frozen dataclass), and no NaN or infinity."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)
    _text_keys: ClassVar[frozenset[str]] = frozenset()
    _secret_keys: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        fields = cls.model_fields
        cls._text_keys = frozenset(k for k, f in fields.items() if _is_text(f.annotation))
        cls._secret_keys = tuple(k for k in fields if f"{k}_file" in fields)

    @model_validator(mode="before")
    @classmethod
    def _prepare(cls, data: Any) -> Any:
        """A section left empty = its defaults; environment values typed; unknown keys marked
        with the valid ones; `<secret>_file` standing in for its secret."""
        if data is None:  # `tls:` left empty
            return {}
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        out: dict[Any, Any] = {}
        for key, value in data.items():
            field = fields.get(key) if isinstance(key, str) else None
            if field is None:
                out[key] = UnknownKey(value, tuple(sorted(fields)))
            elif value is None and field.default_factory is not None:
                continue  # `brokers:` or `chargers:` left empty
            elif isinstance(value, EnvText):
                out[key] = value.parsed(key in cls._text_keys)
            else:
                out[key] = value
        for name in cls._secret_keys:
            path = out.get(f"{name}_file")
            if isinstance(path, str):
                out[name] = SecretFile(name, path, also_given=out.get(name) is not None)
        return out

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):  # pydantic's private attributes
            super().__setattr__(name, value)
            return
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
