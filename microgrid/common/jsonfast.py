"""JSON through orjson: the API's renderer and parser, and the encoding of stored records.

The standard library's `json` spent about 50 ms encoding a 2,000-charger cycle
document (1.6 MB); orjson does it in a few. The output is the same JSON as DRF's
JSONRenderer gives (compact, UTF-8, U+2028/U+2029 escaped, datetimes, decimals,
UUIDs and lazy strings through DRF's own encoder), with one difference: a NaN
or infinite float becomes `null` where DRF would raise (a 500); the product
never produces one.

The parser reads the body with orjson; a body orjson refuses is read again by
DRF's parser, so that what is accepted and the error text of what is refused
stay exactly as before (orjson refuses integers beyond 64 bits, which the
standard library reads and a field check then refuses with its own message).
"""

from __future__ import annotations

import io
from typing import Any

import orjson
from rest_framework.parsers import JSONParser, get_encoding
from rest_framework.renderers import JSONRenderer
from rest_framework.utils.encoders import JSONEncoder

_encoder = JSONEncoder()
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> bytes:
    """Compact JSON bytes, as the API renders them."""
    out = orjson.dumps(value, default=_encoder.default, option=_OPTIONS)
    if b"\xe2\x80\xa8" in out or b"\xe2\x80\xa9" in out:
        # As DRF: JSON that is also a strict JavaScript subset.
        out = out.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
    return out


loads = orjson.loads


class FastJSONRenderer(JSONRenderer):
    """DRF's JSONRenderer through orjson (pretty-printing requests fall back to DRF's)."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        if self.get_indent(accepted_media_type, renderer_context or {}) is not None:
            return super().render(data, accepted_media_type, renderer_context)
        return dumps(data)


class FastJSONParser(JSONParser):
    """DRF's JSONParser through orjson; whatever orjson refuses is judged by DRF's parser."""

    renderer_class = FastJSONRenderer

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = get_encoding(parser_context or {})
        body = stream.read() if stream is not None else b""
        if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
            try:
                return orjson.loads(body)
            except orjson.JSONDecodeError:
                pass
        return super().parse(io.BytesIO(body), media_type, parser_context)
