"""Update masks (AIP-134): copy the named fields from a request's resource onto the stored one."""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message

from control_plane.core.errors import FieldViolation, InvalidArgument

__all__ = ["apply_update_mask"]


def _descend(msg: Message, path: list[str]) -> tuple[Message, str]:
    for part in path[:-1]:
        msg = getattr(msg, part)
    return msg, path[-1]


def apply_update_mask(
    stored: Message, patch: Message, mask: FieldMask, updatable: Iterable[str], *, prefix: str
) -> None:
    """Apply ``patch`` to ``stored`` for the paths in ``mask`` (every ``updatable`` path when empty).

    A path may be a top-level updatable field or a sub-field of one (``source.port``).
    Raises INVALID_ARGUMENT naming ``update_mask`` for unknown or immutable paths.
    """
    allowed = set(updatable)
    paths = list(mask.paths) or sorted(allowed)
    bad = [p for p in paths if p.split(".")[0] not in allowed]
    if bad:
        raise InvalidArgument.from_violations(
            [
                FieldViolation("update_mask", f"{p!r} cannot be updated; updatable: {', '.join(sorted(allowed))}")
                for p in bad
            ]
        )
    for path in paths:
        parts = path.split(".")
        try:
            dst, last = _descend(stored, parts)
            src, _ = _descend(patch, parts)
            field = dst.DESCRIPTOR.fields_by_name[last]
        except (AttributeError, KeyError) as exc:
            raise InvalidArgument.from_violations(
                [FieldViolation("update_mask", f"{path!r} is not a field of {prefix}")]
            ) from exc
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            getattr(dst, last).clear()
            getattr(dst, last).update(getattr(src, last))
        elif field.is_repeated:
            del getattr(dst, last)[:]
            getattr(dst, last).extend(getattr(src, last))
        elif field.message_type is not None:
            if src.HasField(last):
                getattr(dst, last).CopyFrom(getattr(src, last))
            else:
                dst.ClearField(last)
        else:
            setattr(dst, last, getattr(src, last))
