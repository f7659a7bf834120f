"""The API's JSON parser: DRF's, with the nesting depth checked before the decoder recurses."""

from __future__ import annotations

import codecs

from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils import json

from api.errors import TooDeep
from crmseg_site.untrusted_json import JsonTooDeep, check_depth


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        # get_encoding (DRF 3.18.3) refuses bytes-to-bytes codecs; the stubs (3.18.1) predate it.
        encoding = parsers.get_encoding(parser_context or {})  # type: ignore[attr-defined]
        try:
            text = codecs.getreader(encoding)(stream).read()
            check_depth(text)
            parse_constant = json.strict_constant if self.strict else None
            return json.loads(text, parse_constant=parse_constant)
        except JsonTooDeep as error:
            raise TooDeep(str(error), field=error.path or None) from None
        except ValueError as error:
            raise ParseError(f"JSON parse error - {error}") from None
