"""The error shape every endpoint returns, for the OpenAPI schema (built in api/errors.py)."""

from rest_framework import serializers


class ErrorItemSerializer(serializers.Serializer):
    path = serializers.CharField(allow_null=True, help_text="JSON path of the problem, e.g. rows[3].email")
    message = serializers.CharField()
    code = serializers.CharField()


class ErrorDetailsSerializer(serializers.Serializer):
    errors = ErrorItemSerializer(many=True, required=False, help_text="Every validation problem")  # type: ignore[assignment]  # a declared field; DRF's metaclass takes it off the class
    scopes = serializers.ListField(child=serializers.CharField(), required=False, help_text="Scopes the call needs")
    limit = serializers.IntegerField(required=False, help_text="Most rows a bulk request may carry")
    received = serializers.IntegerField(required=False)
    retry_after = serializers.IntegerField(required=False, allow_null=True, help_text="Seconds until a retry")


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(
        help_text="Machine code: invalid, parse_error, unknown_parameter, invalid_parameter, invalid_cursor,"
        " not_authenticated, authentication_failed, permission_denied, missing_scope, not_found,"
        " method_not_allowed, unsupported_media_type, payload_too_large, too_deep, conflict, throttled"
    )
    message = serializers.CharField(help_text="What went wrong and where, for a person")
    field = serializers.CharField(allow_null=True, help_text="Query parameter, field or JSON path concerned")
    details = ErrorDetailsSerializer(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    error = ErrorBodySerializer()
