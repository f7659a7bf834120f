"""personalization/?email= or ?contact=: segments, interests and campaign content for one contact."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from activation.personalization import ContactNotFound, personalize
from api.errors import InvalidParameter
from api.filters import BIGINT_MAX, check_query_params
from api.models import Scope
from api.permissions import scoped
from api.serializers.personalization import PersonalizationSerializer


def _contact_id(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= BIGINT_MAX:
        raise InvalidParameter(f"contact must be a contact id (a positive whole number), not {raw!r}.", field="contact")
    return int(raw)


@extend_schema(
    parameters=[
        OpenApiParameter("email", OpenApiTypes.STR, description="The contact's email (case-insensitive)"),
        OpenApiParameter(
            "contact", {"type": "integer", "minimum": 1, "maximum": BIGINT_MAX}, description="The contact's id"
        ),
    ],
    responses={200: PersonalizationSerializer},
    summary="What to show one contact: segments, interests and content per active campaign",
)
@api_view(["GET"])
@permission_classes([scoped(read=Scope.PERSONALIZATION_READ)])
def personalization(request: Request) -> Response:
    """Give exactly one of `email` or `contact`."""
    params = request.query_params
    check_query_params(request, {"email", "contact"})
    if ("email" in params) == ("contact" in params):
        raise InvalidParameter("Give exactly one of ?email= or ?contact=.", field="email")
    try:
        if "contact" in params:
            data = personalize(contact_id=_contact_id(params["contact"]))
        else:
            data = personalize(email=params["email"])
    except ContactNotFound as error:
        raise exceptions.NotFound(str(error)) from None
    return Response(data)
