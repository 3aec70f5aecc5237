"""Message builders shared by the dataset and tenant tests: valid datasets and transformation lists
that tests then break one field at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

import grpc
import pytest

from floe import RpcError
from floe.v1 import datasets_pb2, transforms_pb2

__all__ = [
    "ALL_KINDS",
    "all_kinds_transformations",
    "dataset",
    "expect_error",
    "fields",
    "nats_dataset",
]

tp = transforms_pb2
ST = datasets_pb2.SourceType

#: Every ``Transformation.kind`` of transforms.proto; a test checks this list against the proto.
ALL_KINDS = (
    "add_field",
    "remove_fields",
    "rename_field",
    "copy_field",
    "filter",
    "regex_replace",
    "mask",
    "hash_field",
    "convert_type",
    "parse_timestamp",
    "parse_key_value",
    "parse_json",
    "change_case",
    "sample",
    "route",
)


class _HasField(Protocol):
    @property
    def field(self) -> str: ...


def fields(violations: Iterable[_HasField]) -> set[str]:
    """The field paths named by an error's violations."""
    return {v.field for v in violations}


def dataset(
    port: int = 5514,
    *,
    source_type: datasets_pb2.SourceType.ValueType = ST.SOURCE_TYPE_SYSLOG_UDP,
    agent: str = "",
    active: bool = False,
    bind_host: str = "",
    **kwargs: object,
) -> datasets_pb2.Dataset:
    """A valid dataset; ``agent`` assigns it to one proxy."""
    ds = datasets_pb2.Dataset(
        source=datasets_pb2.Source(type=source_type, port=port, bind_host=bind_host),
        active=active,
        **kwargs,  # type: ignore[arg-type]
    )
    if agent:
        ds.proxy.agent = agent
    return ds


def nats_dataset(subject: str = "events.>", **options: str) -> datasets_pb2.Dataset:
    opts = {"subject": subject, **options} if subject else dict(options)
    return datasets_pb2.Dataset(source=datasets_pb2.Source(type=ST.SOURCE_TYPE_NATS, options=opts))


def _eq(field: str, value: str) -> tp.Condition:
    return tp.Condition(compare=tp.Comparison(field=field, operator=tp.Comparison.OPERATOR_EQ, value=value))


def all_kinds_transformations(route_to: str) -> list[tp.Transformation]:
    """One valid step of every kind, in ``ALL_KINDS`` order, with conditions of every kind."""
    every_condition = tp.Condition(
        all=tp.ConditionList(
            conditions=[
                _eq("level", "debug"),
                tp.Condition(regex=tp.RegexMatch(field="msg", pattern=r"^\d+ (ERR|WARN)")),
                tp.Condition(**{"in": tp.InSet(field="host", values=["a", "b"])}),  # type: ignore[arg-type]
                tp.Condition(exists=tp.Exists(field="user")),
                tp.Condition(any=tp.ConditionList(conditions=[_eq("x", "1"), _eq("y", "2")])),
                tp.Condition(**{"not": _eq("env", "prod")}),  # type: ignore[arg-type]
            ]
        )
    )
    return [
        tp.Transformation(id="add", add_field=tp.AddField(field="env", value="prod", overwrite=True)),
        tp.Transformation(id="rm", remove_fields=tp.RemoveFields(fields=["secret", "tmp"])),
        tp.Transformation(rename_field=tp.RenameField(**{"from": "msg", "to": "message"})),
        tp.Transformation(copy_field=tp.CopyField(**{"from": "host", "to": "origin"})),
        tp.Transformation(filter=tp.Filter(mode=tp.Filter.MODE_EXCLUDE, condition=every_condition)),
        tp.Transformation(
            when=_eq("kind", "auth"),
            regex_replace=tp.RegexReplace(field="message", pattern=r"user=(\w+)", replacement=r"user=<\1>"),
        ),
        tp.Transformation(mask=tp.Mask(field="card", pattern=r"\d{12,19}", mask_char="#", keep_last=4)),
        tp.Transformation(hash_field=tp.HashField(field="email", target="email_hash")),
        tp.Transformation(convert_type=tp.ConvertType(field="bytes", type=tp.ConvertType.TYPE_INT)),
        tp.Transformation(
            parse_timestamp=tp.ParseTimestamp(
                field="ts", target="time", formats=["rfc3339", "%Y-%m-%d %H:%M:%S", "unix_ms"], timezone="Europe/Paris"
            )
        ),
        tp.Transformation(
            parse_key_value=tp.ParseKeyValue(field="kv", pair_separator=";", kv_separator=":", prefix="kv_")
        ),
        tp.Transformation(parse_json=tp.ParseJson(field="payload", prefix="p_", separator="_")),
        tp.Transformation(change_case=tp.ChangeCase(field="level", case=tp.ChangeCase.CASE_LOWER)),
        tp.Transformation(sample=tp.Sample(rate=10)),
        tp.Transformation(route=tp.Route(condition=_eq("level", "error"), dataset=route_to)),
    ]


def expect_error(code: grpc.StatusCode, call: Callable[..., object], *args: object, **kwargs: object) -> RpcError:
    """Run ``call`` and return the RpcError it raises, checking its code."""
    with pytest.raises(RpcError) as info:
        call(*args, **kwargs)
    assert info.value.code == code, str(info.value)
    return info.value
